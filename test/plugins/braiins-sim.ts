/**
 * A simulated Braiins OS miner for the driver tests: the bosminer profile's 4028 API, the
 * gRPC API (sim/asic/bos-grpc.ts), a fake pool giving it work, and fake time shared by the
 * driver, the token expiry and the miner's clock (antminer-sim.ts's helpers).
 */
import { afterEach } from "vitest";
import type { MinerEndpoint } from "../../plugins/driver.ts";
import { type BosGrpcOptions, BosGrpcServer } from "../../sim/asic/bos-grpc.ts";
import { MgmtApi } from "../../sim/asic/mgmt-api.ts";
import { SimMiner } from "../../sim/asic/miner.ts";
import { PROFILES } from "../../sim/asic/profiles.ts";
import { HashScheduler } from "../../sim/asic/scheduler.ts";
import { FakePool } from "../sim/asic-fake-pool.ts";
import { JOB_A } from "../sim/asic-harness.ts";
import type { SteppedTime } from "./antminer-sim.ts";

export interface SimBraiins {
  readonly miner: SimMiner;
  readonly api: MgmtApi;
  readonly grpc: BosGrpcServer;
  readonly pool: FakePool;
  readonly endpoint: MinerEndpoint;
}

export interface BraiinsSimOptions extends Omit<BosGrpcOptions, "miner"> {
  readonly id?: string;
  readonly allow?: readonly string[];
  readonly hashing?: boolean;
}

/** Registers cleanup; call at the top of a test file. */
export function useSimBraiins(time: () => SteppedTime) {
  const stops: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const s of stops.splice(0).reverse()) await s();
  });
  return async (o: BraiinsSimOptions = {}): Promise<SimBraiins> => {
    const pool = await FakePool.start();
    stops.push(() => pool.close());
    const scheduler = new HashScheduler({ maxHashesPerSecond: 50_000 });
    stops.push(async () => scheduler.stop());
    const miner = new SimMiner({
      id: o.id ?? "bos-drv",
      profile: PROFILES.bosminer,
      pools: [{ url: pool.url, user: "owner.rig1", pass: "x" }],
      scheduler,
      clock: time().clock,
      timers: time().timers,
      rebootMs: 2_000,
    });
    stops.push(() => miner.stop());
    const api = new MgmtApi({ miner, ...(o.allow ? { allow: o.allow } : {}) });
    const { id: _i, allow: _a, hashing: _h, ...grpcOptions } = o;
    const grpc = new BosGrpcServer({ miner, ...grpcOptions });
    stops.push(
      () => api.close(),
      () => grpc.close(),
    );
    await api.listen();
    await grpc.listen();
    miner.start();
    if (o.hashing !== false) {
      const c = await pool.conn(0);
      await c.waitFor((m) => m.method === "mining.authorize");
      c.setDifficulty(1e12);
      c.notify(JOB_A);
      while (!miner.hashing) await new Promise((r) => setImmediate(r));
    }
    return {
      miner,
      api,
      grpc,
      pool,
      endpoint: { host: "127.0.0.1", apiPort: api.address.port, grpcPort: grpc.address.port },
    };
  };
}
