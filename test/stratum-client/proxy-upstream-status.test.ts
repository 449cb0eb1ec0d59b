import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../lib/log/logger.ts";
import { fakeTime } from "../../lib/timers.ts";
import type { MiningGateInput } from "../../policy-guard/gates.ts";
import { StratumProxy } from "../../stratum-client/proxy.ts";
import { FakePool } from "./fake-pool.ts";
import { useLoopback } from "./net-helpers.ts";

/**
 * Whether the proxy reaches its upstream, over real sockets on fake time: a port that refuses
 * reads unreachable since the first failure with ECONNREFUSED and is logged at warn once (then
 * once a minute), not at info on every attempt; the pool coming up on that port reads
 * connected and is logged at info; failover names the upstream in use and the one down; no
 * upstream wanted reads idle.
 */

const T0 = 1_800_000_000_000;
const USER = "owner1.farm-a";
/** full jitter at 0.5 of a 20 s ceiling: every retry exactly 10 s after the failure */
const RETRY_MS = 10_000;

const net = useLoopback();
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const url = (port: number) => `stratum+tcp://127.0.0.1:${port}`;

function gate(ports: readonly number[]): MiningGateInput {
  return {
    allow: true,
    reasons: [],
    upstreams: ports.map((p) => ({ url: url(p), user: USER })),
    networks: ["127.0.0.1/32"],
    maxWatts: null,
    maxTempC: null,
    jobClasses: null,
  };
}

async function start() {
  const time = fakeTime(T0);
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level: "debug",
    destination: { write: (s: string) => void lines.push(JSON.parse(s)) },
  });
  const proxy = new StratumProxy({
    host: "127.0.0.1",
    port: 0,
    agentVersion: "0.1.0",
    clock: time.clock,
    timers: time.timers,
    logger,
    pool: { random: () => 0.5, backoff: { baseMs: 2 * RETRY_MS, capMs: 2 * RETRY_MS } },
  });
  cleanups.push(() => proxy.close());
  await proxy.listen();
  const pool = () => {
    const lane = proxy.lanes()[0];
    if (lane === undefined) throw new Error("no lane");
    return lane.pool;
  };
  /** Until the pool has made `attempts` attempts and waits to retry after the last failure. */
  const failedAttempts = (attempts: number) =>
    expect
      .poll(() => `${pool().state.status} ${pool().state.attempts}`)
      .toBe(`waiting ${attempts}`);
  const warnings = () => lines.filter((l) => l.level === "warn");
  return { time, proxy, lines, pool, failedAttempts, warnings };
}

async function fakePoolOn(port = 0): Promise<FakePool> {
  const pool = await new FakePool().listen(port);
  cleanups.push(() => pool.close());
  return pool;
}

describe("the proxy's upstream status", () => {
  it("a refusing port: unreachable since the first failure with ECONNREFUSED, one warning, then at most one a minute; the pool up: connected", async () => {
    const { time, proxy, lines, failedAttempts, warnings } = await start();
    expect(proxy.upstreamStatus()).toMatchObject({ state: "idle", url: null });
    const dead = await net.deadPort();
    proxy.apply(gate([dead]));
    await failedAttempts(1);
    const unreachable = {
      url: url(dead),
      user: USER,
      state: "unreachable",
      since: T0,
      last_error: "ECONNREFUSED",
    };
    expect(proxy.upstreamStatus()).toEqual({
      ...unreachable,
      attempts: 1,
      upstreams: [{ ...unreachable, attempts: 1 }],
    });
    expect(warnings()).toEqual([
      expect.objectContaining({
        msg: "upstream unreachable",
        url: url(dead),
        user: USER,
        error: "ECONNREFUSED",
        reason: "connect_failed",
      }),
    ]);

    // Five more refusals, 10 s apart: still unreachable since T0, and not one more warning.
    for (let n = 2; n <= 6; n++) {
      await time.advance(RETRY_MS);
      await failedAttempts(n);
    }
    expect(proxy.upstreamStatus()).toMatchObject({ ...unreachable, attempts: 6 });
    expect(warnings()).toHaveLength(1);
    // Each attempt is at debug only: ECONNREFUSED no longer hides at info level.
    const ended = lines.filter((l) => l.msg === "upstream session ended");
    expect(ended.map((l) => l.level)).toEqual(Array(6).fill("debug"));
    // A minute after the first warning, the seventh failure: one more, with the count.
    await time.advance(RETRY_MS);
    await failedAttempts(7);
    expect(warnings()).toHaveLength(2);
    expect(warnings()[1]).toMatchObject({
      msg: "upstream still unreachable",
      url: url(dead),
      error: "ECONNREFUSED",
      since: new Date(T0).toISOString(),
      failures: 7,
    });

    // The pool comes up on that port: the next attempt connects.
    await fakePoolOn(dead);
    await time.advance(RETRY_MS);
    await expect.poll(() => proxy.upstreamStatus().state).toBe("connected");
    const connected = {
      url: url(dead),
      user: USER,
      state: "connected",
      since: T0 + 70_000,
      last_error: null,
      attempts: 0,
    };
    expect(proxy.upstreamStatus()).toEqual({ ...connected, upstreams: [connected] });
    expect(lines.filter((l) => l.msg === "upstream reachable again")).toEqual([
      expect.objectContaining({
        level: "info",
        url: url(dead),
        unreachable_since: new Date(T0).toISOString(),
        down_s: 70,
        failures: 7,
      }),
    ]);
    expect(warnings()).toHaveLength(2);

    // No upstream wanted (the consent gone): idle, and leaving is no failure.
    time.clock.advance(1000);
    proxy.apply(gate([]));
    expect(proxy.upstreamStatus()).toEqual({
      url: null,
      user: null,
      state: "idle",
      since: T0 + 71_000,
      last_error: null,
      attempts: 0,
      upstreams: [],
    });
    expect(warnings()).toHaveLength(2);
  });

  it("failover: connected to the secondary in use, the primary listed unreachable", async () => {
    const { time, proxy, failedAttempts } = await start();
    const dead = await net.deadPort();
    const b = await fakePoolOn();
    proxy.apply(gate([dead, b.port]));
    await failedAttempts(1);
    await time.advance(RETRY_MS);
    await expect.poll(() => proxy.upstreamStatus().state).toBe("connected");
    expect(proxy.upstreamStatus()).toMatchObject({
      url: url(b.port),
      state: "connected",
      since: T0 + RETRY_MS,
    });
    expect(proxy.upstreamStatus().upstreams).toEqual([
      {
        url: url(dead),
        user: USER,
        state: "unreachable",
        since: T0,
        last_error: "ECONNREFUSED",
        attempts: 1,
      },
      {
        url: url(b.port),
        user: USER,
        state: "connected",
        since: T0 + RETRY_MS,
        last_error: null,
        attempts: 0,
      },
    ]);
    expect(proxy.upstreamInUse()).toBe(url(b.port));
  });
});
