import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../../lib/clock.ts";
import type { MiningGateInput } from "../../policy-guard/gates.ts";
import { SimCluster } from "../../sim/asic/cluster.ts";
import type { MinerEvent } from "../../sim/asic/events.ts";
import { parseFault } from "../../sim/asic/faults.ts";
import type { ProfileName } from "../../sim/asic/profiles.ts";
import { SimPool } from "../../sim/pool/server.ts";
import { StratumProxy } from "../../stratum-client/proxy.ts";

/**
 * End to end, no hardware: 50 simulated miners of every profile (real SHA-256d, their
 * firmware's dialect) → the proxy → two simulated pools that validate with bitcoinjs-lib.
 * Then a policy flip to deny and back, then the first pool dies and the proxy fails over.
 */

const PROFILES: readonly ProfileName[] = ["s9", "s19", "bosminer", "bitaxe", "cpuminer"];
const PER_PROFILE = 10;
const USER = "owner1.farm-a";

let poolA: SimPool;
let poolB: SimPool;
let proxy: StratumProxy;
const clusters: SimCluster[] = [];
/** miner id → extranonce1 values it was given (one per subscription). */
const en1ByMiner = new Map<string, string[]>();
const events: Array<MinerEvent & { miner: string }> = [];

function gate(over: Partial<MiningGateInput> = {}): MiningGateInput {
  return {
    allow: true,
    reasons: [],
    upstreams: [
      { url: `stratum+tcp://127.0.0.1:${poolA.address.port}`, user: USER },
      { url: `stratum+tcp://127.0.0.1:${poolB.address.port}`, user: USER },
    ],
    networks: ["127.0.0.1/32"],
    maxWatts: null,
    maxTempC: null,
    jobClasses: null,
    ...over,
  };
}

async function until(check: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  // Pool difficulty 2^-16, miners at 2^-19..2^-17: most valid shares meet the miner's
  // difficulty but not the pool's, so only some are forwarded.
  poolA = await SimPool.start({ difficulty: 2 ** -16, jobIntervalMs: 3000 });
  poolB = await SimPool.start({ difficulty: 2 ** -16, jobIntervalMs: 3000 });
  proxy = new StratumProxy({
    host: "127.0.0.1",
    port: 0,
    agentVersion: "0.1.0",
    clock: systemClock,
    maxConnectionsPerIp: 1000,
    // The ASICs suggest real difficulties (bitaxe: 1000); CPU miners need tiny ones.
    vardiff: { initial: 2 ** -18, min: 2 ** -19, max: 2 ** -17, targetIntervalS: 1, retargetS: 5 },
    pool: { backoff: { baseMs: 50, capMs: 200 } },
  });
  const { port } = await proxy.listen();
  proxy.apply(gate());
  for (const profile of PROFILES) {
    clusters.push(
      await SimCluster.start({
        count: PER_PROFILE,
        profile,
        pools: [`stratum+tcp://127.0.0.1:${port}`],
        user: "sim",
        silenceTimeoutMs: 5_000,
        retryDelayMs: 100,
        // Some miners lie: low-difficulty shares (23) and duplicates (22).
        faults:
          profile === "s19"
            ? [parseFault("lowdiff:4")]
            : profile === "cpuminer"
              ? [parseFault("duplicate:5")]
              : [],
        onEvent: (e) => {
          events.push(e);
          if (e.type === "subscribed")
            en1ByMiner.set(e.miner, [...(en1ByMiner.get(e.miner) ?? []), e.extranonce1]);
        },
      }),
    );
  }
}, 60_000);

afterAll(async () => {
  for (const c of clusters) await c.stop();
  await proxy?.close();
  await poolA?.close();
  await poolB?.close();
});

