import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { AUDIT_FILE } from "../../agent/audit-log.ts";
import type { RunningAgent } from "../../agent/daemon.ts";
import { localApiRequest } from "../../agent/local-api.ts";
import type { HeartbeatPayload } from "../../control-plane/protocol/schemas/heartbeat.ts";
import { readChainTail } from "../../lib/fs/chain-log.ts";
import { SimCluster } from "../../sim/asic/cluster.ts";
import { SimPool } from "../../sim/pool/server.ts";
import { until, useServedCp } from "../control-plane/protocol/client-fixture.ts";
import { agentdAsync as cli } from "../support/cli.ts";
import { ensureDriverUser } from "../support/driver-user.ts";
import { enrolledMachine } from "./daemon-fixture.ts";

/**
 * Issue 18 on the real agent: a simulated stock S19 (4028 API and web UI) adopted through the
 * local API, driven through the real driver host under the drivers' user. Its pool slots are
 * moved onto the agent's Stratum proxy, it hashes through it to the owner's pool, it sleeps
 * when mining is denied (the operator's pause) — 0 hashrate from its own API, not only a
 * closed pipe — and wakes when mining is allowed again. Every action is audited.
 */

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
beforeAll(() => {
  ensureDriverUser();
});

describe("agentd run, the fleet", { timeout: 240_000 }, () => {
  const serve = useServedCp();

  it("adopts an S19, owns its slots, sleeps it when mining is denied and wakes it when allowed", async () => {
    const pool = await SimPool.start({ difficulty: 1e-5, jobIntervalMs: 0 });
    cleanups.push(() => pool.close());
    // The miner starts on a pool that is not there: it hashes only once the agent owns its slots.
    const cluster = await SimCluster.start({
      count: 1,
      profile: "s19",
      pools: ["stratum+tcp://127.0.0.1:1"],
      apiHost: "127.0.0.1",
      retryDelayMs: 200,
      webApplyDelayMs: 300,
      maxHashesPerSecond: 50_000,
    });
    cleanups.push(() => cluster.stop());
    const sim = cluster.miners[0];
    if (sim?.api == null || sim.web == null) throw new Error("no S19 surfaces");

    const cp = await serve();
    const m = await enrolledMachine(cp, { config: { "fleet.read_interval_s": "5" } });
    const agent: RunningAgent = await m.start(undefined, { heartbeatIntervalS: 2 });
    cleanups.push(() => agent.close());
    const upstream = `stratum+tcp://127.0.0.1:${pool.address.port}`;
    await m.ownerApi.postConsent(
      m.consent(1, [], {
        upstreams: [{ url: upstream, user: "owner.rig" }],
        networks: ["127.0.0.1/32"],
      }),
    );
    await until(
      () => (agent.status() as { decision: { mining: boolean } }).decision.mining,
      "mining allowed",
    );

    const adopt = await localApiRequest(agent.apiSocket, "POST", "/v1/fleet/adopt", {
      address: "127.0.0.1",
      api_port: sim.api.address.port,
      web_port: sim.web.address.port,
    });
    expect(adopt.status, JSON.stringify(adopt.json)).toBe(200);
    const miner = (adopt.json as { miner: { id: string; mac: string; slots: string } }).miner;
    expect(miner).toMatchObject({ mac: sim.miner.mac, slots: "owned" });

    // its three slots now name only the agent's proxy, with the miner's worker name
    await until(
      () =>
        sim.miner.slots.length > 0 &&
        sim.miner.slots.every((s) => s.url.port === agent.stratum.port),
      "the slots on the agent",
      60_000,
    );
    await until(() => sim.miner.hashing, "the S19 hashing through the agent", 60_000);

    // denied → asleep, by its own firmware (mode 1, no hashrate)
    expect((await localApiRequest(agent.apiSocket, "POST", "/v1/mining/pause", {})).status).toBe(
      200,
    );
    await until(() => sim.miner.mode === "sleep" && !sim.miner.hashing, "the S19 asleep", 60_000);
    // allowed again → awake
    expect((await localApiRequest(agent.apiSocket, "POST", "/v1/mining/resume", {})).status).toBe(
      200,
    );
    await until(() => sim.miner.mode === "normal", "the S19 awake", 60_000);

    const fleet = (await localApiRequest(agent.apiSocket, "GET", "/v1/fleet")).json as {
      miners: { id: string; state: { reading: unknown } | null }[];
    };
    expect(fleet.miners.map((x) => x.id)).toEqual([miner.id]);
    // heartbeats carry it in brief, signed with the rest
    const beats = async () =>
      (await cp.serving.store.listHeartbeats(m.enrolled.worker_id)).map(
        (h) =>
          JSON.parse(
            Buffer.from(h.jws.split(".")[1] ?? "", "base64url").toString(),
          ) as HeartbeatPayload,
      );
    await until(
      async () => (await beats()).some((p) => p.fleet?.adopted === 1),
      "a heartbeat with the fleet",
      60_000,
    );
    const beat = (await beats()).find((p) => p.fleet?.adopted === 1);
    expect(beat?.fleet).toMatchObject({ adopted: 1, slots_not_owned: 0 });
    expect(Object.values(beat?.fleet?.modes ?? {}).reduce((a, b) => a + (b ?? 0), 0)).toBe(1);
    // status says it in brief
    const status = await cli(["status", "--state-dir", m.stateDir]);
    expect(status.stdout).toMatch(
      /^fleet\s+1 adopted \((1 normal|1 sleep)\), (watts not measured|0 W measured)/m,
    );
    // the operator's view, and forgetting gives the miner its own slots back
    const table = await cli(["miners", "--state-dir", m.stateDir]);
    expect(table.code, table.stderr).toBe(0);
    // (its last read may be from before the wake: the mode column is whatever was read)
    expect(table.stdout).toMatch(
      new RegExp(
        `^${miner.id}\\s+Antminer S19\\s+(sleep|normal)\\s.*\\sagent\\s.*not verified on hardware$`,
        "m",
      ),
    );
    const forgot = await cli(["miners", "forget", miner.id, "--state-dir", m.stateDir, "--json"]);
    expect(forgot.code, forgot.stderr).toBe(0);
    expect(JSON.parse(forgot.stdout)).toMatchObject({ previous_slots: "restored" });
    await until(
      () => sim.miner.slots.some((s) => s.url.port === 1),
      "the previous slot back",
      60_000,
    );

    const audit = () =>
      readChainTail(`${m.stateDir}/${AUDIT_FILE}`, 200).map(
        (l) => JSON.parse(l) as { type: string; kind?: string; result?: string },
      );
    expect(audit().some((r) => r.type === "fleet.adopted")).toBe(true);
    for (const kind of ["setPools", "sleep", "wake"]) {
      await until(
        () =>
          audit().some(
            (r) => r.type === "fleet.action" && r.kind === kind && r.result === "confirmed",
          ),
        `${kind} confirmed in the audit log`,
        60_000,
      );
    }
  });
});
