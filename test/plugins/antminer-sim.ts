/**
 * Simulated stock Antminers for the driver tests: one miner with its 4028 API and web UI, a
 * fake pool giving it work (at a difficulty it never meets, so it hashes without sending
 * shares), and fake time shared by the driver, the web UI's slow apply and the miner's clock.
 */
import { afterEach } from "vitest";
import { type AgentdError, isAgentdError } from "../../lib/errors.ts";
import { type FakeTime, fakeTime, type Timers } from "../../lib/timers.ts";
import type { DriverContext, DriverLimits, MinerEndpoint } from "../../plugins/driver.ts";
import { MgmtApi } from "../../sim/asic/mgmt-api.ts";
import { SimMiner } from "../../sim/asic/miner.ts";
import { PROFILES } from "../../sim/asic/profiles.ts";
import { HashScheduler } from "../../sim/asic/scheduler.ts";
import { WebUi } from "../../sim/asic/web-ui.ts";
import { FakePool } from "../sim/asic-fake-pool.ts";
import { JOB_A } from "../sim/asic-harness.ts";

export const T0 = 1_750_000_000_000;

export const LIMITS: DriverLimits = {
  maxReplyBytes: 1024 * 1024,
  // Far from the read-back interval, so a pending request timer is never taken for a sleep.
  requestTimeoutMs: 600_000,
  confirmDeadlineMs: 30_000,
  confirmIntervalMs: 1_000,
};

/** Fake time whose timers say when one is set, so a test advances time on an event. */
export interface SteppedTime extends FakeTime {
  /** Resolves when the next timer of `ms` is set. */
  nextTimer(ms: number): Promise<void>;
}

export function steppedTime(start = T0): SteppedTime {
  const ft = fakeTime(start);
  const waiters: { ms: number; resolve: () => void }[] = [];
  const timers: Timers = {
    ...ft.timers,
    setTimeout(fn, ms) {
      const h = ft.timers.setTimeout(fn, ms);
      for (const w of waiters.splice(0)) {
        if (w.ms === ms) w.resolve();
        else waiters.push(w);
      }
      return h;
    },
  };
  return {
    ...ft,
    timers,
    nextTimer: (ms) => new Promise<void>((resolve) => waiters.push({ ms, resolve })),
  };
}

/**
 * Runs an action that reads back: each time it goes to sleep between read-backs, time moves
 * on by one interval (firing the web UI's slow apply when it falls due). No real waiting.
 */
export async function drive<T>(time: SteppedTime, action: () => Promise<T>): Promise<T> {
  const sleeping = () => time.nextTimer(LIMITS.confirmIntervalMs).then(() => "sleep" as const);
  let next = sleeping();
  const p = action();
  let done = false;
  const settled = p.then(
    () => {
      done = true;
      return "done" as const;
    },
    () => {
      done = true;
      return "done" as const;
    },
  );
  while (!done) {
    if ((await Promise.race([settled, next])) === "done") break;
    next = sleeping();
    await time.advance(LIMITS.confirmIntervalMs);
  }
  return p;
}

export function context(time: SteppedTime, credentials: DriverContext["credentials"] = null) {
  return { clock: time.clock, timers: time.timers, limits: LIMITS, credentials };
}

export interface SimAntminer {
  readonly miner: SimMiner;
  readonly api: MgmtApi;
  readonly web: WebUi;
  readonly pool: FakePool;
  readonly endpoint: MinerEndpoint;
}

export interface SimOptions {
  readonly id?: string;
  readonly allow?: readonly string[];
  readonly applyDelayMs?: number;
  readonly password?: string;
  /** Wait for the miner to hash (default true). */
  readonly hashing?: boolean;
}

/** Registers cleanup; call at the top of a test file. */
export function useSimAntminers(time: () => SteppedTime) {
  const stops: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const s of stops.splice(0).reverse()) await s();
  });
  return async (profile: "s9" | "s19", o: SimOptions = {}): Promise<SimAntminer> => {
    const pool = await FakePool.start();
    stops.push(() => pool.close());
    const scheduler = new HashScheduler({ maxHashesPerSecond: 50_000 });
    stops.push(async () => scheduler.stop());
    const miner = new SimMiner({
      id: o.id ?? `${profile}-drv`,
      profile: PROFILES[profile],
      pools: [{ url: pool.url, user: "owner.rig1", pass: "x" }],
      scheduler,
      clock: time().clock,
      timers: time().timers,
      rebootMs: 2_000,
    });
    stops.push(() => miner.stop());
    const api = new MgmtApi({ miner, ...(o.allow ? { allow: o.allow } : {}) });
    const web = new WebUi({
      miner,
      applyDelayMs: o.applyDelayMs ?? 5_000,
      timers: time().timers,
      ...(o.password ? { password: o.password } : {}),
    });
    stops.push(
      () => api.close(),
      () => web.close(),
    );
    await api.listen();
    await web.listen();
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
      web,
      pool,
      endpoint: { host: "127.0.0.1", apiPort: api.address.port, webPort: web.address.port },
    };
  };
}

/** The AgentdError a promise rejected with (fails the test when it resolved). */
export async function rejection(p: Promise<unknown>): Promise<AgentdError> {
  try {
    await p;
  } catch (err) {
    if (isAgentdError(err)) return err;
    throw err;
  }
  throw new Error("expected a rejection");
}
