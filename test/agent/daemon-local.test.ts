import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningAgent } from "../../agent/daemon.ts";
import { localApiRequest } from "../../agent/local-api.ts";
import { systemClock } from "../../lib/clock.ts";
import { verifyChainLog } from "../../lib/fs/chain-log.ts";
import { SimCluster } from "../../sim/asic/cluster.ts";
import { SimPool } from "../../sim/pool/server.ts";
import { FACTS, until, useServedCp } from "../control-plane/protocol/client-fixture.ts";
import { canMountTmpfs, mountTmpfs } from "../support/tmpfs.ts";
import { enrolledMachine } from "./daemon-fixture.ts";

/**
 * `agentd run` in-process with real mining (a simulated pool, a simulated ASIC hashing
 * through the agent's Stratum proxy) and the real control plane: the states that follow the
 * data path (ASSIGNED, MINING, PAUSED), the operator's pause persisted across a restart, a
 * full disk holding mining until the audit log can be written, a machine id that changes
 * under the running agent, the owner-allowed quarantine command, metrics and the TCP API.
 */

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

// CPU-hashing simulated miners need tiny difficulties.
const MINING_CONFIG = {
  "stratum.initial_difficulty": String(2 ** -18),
  "stratum.min_difficulty": String(2 ** -19),
  "stratum.share_interval_s": "1",
  "metrics.listen": "127.0.0.1:0",
  "api.listen": "127.0.0.1:0",
};

interface Status {
  state: string;
  decision: { mining: boolean; reasons: string[] };
  holds: string[];
  telemetry: { asics: number; shares_accepted: number };
}
const statusOf = (a: RunningAgent) => a.status() as unknown as Status;

async function api(a: RunningAgent, method: "GET" | "POST", path: string) {
  return localApiRequest(a.apiSocket, method, path, method === "POST" ? {} : undefined);
}