describe("50 simulated miners → proxy → simulated pools", () => {
  it("every profile mines through the proxy; the pool sees only valid, unique, attributable shares", async () => {
    const rejectedAtProxy = () =>
      [...proxy.accounting.workers.values()].reduce(
        (acc, w) => {
          for (const [k, v] of Object.entries(w.rejected)) acc[k] = (acc[k] ?? 0) + v;
          return acc;
        },
        {} as Record<string, number>,
      );
    // Until every profile has mined and the faulty miners' bad shares have come (a loaded
    // machine may take longer for the every-5th duplicate to be due).
    await until(() => {
      const s = poolA.stats();
      const r = rejectedAtProxy();
      return (
        s.accepted >= 40 &&
        PROFILES.every((p) => (proxy.accounting.workers.get(`sim.${p}-0`)?.accepted ?? 0) > 0) &&
        (r.low_difficulty ?? 0) > 0 &&
        (r.duplicate ?? 0) > 0
      );
    }, "shares from every profile, and the faulty ones");
    const stats = poolA.stats();
    // Only valid shares reach the pool, all as the policy's user.
    expect(stats.rejected).toEqual({});
    expect(Object.keys(stats.users)).toEqual([USER]);
    // No two miners ever produced the same header.
    const headers = new Set(
      stats.shares.map(
        (s) => `${s.extranonce1}:${s.extranonce2}:${s.ntime}:${s.nonce}:${s.version}`,
      ),
    );
    expect(headers.size).toBe(stats.shares.length);
    expect(new Set(stats.shares.map((s) => s.hash)).size).toBe(stats.shares.length);
    // Each forwarded share belongs to exactly one miner: its extranonce1 + extranonce2 begins
    // with that miner's extranonce1, and that miner submitted that nonce.
    for (const share of stats.shares) {
      const full = share.extranonce1 + share.extranonce2;
      const owners = [...en1ByMiner].filter(([, list]) => list.some((en1) => full.startsWith(en1)));
      expect(owners.length, full).toBe(1);
      const [owner] = owners[0] as [string, string[]];
      expect(
        events.some((e) => e.miner === owner && e.type === "submitted" && e.nonce === share.nonce),
      ).toBe(true);
    }
    // Rejections at the proxy: low difficulty (23) and duplicates (22) happened and were not forwarded.
    const rejected = rejectedAtProxy();
    expect(rejected.low_difficulty ?? 0).toBeGreaterThan(0);
    expect(rejected.duplicate ?? 0).toBeGreaterThan(0);
    // Some shares met the miner's difficulty but not the pool's: accepted > forwarded.
    expect(proxy.accounting.totals.accepted).toBeGreaterThan(proxy.accounting.totals.forwarded);
  }, 120_000);

  it("a deny stops every forward at once; allowing again resumes", async () => {
    proxy.apply(gate({ allow: false, reasons: ["rules.schedule_outside"] }));
    // The gate has acknowledged: every forward written before this point is all the pool may see.
    const forwardedAtAck = proxy.accounting.totals.forwarded;
    await new Promise((r) => setTimeout(r, 2000));
    expect(proxy.accounting.totals.forwarded).toBe(forwardedAtAck);
    const s = poolA.stats();
    const seen = s.accepted + Object.values(s.rejected).reduce((a, b) => a + b, 0);
    expect(seen).toBeLessThanOrEqual(forwardedAtAck);
    // Denied miners got error 24 with the reason.
    expect(
      events.some((e) => e.type === "rejected" && e.reason.includes("rules.schedule_outside")),
    ).toBe(true);

    proxy.apply(gate());
    const before = poolA.stats().accepted;
    await until(() => poolA.stats().accepted >= before + 10, "mining to resume");
  }, 60_000);

  it("when the first upstream dies, the proxy fails over to the second and the miners follow", async () => {
    const beforeB = poolB.stats().accepted;
    expect(beforeB).toBe(0);
    await poolA.close();
    await until(() => poolB.stats().accepted >= 10, "shares at the second pool", 90_000);
    const b = poolB.stats();
    expect(b.rejected).toEqual({});
    expect(Object.keys(b.users)).toEqual([USER]);
    expect(proxy.upstreamInUse()).toBe(`stratum+tcp://127.0.0.1:${poolB.address.port}`);
  }, 120_000);
});
