import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApiClient } from "../../control-plane/protocol/client-api.ts";
import { openStore } from "../../control-plane/store/open.ts";
import { systemClock } from "../../lib/clock.ts";
import { generateEd25519KeyPair } from "../../lib/crypto/ed25519.ts";
import { writePublicKeyFile } from "../../lib/crypto/key-files.ts";
import { signConsent, signRevocation } from "../../policy-guard/sign.ts";
import { SimCluster } from "../../sim/asic/cluster.ts";
import { SimPool } from "../../sim/pool/server.ts";
import { AGENTD_BIN, agentd } from "../support/cli.ts";

/**
 * `agentd run` against `agentd cp serve`, both real processes over TLS: an enrolled machine
 * attests, sends signed heartbeats, shows its status on its local API, takes the owner's
 * consent when it is published (pushed), stops at the owner's revocation given on the machine
 * itself (`agentd consent revoke --apply`, no control plane involved), records every state change in its hash-chained audit log,
 * and shuts down cleanly on SIGTERM.
 */

const json = (text: string) => JSON.parse(text) as Record<string, unknown>;
const env = { PATH: process.env.PATH ?? "", HOME: "/root" };

function daemon(args: string[]): Promise<{ child: ChildProcess; ready: Record<string, unknown> }> {
  const child = spawn(AGENTD_BIN, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  const stderr: string[] = [];
  child.stderr?.on("data", (d: Buffer) => stderr.push(d.toString()));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).once("line", (l) =>
      resolve({ child, ready: json(l) }),
    );
    child.once("exit", (code) => reject(new Error(`exited ${code}: ${stderr.join("")}`)));
  });
}

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("agentd run with a control plane", () => {
  let base = "";
  let cp: ChildProcess;
  let cpReady: Record<string, unknown> = {};
  let caFile = "";
  let adminKey = "";
  let pool: SimPool;

  beforeAll(async () => {
    pool = await SimPool.start({ difficulty: 2 ** -16, jobIntervalMs: 3000 });
    base = mkdtempSync(join(tmpdir(), "agentd-run-"));
    const init = agentd(["cp", "init", "--dir", join(base, "cp"), "--host", "127.0.0.1"]);
    expect(init.code, init.stderr).toBe(0);
    ({ api_key: adminKey, ca_file: caFile } = json(init.stdout) as {
      api_key: string;
      ca_file: string;
    });
    ({ child: cp, ready: cpReady } = await daemon([
      "cp",
      "serve",
      "--dir",
      join(base, "cp"),
      "--listen",
      "127.0.0.1:0",
    ]));
  }, 60_000);

  afterAll(async () => {
    if (cp.exitCode === null && cp.signalCode === null) cp.kill("SIGKILL");
    await pool?.close();
    rmSync(base, { recursive: true, force: true });
  });

  it("refuses to start on a machine that is not enrolled", () => {
    const r = agentd(["run", "--state-dir", join(base, "nobody")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("AGENTD_E_NOT_ENROLLED");
  });

  it("attests, heartbeats, follows the published consent, stops at the revocation, exits cleanly", async () => {
    const remote = ["--url", String(cpReady.url), "--ca", caFile];
    const owner = generateEd25519KeyPair();
    writePublicKeyFile(join(base, "owner.pub"), owner.publicKey);
    const added = agentd(
      ["cp", "owner", "add", "--owner-pub", join(base, "owner.pub"), "--json", ...remote],
      { AGENTD_CP_API_KEY: adminKey },
    );
    expect(added.code, added.stderr).toBe(0);
    const ownerApiKey = String(json(added.stdout).api_key);
    const token = agentd(["cp", "token", "create", ...remote], { AGENTD_CP_API_KEY: ownerApiKey });
    expect(token.code, token.stderr).toBe(0);
    const state = join(base, "machine");
    const enrolled = agentd([
      "enroll",
      "--token",
      token.stdout.trim(),
      "--owner-pub",
      join(base, "owner.pub"),
      "--state-dir",
      state,
      "--json",
    ]);
    expect(enrolled.code, enrolled.stderr).toBe(0);
    const worker = String(json(enrolled.stdout).worker_id);

    const socket = join(base, "run", "agentd.sock");
    const { child, ready } = await daemon([
      "run",
      "--state-dir",
      state,
      "--set",
      "heartbeat.interval_s=1",
      "--set",
      `api.socket=${socket}`,
      "--set",
      "stratum.listen=127.0.0.1:0",
      // CPU-hashing simulated miners need tiny difficulties
      "--set",
      `stratum.initial_difficulty=${2 ** -18}`,
      "--set",
      `stratum.min_difficulty=${2 ** -19}`,
      "--set",
      "stratum.share_interval_s=1",
    ]);
    try {
      expect(ready).toMatchObject({
        ready: true,
        worker_id: worker,
        url: cpReady.url,
        api_socket: socket,
        stratum: { host: "127.0.0.1", port: expect.any(Number) },
      });
      // the local API: agentd status (the first attestation runs in the background: ready
      // does not wait for the network)
      const statusNow = () => {
        const r = agentd(["status", "--json", "--set", `api.socket=${socket}`]);
        expect(r.code, r.stderr).toBe(0);
        return json(r.stdout);
      };
      expect(statusNow()).toMatchObject({ worker_id: worker });
      await until("ATTESTED", () => (statusNow().state === "ATTESTED" ? true : undefined));
      const store = openStore(`sqlite:${join(base, "cp", "cp.db")}`);
      const heartbeats = async () => {
        const hbs = await store.listHeartbeats(worker);
        return hbs.map((h) =>
          JSON.parse(Buffer.from(h.jws.split(".")[1] ?? "", "base64url").toString()),
        );
      };
      const agentState = () =>
        (
          JSON.parse(readFileSync(join(state, "agent-state.json"), "utf8")) as {
            data: { state: string };
          }
        ).data.state;
      try {
        // attested, heartbeating with increasing counters
        await until("two heartbeats", async () =>
          (await heartbeats()).length >= 2 ? true : undefined,
        );
        const first = await heartbeats();
        expect(first[0].state).toBe("ATTESTED");
        expect(first[0].counter).toBeGreaterThan(first[1].counter);

        // the owner's consent, published and pushed
        const api = createApiClient({
          url: String(cpReady.url),
          caPem: readFileSync(caFile, "utf8"),
          clock: systemClock,
          apiKey: ownerApiKey,
        });
        const now = Math.floor(Date.now() / 1000);
        await api.postConsent(
          signConsent({
            ownerKey: owner.privateKey,
            worker,
            policyId: "e2e",
            seq: 1,
            iat: now,
            exp: now + 86_400,
            rules: {
              upstreams: [
                { url: `stratum+tcp://127.0.0.1:${pool.address.port}`, user: "owner.rig" },
              ],
              networks: ["127.0.0.1/32"],
            },
          }),
        );
        await until("the consent taken", () =>
          ["POLICY_SYNCED", "ELIGIBLE", "ASSIGNED"].includes(agentState()) ? true : undefined,
        );
        const synced = await until("a heartbeat naming the publication", async () =>
          (await heartbeats()).find((h) => h.policy.version !== null),
        );
        expect(synced.policy.consent_sha256).toMatch(/^[0-9a-f]{64}$/);

        // ASICs mine through the agent's proxy to the pool the consent names
        const asics = await SimCluster.start({
          count: 2,
          profile: "cpuminer",
          pools: [`stratum+tcp://127.0.0.1:${(ready.stratum as { port: number }).port}`],
          user: "sim",
          silenceTimeoutMs: 5_000,
          retryDelayMs: 100,
        });
        try {
          await until("shares at the pool", () => (pool.stats().accepted >= 3 ? true : undefined));
          // the pool accepted forwarded work: the machine mines (BRIEF section 6)
          await until("MINING", () => (agentState() === "MINING" ? true : undefined));
          const mining = await until("a heartbeat saying MINING", async () =>
            (await heartbeats()).find((h) => h.state === "MINING" && h.telemetry.asics === 2),
          );
          expect(mining.decision.mining).toBe(true);
          expect(mining.telemetry.shares_accepted).toBeGreaterThan(0);
          expect(mining.eligibility).toMatchObject({ eligible: false });
          expect(mining.eligibility.reasons).toContain("uptime.window_incomplete");

          // the operator's views, through the local API
          const cli = (...args: string[]) => {
            const r = agentd([...args, "--json", "--set", `api.socket=${socket}`]);
            expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
            return json(r.stdout);
          };
          expect(cli("miners")).toMatchObject({ count: 2 });
          expect((cli("miners").miners as { workers: string[] }[])[0]?.workers[0]).toMatch(
            /^sim\./,
          );
          expect(cli("policy", "show")).toMatchObject({
            consent: { payload: { seq: 1 } },
            effective: { allow: true, reasons: [] },
            holds: [],
          });
          expect(cli("eligibility")).toMatchObject({ eligible: false, lightning: "unknown" });
          expect(cli("services", "ls")).toEqual({ supervisor: "off", services: [] });
          const noSupervisor = agentd([
            "services",
            "stop",
            "bitcoind",
            "--set",
            `api.socket=${socket}`,
          ]);
          expect(noSupervisor.code).toBe(2);
          expect(noSupervisor.stderr).toContain("supervisor.driver is off");
          expect((cli("logs", "-n", "5").lines as string[]).length).toBe(5);
          const hour = 3_600_000;
          const from = new Date(Date.now() + hour).toISOString();
          const until2 = new Date(Date.now() + 2 * hour).toISOString();
          const planned = cli("maintenance", "add", "--from", from, "--until", until2);
          expect(planned.maintenance).toEqual([
            { start_ms: Date.parse(from), end_ms: Date.parse(until2) },
          ]);
          expect(cli("maintenance", "clear").maintenance).toEqual([]);
          expect(cli("mining", "pause")).toMatchObject({ state: "PAUSED" });
          expect(cli("mining", "resume")).toMatchObject({ state: "MINING" });
          const doctor = agentd([
            "doctor",
            "--json",
            "--set",
            `api.socket=${socket}`,
            "--set",
            `paths.state_dir=${state}`,
          ]);
          const checks = json(doctor.stdout).checks as { name: string; status: string }[];
          const byName = Object.fromEntries(checks.map((c) => [c.name, c.status]));
          expect(byName).toMatchObject({
            config: "ok",
            state_dir: "ok",
            machine_key: "ok",
            enrollment: "ok",
            clock: "ok",
            control_plane: "ok",
            agent: "ok",
            audit_log: "ok",
            stratum_port: "ok",
          });
          // no engine socket here: a warning, not a failure
          expect(doctor.code, doctor.stderr).toBe(0);

          // the owner revokes on the machine itself, through the local API: no control plane
          writeFileSync(
            join(base, "owner.key"),
            owner.privateKey.export({ type: "pkcs8", format: "pem" }),
            {
              mode: 0o600,
            },
          );
          const revoke = agentd([
            "consent",
            "revoke",
            "--owner-key",
            join(base, "owner.key"),
            "--worker",
            worker,
            "--through-seq",
            "1",
            "--apply",
            "--set",
            `api.socket=${socket}`,
          ]);
          expect(revoke.code, revoke.stderr).toBe(0);
          expect(revoke.stderr).toContain("applied the revocation");
          await until("REVOKED", () => (agentState() === "REVOKED" ? true : undefined));
          // the data path is stopped: nothing more reaches the pool
          await new Promise((r) => setTimeout(r, 300));
          const stoppedAt = pool.stats().accepted;
          await new Promise((r) => setTimeout(r, 1500));
          expect(pool.stats().accepted).toBe(stoppedAt);
        } finally {
          await asics.stop();
        }
        const revoked = await until("a heartbeat saying REVOKED", async () =>
          (await heartbeats()).find((h) => h.state === "REVOKED"),
        );
        expect(revoked.decision.mining).toBe(false);

        // a newer consent brings it back; a revocation through the control plane (pushed)
        // stops it again
        await api.postConsent(
          signConsent({
            ownerKey: owner.privateKey,
            worker,
            policyId: "e2e",
            seq: 2,
            iat: now + 2,
            exp: now + 86_400,
            rules: { upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "owner.rig" }] },
          }),
        );
        await until("back after the newer consent", () =>
          ["POLICY_SYNCED", "ELIGIBLE", "ASSIGNED"].includes(agentState()) ? true : undefined,
        );
        await api.postRevocation(
          worker,
          signRevocation({ ownerKey: owner.privateKey, worker, throughSeq: 2, iat: now + 3 }),
        );
        await until("REVOKED by push", () => (agentState() === "REVOKED" ? true : undefined));
        api.close();
      } finally {
        await store.close();
      }
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      // every transition is in the audit log, and the log verifies
      const log = readFileSync(join(state, "audit.jsonl"), "utf8").trim().split("\n").map(json);
      const transitions = log.filter((r) => r.type === "state.transition").map((r) => r.to);
      expect(transitions.slice(0, 3)).toEqual(["REGISTERED", "ATTESTED", "POLICY_SYNCED"]);
      expect(transitions.at(-1)).toBe("REVOKED");
      const verify = agentd(["log", "verify", join(state, "audit.jsonl")]);
      expect(verify.code, verify.stderr).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  }, 90_000);
});
