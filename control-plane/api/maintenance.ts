import { unixSeconds } from "../../lib/clock.ts";
import type { Metric } from "../../lib/metrics/registry.ts";
import type { Timers } from "../../lib/timers.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { type KeySync, syncKeys } from "./keys.ts";
import { periodic } from "./periodic.ts";

/**
 * Every minute: picks up a key rotation made through another instance (keys.ts syncKeys),
 * and keeps the database from growing without bound: expired attestation
 * challenges, access tokens and proof `jti`s are deleted (store.purgeExpired), and heartbeats
 * older than `heartbeatRetentionS` (default 7 days) are pruned in pages of 10,000 — each
 * worker's latest accepted heartbeat always stays, for the next one's anomaly flags. At the
 * agent's default interval 100,000 machines send 288 million heartbeats a day: without this,
 * the heartbeat table alone would grow by about a third of a terabyte a day.
 *
 * Several instances may run it on one database: the deletes are idempotent. A tick never
 * overlaps the previous one; the first is delayed by a random part of the interval, so
 * instances started together do not run in step.
 */
export interface MaintenanceOptions {
  /** The ticks' timer (`systemTimers` by default). */
  readonly timers?: Timers;
  /** Default 60,000. */
  readonly intervalMs?: number;
  /** Heartbeats deleted per transaction (default 10,000). */
  readonly pageSize?: number;
  /** In [0, 1): the first tick's delay as a fraction of the interval. */
  readonly random?: () => number;
}

export interface MaintenanceResult {
  /** Whether this instance's keys match the newest key set in the store (keys.ts syncKeys). */
  readonly keys: KeySync;
  readonly jtis: number;
  readonly challenges: number;
  readonly access_tokens: number;
  readonly heartbeats: number;
}

export interface Maintenance extends ApiGroup {
  /** One pass (tests call it directly after moving the clock). */
  tick(): Promise<MaintenanceResult>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** At most this many pages per tick, so one tick cannot run unbounded. */
const MAX_PAGES = 100;

export function createMaintenance(ctx: ApiContext, o: MaintenanceOptions = {}): Maintenance {
  const timers = o.timers ?? ctx.timers;
  const intervalMs = o.intervalMs ?? 60_000;
  const pageSize = o.pageSize ?? 10_000;
  const random = o.random ?? Math.random;
  const deleted: Metric = ctx.metrics.counter(
    "agentd_cp_maintenance_deleted_total",
    "Rows deleted by maintenance, by kind (jtis, challenges, access_tokens, heartbeats).",
    ["kind"],
  );

  async function tick(): Promise<MaintenanceResult> {
    const now = unixSeconds(ctx.clock);
    const purged = await ctx.store.purgeExpired(now);
    let heartbeats = 0;
    const before = now - ctx.settings.heartbeatRetentionS;
    for (let page = 0; page < MAX_PAGES; page++) {
      const n = await ctx.store.pruneHeartbeats(before, pageSize);
      heartbeats += n;
      if (n < pageSize) break;
    }
    for (const [kind, n] of Object.entries({ ...purged, heartbeats })) {
      if (n > 0) deleted.inc({ kind }, n);
    }
    return { keys: await syncKeys(ctx), ...purged, heartbeats };
  }

  const timer = periodic({
    timers,
    intervalMs,
    random,
    tick,
    onError: (err) => ctx.logger.error({ err }, "maintenance tick failed"),
  });

  return {
    routes: [],
    tick,
    async start() {
      timer.start();
    },
    async stop() {
      await timer.stop();
    },
  };
}

export function maintenanceGroup(ctx: ApiContext): ApiGroup {
  return createMaintenance(ctx);
}