async function metricsOf(a: RunningAgent): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${a.metrics?.port}/metrics`);
  return r.text();
}

describe("agentd run, mining", () => {
  const serve = useServedCp();

  /** A machine with a consent to mine at a simulated pool, and one simulated ASIC. */
  async function miningMachine(o: { stateDir?: string } = {}) {
    const cp = await serve();
    const pool = await SimPool.start({ difficulty: 2 ** -16, jobIntervalMs: 3000 });
    cleanups.push(() => pool.close());
    const m = await enrolledMachine(cp, { config: MINING_CONFIG, ...o });
    const rules = {
      upstreams: [{ url: `stratum+tcp://127.0.0.1:${pool.address.port}`, user: "owner.rig" }],
      networks: ["127.0.0.1/32"],
    };
    let port = 0;
    const start = async (
      facts: Parameters<typeof m.start>[0] = FACTS,
      attestIntervalMs?: number,
    ) => {
      const agent = await m.start(facts, {
        // a restart listens where the ASICs already point
        stratum: { host: "127.0.0.1", port },
        // the simulated miners hash in real time; the control plane's clock stands still
        clock: systemClock,
        heartbeatIntervalS: 1,
        ...(attestIntervalMs === undefined ? {} : { attestIntervalMs }),
      });
      cleanups.push(() => agent.close());
      port = agent.stratum.port;
      return agent;
    };
    const agent = await start();
    await m.ownerApi.postConsent(
      m.consent(1, ["mining.pause", "mining.resume", "worker.quarantine"], rules),
    );
    await until(() => statusOf(agent).decision.mining, "mining allowed");
    const asics = await SimCluster.start({
      count: 1,
      profile: "cpuminer",
      pools: [`stratum+tcp://127.0.0.1:${agent.stratum.port}`],
      silenceTimeoutMs: 5_000,
      retryDelayMs: 100,
    });
    cleanups.push(() => asics.stop());
    await until(() => statusOf(agent).state === "MINING", "MINING", 20_000);
    return { cp, m, pool, agent, start, asics };
  }

  /** Accepted shares at the pool stop growing (the data path is stopped). */
  async function poolStopped(pool: SimPool) {
    await new Promise((r) => setTimeout(r, 300));
    const at = pool.stats().accepted;
    await new Promise((r) => setTimeout(r, 1500));
    return pool.stats().accepted === at;
  }

  it("ASSIGNED then MINING from the data path; the operator's pause is PAUSED, kept across a restart, and resumed", async () => {
    const { pool, agent, start } = await miningMachine();
    expect(statusOf(agent).telemetry.asics).toBe(1);
    const audit = () => readFileSync(join(agent.apiSocket, "..", "audit.jsonl"), "utf8");
    expect(audit()).toContain('"to":"ASSIGNED"');
    expect(audit()).toContain("the pool accepted forwarded work");
    // The local API says where the work goes and what the ASIC does.
    expect(agent.status().upstream).toMatchObject({
      url: `stratum+tcp://127.0.0.1:${pool.address.port}`,
      user: "owner.rig",
      state: "connected",
      last_error: null,
    });
    const miners = await api(agent, "GET", "/v1/miners");
    expect(miners.json).toMatchObject({
      count: 1,
      miners: [
        {
          workers: ["sim.cpuminer-0"],
          connected_since: expect.any(Number),
          hashrate_hs: expect.any(Number),
          shares: { accepted: expect.any(Number), rejected: 0, stale: 0 },
        },
      ],
    });
    // An estimate once it has been connected a second (before that: 0, not a wild guess).
    const first = async () =>
      (
        (await api(agent, "GET", "/v1/miners")).json.miners as {
          hashrate_hs: number;
          shares: { accepted: number };
        }[]
      )[0];
    await until(async () => ((await first())?.hashrate_hs ?? 0) > 0, "a hashrate estimate");
    expect((await first())?.shares.accepted).toBeGreaterThan(0);

    const paused = await api(agent, "POST", "/v1/mining/pause");
    expect(paused.status).toBe(200);
    expect(paused.json).toMatchObject({
      state: "PAUSED",
      decision: { mining: false, reasons: ["agent.paused"] },
      policy_decision: { mining: true },
    });
    expect(await poolStopped(pool)).toBe(true);

    // a restart does not undo the pause
    await agent.close();
    const again = await start();
    expect(statusOf(again)).toMatchObject({ state: "PAUSED", holds: ["agent.paused"] });
    const resumed = await api(again, "POST", "/v1/mining/resume");
    expect(resumed.json).toMatchObject({ state: "MINING", decision: { mining: true } });
    const before = pool.stats().accepted;
    await until(() => pool.stats().accepted > before + 2, "shares again after the resume", 20_000);

    const metrics = await metricsOf(again);
    expect(metrics).toContain('agentd_state{state="MINING"} 1');
    expect(metrics).toContain("agentd_mining_allowed 1");
    expect(metrics).toMatch(
      /agentd_stratum_shares_total\{worker="[^"]+",result="accepted"\} [1-9]/,
    );
  });

  it.skipIf(!canMountTmpfs())(
    "a full disk holds mining until the audit log can be written, and the chain still verifies",
    async () => {
      const fs = mountTmpfs(8 * 1024);
      cleanups.push(() => fs.unmount());
      const { pool, agent, start } = await miningMachine({ stateDir: fs.dir });
      fs.fill();
      // the next record (a pause) cannot be written: mining stops for both reasons
      const r = await api(agent, "POST", "/v1/mining/pause");
      expect(r.status).toBe(200);
      await until(() => statusOf(agent).holds.includes("agent.audit_unwritable"), "the audit hold");
      expect(statusOf(agent).decision).toEqual({
        mining: false,
        reasons: ["agent.paused", "agent.audit_unwritable"],
      });
      expect(await poolStopped(pool)).toBe(true);
      // resuming needs a record: refused while the disk is full
      const refused = await api(agent, "POST", "/v1/mining/resume");
      expect(refused.status).toBe(503);
      expect(statusOf(agent).holds).toContain("agent.paused");
      // space again: the probe lifts the audit hold (within its 2 s period), then a resume
      fs.free();
      await until(
        () => !statusOf(agent).holds.includes("agent.audit_unwritable"),
        "writable again",
        10_000,
      );
      // the pause that could not be saved while the disk was full was saved then: a restart
      // keeps it
      await agent.close();
      const again = await start();
      expect(statusOf(again).holds).toContain("agent.paused");
      const resumed = await api(again, "POST", "/v1/mining/resume");
      expect(resumed.status).toBe(200);
      const before = pool.stats().accepted;
      await until(() => pool.stats().accepted > before + 2, "shares again", 20_000);
      await again.close();
      const v = verifyChainLog(join(fs.dir, "audit.jsonl"));
      expect(v.ok).toBe(true);
      const text = readFileSync(join(fs.dir, "audit.jsonl"), "utf8");
      expect(text).toMatch(/"type":"audit.writable"/);
      expect(text).toContain('"hold":"agent.audit_unwritable"');
    },
  );

  it("a machine id that changes under the running agent quarantines it at the next attestation", async () => {
    const { pool, agent, start } = await miningMachine();
    await agent.close();
    let calls = 0;
    const cloned = { ...FACTS, machine_id_sha256: "c".repeat(64) };
    // the first attestation sees the enrolled machine; the periodic one another machine
    const running = await start(() => (calls++ < 2 ? FACTS : cloned), 500);
    await until(() => statusOf(running).state === "QUARANTINED", "QUARANTINED", 10_000);
    expect(statusOf(running).decision.reasons).toContain("agent.quarantined");
    expect(await poolStopped(pool)).toBe(true);
    await running.close();
    // and it stays so: the next start refuses
    await expect(start()).rejects.toMatchObject({ code: "AGENTD_E_IDENTITY_CLONED" });
  });

  it("runs the owner-allowed quarantine command; metrics and the TCP API with its generated token", async () => {
    const { cp, m, pool, agent } = await miningMachine();
    // the TCP listener's token was generated into the state directory, 0600
    const tokenFile = join(m.stateDir, "api-token");
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const token = readFileSync(tokenFile, "utf8").trim();
    const viaTcp = await fetch(`http://127.0.0.1:${agent.apiTcp?.port}/v1/miners`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(viaTcp.status).toBe(200);
    expect(await viaTcp.json()).toMatchObject({ count: 1, miners: [{ ready: true }] });

    const op = await cp.api(cp.adminKey).createApiKey({ role: "operator" });
    const sent = await cp.api(op.api_key).createCommand({
      worker: m.enrolled.worker_id,
      action: "worker.quarantine",
      args: { reason: "suspicious shares" },
    });
    await until(() => statusOf(agent).state === "QUARANTINED", "QUARANTINED by command", 10_000);
    await until(
      async () => (await cp.serving.store.getCommand(sent.cmd_id))?.result?.status === "done",
      "the result",
    );
    expect(await poolStopped(pool)).toBe(true);
    const metrics = await metricsOf(agent);
    expect(metrics).toContain('agentd_state{state="QUARANTINED"} 1');
    expect(metrics).toContain('agentd_mining_denied{reason="agent.quarantined"} 1');
  });
});
