/**
 * Simulated Bitaxes for the driver tests: one SimMiner of the bitaxe profile with its AxeOS
 * API (sim/asic/axeos.ts), a fake pool giving it work, and the stepped fake time of the
 * Antminer tests shared by the driver, the restart delay and the miner's reboot.
 */
import { afterEach } from "vitest";
import type { MinerEndpoint } from "../../plugins/driver.ts";
import { AxeOsApi } from "../../sim/asic/axeos.ts";
import { SimMiner } from "../../sim/asic/miner.ts";
import { PROFILES } from "../../sim/asic/profiles.ts";
import { HashScheduler } from "../../sim/asic/scheduler.ts";
import { FakePool } from "../sim/asic-fake-pool.ts";
import { JOB_A } from "../sim/asic-harness.ts";
import type { SteppedTime } from "./antminer-sim.ts";

export interface SimBitaxe {
  readonly miner: SimMiner;
  readonly axeos: AxeOsApi;
  readonly pool: FakePool;
  readonly endpoint: MinerEndpoint;
}

export interface BitaxeOptions {
  readonly version?: string;
  /** How long the reboot takes (default 2 s). */
  readonly rebootMs?: number;
  readonly privateOnly?: boolean;
  /** A second pool slot (the fallback); default: the primary again. */
  readonly fallback?: boolean;
}

export function useSimBitaxes(time: () => SteppedTime) {
  const stops: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const s of stops.splice(0).reverse()) await s();
  });
  return async (o: BitaxeOptions = {}): Promise<SimBitaxe> => {
    const pool = await FakePool.start();
    stops.push(() => pool.close());
    const scheduler = new HashScheduler({ maxHashesPerSecond: 50_000 });
    stops.push(async () => scheduler.stop());
    const pools = [{ url: pool.url, user: "owner.axe1", pass: "x" }];
    if (o.fallback)
      pools.push({ url: "stratum+tcp://backup.example:3334", user: "b.x", pass: "y" });
    const miner = new SimMiner({
      id: "bitaxe-drv",
      profile: PROFILES.bitaxe,
      pools,
      scheduler,
      clock: time().clock,
      timers: time().timers,
      rebootMs: o.rebootMs ?? 2_000,
    });
    stops.push(() => miner.stop());
    const axeos = new AxeOsApi({
      miner,
      timers: time().timers,
      ...(o.version ? { version: o.version } : {}),
      ...(o.privateOnly ? { privateOnly: true } : {}),
    });
    stops.push(() => axeos.close());
    await axeos.listen();
    miner.start();
    const c = await pool.conn(0);
    await c.waitFor((m) => m.method === "mining.authorize");
    c.setDifficulty(1e12);
    c.notify(JOB_A);
    while (!miner.hashing) await new Promise((r) => setImmediate(r));
    // A minute of uptime, so a restart shows as uptime going back.
    await time().advance(60_000);
    return { miner, axeos, pool, endpoint: { host: "127.0.0.1", webPort: axeos.address.port } };
  };
}
