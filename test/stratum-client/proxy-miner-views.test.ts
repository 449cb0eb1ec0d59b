import { afterEach, describe, expect, it } from "vitest";
import { fakeTime } from "../../lib/timers.ts";
import { SimCluster } from "../../sim/asic/cluster.ts";
import { parseFault } from "../../sim/asic/faults.ts";
import { SimPool } from "../../sim/pool/server.ts";
import { StratumProxy } from "../../stratum-client/proxy.ts";

/**
 * The local API's per-miner numbers against what simulated ASICs (real SHA-256d, sim/asic)
 * were told: shares accepted, rejected and stale on each connection, and a hashrate that is
 * exactly the difficulty each had accepted × 2^32 over the time connected. The proxy's clock
 * is fake (it stands still while the miners hash, then moves two minutes); its timers too, so
 * nothing fires behind the test's back.
 */

const T0 = 1_800_000_000_000;
const DIFF = 2 ** -18;
const USER = "owner1.farm-a";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function until(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  await expect.poll(check, { timeout: ms, message: what }).toBe(true);
}

describe("the proxy's per-miner views", () => {
  it("match what each simulated miner had accepted and had rejected, per connection", async () => {
    const time = fakeTime(T0);
    const pool = await SimPool.start({ difficulty: 2 ** -16, jobIntervalMs: 0 });
    cleanups.push(() => pool.close());
    const proxy = new StratumProxy({
      host: "127.0.0.1",
      port: 0,
      agentVersion: "0.1.0",
      clock: time.clock,
      timers: time.timers,
      vardiff: { initial: DIFF, min: DIFF, max: DIFF },
    });
    cleanups.push(() => proxy.close());
    const { port } = await proxy.listen();
    proxy.apply({
      allow: true,
      reasons: [],
      upstreams: [{ url: `stratum+tcp://127.0.0.1:${pool.address.port}`, user: USER }],
      networks: ["127.0.0.1/32"],
      maxWatts: null,
      maxTempC: null,
      jobClasses: null,
    });
    const submitted = new Map<string, number>();
    const answered = new Map<string, number>();
    const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
    const cluster = await SimCluster.start({
      count: 2,
      profile: "cpuminer",
      pools: [`stratum+tcp://127.0.0.1:${port}`],
      silenceTimeoutMs: 600_000,
      // every 3rd share held back until the next clean job (stale), every 5th below target
      faults: [parseFault("stale:3"), parseFault("lowdiff:5")],
      onEvent: (e) => {
        if (e.type === "submitted") bump(submitted, e.miner);
        if (e.type === "accepted" || e.type === "rejected") bump(answered, e.miner);
      },
    });
    cleanups.push(() => cluster.stop());
    const sims = cluster.miners;
    await until(
      () => sims.every((m) => m.miner.totals.accepted >= 4 && m.miner.totals.rejected >= 1),
      "accepted and low-difficulty shares from every miner",
    );
    // A new block: the held shares go out on a job that is no longer live.
    pool.newBlock();
    await until(() => sims.every((m) => m.miner.totals.stale >= 1), "stale shares");
    // Hashing stops; every share submitted gets its answer.
    cluster.scheduler.stop();
    await until(
      () => sims.every((m) => (answered.get(m.id) ?? 0) === (submitted.get(m.id) ?? 0)),
      "every share answered",
    );

    time.clock.advance(120_000);
    const views = proxy.minerViews();
    expect(views).toHaveLength(2);
    for (const m of sims) {
      const view = views.find((v) => v.workers.includes(m.worker));
      const t = m.miner.totals;
      expect(view, m.worker).toMatchObject({
        connected_since: T0,
        difficulty: DIFF,
        shares: { accepted: t.accepted, rejected: t.rejected + t.stale, stale: t.stale },
      });
      expect(view?.hashrate_hs).toBeCloseTo((t.diffAccepted * 2 ** 32) / 120, 6);
      expect(view?.hashrate_hs).toBeGreaterThan(0);
    }
    // Eleven minutes on without a share: nothing in the window, the counts stay.
    time.clock.advance(660_000);
    for (const v of proxy.minerViews()) {
      expect(v.hashrate_hs).toBe(0);
      expect(v.shares.accepted).toBeGreaterThanOrEqual(4);
    }
  });
});
