import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { generateEd25519KeyPair, jwkThumbprint } from "../../lib/crypto/ed25519.ts";
import { writePublicKeyFile } from "../../lib/crypto/key-files.ts";
import { signConsent, signPublication } from "../../policy-guard/sign.ts";
import { SimPool } from "../../sim/pool/server.ts";
import { DIFF1, type Message, parseNotify, solve, TestClient } from "../sim/pool-helpers.ts";
import { AGENTD_BIN, agentd } from "../support/cli.ts";
import { useTmpDir } from "../support/tmp.ts";

const tmp = useTmpDir();
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Spawns a daemon and resolves with its first stdout line, parsed. */
function spawnDaemon(
  args: string[],
): Promise<{ child: ChildProcess; ready: Record<string, unknown>; stderr: string[] }> {
  const child = spawn(AGENTD_BIN, args, {
    env: { PATH: process.env.PATH ?? "", HOME: "/root" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stderr: string[] = [];
  child.stderr?.on("data", (d: Buffer) => stderr.push(d.toString()));
  cleanups.push(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.once("line", (line) =>
      resolve({ child, ready: JSON.parse(line) as Record<string, unknown>, stderr }),
    );
    child.once("exit", (code) =>
      reject(new Error(`exited ${code} before ready: ${stderr.join("")}`)),
    );
  });
}

async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = 15_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("agentd stratum proxy (local mode)", () => {
  it("serves ASICs under a bundle file, applies a stop bundle while running, stops cleanly on SIGTERM", async () => {
    const dir = tmp();
    const owner = generateEd25519KeyPair();
    const cp = generateEd25519KeyPair();
    const worker = jwkThumbprint(generateEd25519KeyPair().publicKey);
    writePublicKeyFile(join(dir, "owner.pub"), owner.publicKey);
    writePublicKeyFile(join(dir, "cp.pub"), cp.publicKey);
    const pool = await SimPool.start({ difficulty: 2 ** -18, jobIntervalMs: 0 });
    cleanups.push(() => pool.close());
    const now = Math.floor(Date.now() / 1000);
    const consent = signConsent({
      ownerKey: owner.privateKey,
      worker,
      seq: 1,
      policyId: "farm",
      iat: now - 10,
      exp: now + 86400,
      rules: {
        upstreams: [{ url: `stratum+tcp://127.0.0.1:${pool.address.port}`, user: "owner1.farm" }],
        networks: ["127.0.0.1/32"],
      },
    });
    const bundleFile = join(dir, "bundle.json");
    const publish = (version: number, stop: boolean) =>
      writeFileSync(
        bundleFile,
        JSON.stringify({
          consent,
          publication: signPublication({
            cpKey: cp.privateKey,
            consent,
            worker,
            version,
            iat: now - 5,
            ttlS: 3600,
            stop,
          }),
        }),
      );
    publish(1, false);

    const state = join(dir, "state");
    const { child, ready } = await spawnDaemon([
      "stratum",
      "proxy",
      "--listen",
      "127.0.0.1:0",
      "--policy",
      bundleFile,
      "--owner-pub",
      join(dir, "owner.pub"),
      "--cp-pub",
      join(dir, "cp.pub"),
      "--worker",
      worker,
      "--state-dir",
      state,
      "--set",
      `stratum.initial_difficulty=${2 ** -20}`,
      "--set",
      `stratum.min_difficulty=${2 ** -24}`,
      "--set",
      "metrics.listen=127.0.0.1:0",
    ]);
    expect(ready).toMatchObject({ ready: true, host: "127.0.0.1", worker });
    const port = ready.port as number;
    expect(port).toBeGreaterThan(0);

    const miner = await TestClient.connect(port);
    cleanups.push(() => miner.close());
    const sub = await miner.request("mining.subscribe", ["cgminer/4.11.1"]);
    const [, en1, en2Size] = sub.result as [unknown, string, number];
    const auth = await miner.request("mining.authorize", ["rig1", "x"]);
    expect(auth.result).toBe(true);
    const job = parseNotify(await miner.notification("mining.notify"));
    const en2 = (i: number) => i.toString(16).padStart(en2Size * 2, "0");
    const s = solve(job, en1, en2(1), DIFF1 * 2n ** 18n);
    const submit = (e2: string, nonce: string): Promise<Message> =>
      miner.request("mining.submit", ["rig1", job.jobId, e2, job.ntime, nonce]);
    const first = await submit(en2(1), s.nonceHex);
    expect(first.result).toBe(true);
    await until(() => pool.stats().accepted === 1, "the share at the pool");
    expect(Object.keys(pool.stats().users)).toEqual(["owner1.farm"]);

    // Prometheus metrics: per-worker share counts and the forwarded share.
    const m = ready.metrics as { host: string; port: number };
    const text = await (await fetch(`http://${m.host}:${m.port}/metrics`)).text();
    expect(text).toContain('agentd_stratum_shares_total{worker="rig1",result="accepted"} 1');
    expect(text).toContain("agentd_stratum_mining_allowed 1");

    // The control plane's stop, delivered as a newer bundle file.
    publish(2, true);
    let denied: Message | null = null;
    let i = 2;
    await until(async () => {
      const r = await submit(en2(i++), "00000000");
      if ((r.error as unknown[] | null)?.[0] === 24) denied = r;
      return denied !== null;
    }, "the stop to apply");
    expect(denied).toMatchObject({ error: [24, "mining denied: publication.stop", null] });

    child.kill("SIGTERM");
    const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    expect(code).toBe(0);
    // The audit log recorded both decisions and its chain verifies.
    const v = agentd(["log", "verify", join(state, "audit.jsonl"), "--json"]);
    expect(v.code).toBe(0);
    expect((JSON.parse(v.stdout) as { records: number }).records).toBeGreaterThanOrEqual(3);
  });

  it("exits 2 on a bad --listen and 1 on a missing key file", () => {
    const worker = "A".repeat(43);
    const base = [
      "stratum",
      "proxy",
      "--policy",
      "/x",
      "--owner-pub",
      "/nonexistent.pub",
      "--cp-pub",
      "/x",
      "--worker",
      worker,
    ];
    expect(agentd([...base, "--listen", "nope"]).code).toBe(2);
    const r = agentd([...base, "--listen", "127.0.0.1:0", "--state-dir", tmp()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("AGENTD_E_IO");
  });
});
