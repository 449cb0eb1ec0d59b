import { unixSeconds } from "../../lib/clock.ts";
import { isAgentdError } from "../../lib/errors.ts";
import type { Metric } from "../../lib/metrics/registry.ts";
import type { Timers } from "../../lib/timers.ts";
import type { Publication } from "../store/store.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { periodic } from "./periodic.ts";
import { commitPublication, isNothingToPublish, isStalePlan, planPublication } from "./publish.ts";

/**
 * Re-issues publications before they expire (docs/protocol.md, "Publications and versions"):
 * a publication is re-issued — a new version over the worker's latest consent, pushed as an
 * event like any other — once a third of its lifetime or less remains, so a connected,
 * healthy machine never falls into its offline grace. Stops stay stops (publish.ts decides).
 *
 * A timer ticks every min(60 s, publicationTtlS / 10), never overlapping itself. Several
 * control-plane instances may run it on one database: version allocation is atomic, so two
 * re-issues of one worker at once are harmless (two versions), and are mostly avoided by
 * reading the worker's latest publication again just before re-issuing it. The first tick is
 * delayed by a random part of the interval, so instances started together do not tick in
 * step.
 *
 * Nothing is re-issued when it cannot live longer than the current one (the consent ends
 * first) or when there is no valid consent; decommissioned workers are not listed by the
 * store at all. Those publications stay at the head of the store's queue (soonest `exp`
 * first), so a tick pages past them with a cursor (exp, worker id) instead of reading the
 * head again.
 */

export interface RepublisherOptions {
  /** The ticks' timer (`systemTimers` by default). */
  readonly timers?: Timers;
  /** Overrides the tick interval (milliseconds). */
  readonly intervalMs?: number;
  /** Candidates read per query (default 1000). */
  readonly batch?: number;
  /** In [0, 1): the first tick's delay as a fraction of the interval. */
  readonly random?: () => number;
}

export interface TickResult {
  readonly reissued: number;
  /** Due, but not re-issued: re-issued by someone else meanwhile, or cannot be extended. */
  readonly skipped: number;
  readonly failed: number;
}

export interface Republisher extends ApiGroup {
  /** One pass over the due publications (tests call it directly after moving the clock). */
  tick(): Promise<TickResult>;
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly intervalMs: number;
}

/** At most this many pages per tick (a million publications at the default page). */
const MAX_PAGES = 1000;

/** Whether a third or less of `p`'s lifetime remains at `now`. */
export function isDue(p: Pick<Publication, "iat" | "exp">, now: number): boolean {
  return 3 * (p.exp - now) <= p.exp - p.iat;
}

export function republishInterval(publicationTtlS: number): number {
  return Math.max(1000, Math.min(60_000, Math.floor((publicationTtlS * 1000) / 10)));
}

export function createRepublisher(ctx: ApiContext, o: RepublisherOptions = {}): Republisher {
  const timers = o.timers ?? ctx.timers;
  const intervalMs = o.intervalMs ?? republishInterval(ctx.settings.publicationTtlS);
  const batch = o.batch ?? 1000;
  const random = o.random ?? Math.random;
  const reissuedTotal: Metric = ctx.metrics.counter(
    "agentd_cp_publications_reissued_total",
    "Publications re-issued before they expired.",
  );

  /** Re-issues one candidate; what happened to it. */
  async function reissue(candidate: Publication, now: number): Promise<keyof TickResult> {
    const latest = await ctx.store.latestPublication(candidate.worker_id);
    if (latest === null || latest.version !== candidate.version || !isDue(latest, now)) {
      return "skipped";
    }
    try {
      const plan = await planPublication(ctx, candidate.worker_id, { stop: false });
      if (plan.exp <= latest.exp) return "skipped";
      await commitPublication(ctx, plan, { actor: "system", reason: "reissue" });
      reissuedTotal.inc();
      return "reissued";
    } catch (err) {
      // Nothing to publish, or published by someone else since the plan: not due any more.
      if (isNothingToPublish(err) || isStalePlan(err)) return "skipped";
      ctx.logger.warn(
        { worker: candidate.worker_id, code: isAgentdError(err) ? err.code : undefined, err },
        "re-issuing a publication failed",
      );
      return "failed";
    }
  }

  async function tick(): Promise<TickResult> {
    const counts = { reissued: 0, skipped: 0, failed: 0 };
    const now = unixSeconds(ctx.clock);
    // Publications live at most publicationTtlS, so none expiring later can be due yet.
    const horizon = now + Math.ceil(ctx.settings.publicationTtlS / 3) + 1;
    let after: { exp: number; worker_id: string } | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const candidates = await ctx.store.listPublicationsExpiringBefore(horizon, batch, after);
      for (const c of candidates) {
        if (!isDue(c, now)) continue;
        counts[await reissue(c, now)]++;
      }
      const last = candidates.at(-1);
      if (last === undefined || candidates.length < batch) break;
      // Onwards from the last one seen: entries that cannot be re-issued (their consent ends
      // with them) stay at the head of the queue and must not hide the due ones behind them.
      after = { exp: last.exp, worker_id: last.worker_id };
    }
    return counts;
  }

  const timer = periodic({
    timers,
    intervalMs,
    random,
    tick,
    onError: (err) => ctx.logger.error({ err }, "publication re-issue tick failed"),
  });

  return {
    routes: [],
    intervalMs,
    tick,
    async start() {
      timer.start();
    },
    async stop() {
      await timer.stop();
    },
  };
}

export function republisherGroup(ctx: ApiContext): ApiGroup {
  return createRepublisher(ctx);
}
