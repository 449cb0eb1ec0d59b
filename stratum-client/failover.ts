import { EventEmitter } from "node:events";
import type { Clock } from "../lib/clock.ts";
import { systemClock } from "../lib/clock.ts";
import type { Logger } from "../lib/log/logger.ts";
import { systemTimers, type TimerHandle, type Timers } from "../lib/timers.ts";
import type { Upstream } from "../policy-guard/documents.ts";
import type { CodecCounters } from "./codec.ts";
import { type Endpoint, parseV1Url, sameEndpoint } from "./endpoint.ts";
import { UpstreamReachability } from "./reachability.ts";
import { type SubmitResult, unanswered } from "./rejects.ts";
import {
  type Job,
  type RefusedReconnect,
  type SessionEndReason,
  type SessionOptions,
  UpstreamSession,
} from "./upstream.ts";

/**
 * The upstream side of the proxy: exactly one working session at a time, chosen from the
 * policy's Stratum V1 upstreams in order.
 *
 * Decisions (documented here because the proxy and the operators rely on them):
 * - Order: start at the primary (index 0). Whenever a session ends or an attempt fails, the
 *   next attempt goes to the next upstream in the list, wrapping around; with one upstream
 *   that is the same one again. `sv2+tcp` entries are skipped (this client speaks V1 only).
 * - Backoff: full jitter, `delay = floor(random() * min(capMs, baseMs * 2^failures))`, where
 *   `failures` counts consecutive sessions that failed or lasted less than stableAfterMs
 *   ready. A session that stayed up that long resets it to 0, so losing a good pool costs at
 *   most baseMs before the next try, while a flapping or redirect-looping pool backs off.
 * - Return to the primary: while on a later upstream reached by failover, every
 *   primaryRetryMs a second session is opened to the primary in the background; when it is
 *   ready it becomes current and the other is closed (make before break: no gap in work).
 *   Not done when the current upstream was reached by the primary's own client.reconnect:
 *   the primary sent us there.
 * - client.reconnect to an endpoint in the list (same scheme) is followed after
 *   max(wait, backoff); anything else is refused, reported as 'refused', and the current
 *   session continues.
 * - setUpstreams (a policy change): a current or probing session whose url+user is no longer
 *   listed is closed at once and dialling restarts from the new primary; an empty list means
 *   no connection at all.
 * - Reachability: every attempt, ready session and end (probes too) is reported to an
 *   UpstreamReachability (reachability.ts), which the proxy shares among its lanes; it logs a
 *   failed attempt at warn once per outage (then once a minute), so the pool itself logs
 *   attempts that never became ready at debug only.
 */

export interface BackoffOptions {
  readonly baseMs: number;
  readonly capMs: number;
}

export const POOL_DEFAULTS = Object.freeze({
  backoff: Object.freeze({ baseMs: 1_000, capMs: 60_000 }) as BackoffOptions,
  primaryRetryMs: 120_000,
  stableAfterMs: 30_000,
});

export function backoffDelay(
  failures: number,
  options: BackoffOptions,
  random: () => number,
): number {
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** Math.min(failures, 40));
  return Math.floor(random() * ceiling);
}

export type PoolStatus = "idle" | "connecting" | "connected" | "waiting" | "stopped";

export interface PoolState {
  readonly status: PoolStatus;
  /** The upstream connected (status "connected") or being dialled, else null. */
  readonly url: string | null;
  readonly index: number | null;
  /** How the current upstream was reached. */
  readonly via: "order" | "reconnect" | null;
  /** Connection attempts since start. */
  readonly attempts: number;
  /** Consecutive failures (the backoff exponent). */
  readonly failures: number;
  readonly lastError: string | null;
  readonly connectedSince: number | null;
}

export interface ConnectedInfo {
  readonly url: string;
  readonly user: string;
  readonly index: number;
  readonly extranonce1: string;
  readonly extranonce2Size: number;
  readonly versionMask: string | null;
  readonly difficulty: number;
}

export interface SessionEnd {
  readonly url: string;
  readonly reason: SessionEndReason;
  readonly error?: string;
}

export interface PoolEvents {
  /** A session is ready; 'difficulty' and 'job' follow with what it already received. */
  connected: [info: ConnectedInfo];
  /** A ready session ended. */
  disconnected: [end: SessionEnd];
  /** An attempt ended before it was ready. */
  failed: [end: SessionEnd];
  job: [job: Job, url: string];
  difficulty: [difficulty: number, url: string];
  extranonce: [extranonce1: string, extranonce2Size: number, url: string];
  versionMask: [mask: string | null, url: string];
  /** A client.reconnect outside the policy (for the audit log). */
  refused: [refused: RefusedReconnect & { readonly url: string }];
}

export type SessionTunables = Pick<
  SessionOptions,
  | "password"
  | "versionRollingMask"
  | "versionRollingMinBitCount"
  | "tls"
  | "handshakeTimeoutMs"
  | "configureTimeoutMs"
  | "submitTimeoutMs"
  | "maxReconnectWaitMs"
  | "limits"
>;

export interface PoolOptions {
  readonly upstreams: readonly Upstream[];
  readonly agentVersion: string;
  readonly session?: SessionTunables;
  readonly backoff?: Partial<BackoffOptions>;
  readonly primaryRetryMs?: number;
  readonly stableAfterMs?: number;
  /** In [0, 1); Math.random by default. */
  readonly random?: () => number;
  readonly clock?: Clock;
  /** The pool's own scheduling (backoff, primary retries). */
  readonly timers?: Timers;
  /** The sessions' codec timers (idle, request timeouts), kept apart so tests can fake one. */
  readonly sessionTimers?: Timers;
  readonly counters?: CodecCounters;
  readonly logger?: Logger;
  /**
   * Where attempts, ready sessions and ends are reported. The proxy passes one book for all
   * its lanes and tells it the policy's list; without one the pool keeps its own.
   */
  readonly reachability?: UpstreamReachability;
}

export class UpstreamPool extends EventEmitter<PoolEvents> {
  readonly #o: PoolOptions;
  readonly #backoff: BackoffOptions;
  readonly #random: () => number;
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #reach: UpstreamReachability;
  /** Whether the book is the pool's own (then the pool tells it the list). */
  readonly #ownBook: boolean;

  #list: readonly Upstream[] = [];
  #running = false;
  #stopped = false;
  #session: UpstreamSession | null = null;
  #index: number | null = null;
  #via: "order" | "reconnect" | null = null;
  #probe: UpstreamSession | null = null;
  #retryTimer: TimerHandle | null = null;
  #probeTimer: TimerHandle | null = null;
  #redirect: { upstream: Upstream; waitMs: number } | null = null;
  #restartFromPrimary = false;
  #waiting = false;
  #attempts = 0;
  #failures = 0;
  #lastError: string | null = null;

  constructor(options: PoolOptions) {
    super();
    this.#o = options;
    this.#backoff = { ...POOL_DEFAULTS.backoff, ...options.backoff };
    this.#random = options.random ?? Math.random;
    this.#clock = options.clock ?? systemClock;
    this.#timers = options.timers ?? systemTimers;
    this.#list = v1Only(options.upstreams);
    this.#ownBook = options.reachability === undefined;
    this.#reach =
      options.reachability ??
      new UpstreamReachability({
        clock: this.#clock,
        ...(options.logger === undefined ? {} : { logger: options.logger }),
      });
    if (this.#ownBook) this.#reach.want(this.#list);
  }

  /** Whether the upstreams are reached (shared with the other lanes when the proxy gave it). */
  get reachability(): UpstreamReachability {
    return this.#reach;
  }

  get state(): PoolState {
    const s = this.#session;
    let status: PoolStatus;
    if (this.#stopped) status = "stopped";
    else if (s?.status === "ready") status = "connected";
    else if (s !== null) status = "connecting";
    else if (this.#waiting) status = "waiting";
    else status = "idle";
    return {
      status,
      url: s?.url ?? null,
      index: s === null ? null : this.#index,
      via: s === null ? null : this.#via,
      attempts: this.#attempts,
      failures: this.#failures,
      lastError: this.#lastError,
      connectedSince: s?.readyAt ?? null,
    };
  }

  get upstreams(): readonly Upstream[] {
    return this.#list;
  }

  /** The ready session, if any (its extranonce, mask and jobs). */
  get current(): UpstreamSession | null {
    return this.#session?.status === "ready" ? this.#session : null;
  }

  /** Starts dialling at the primary; also after stop(). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#stopped = false;
    this.#failures = 0;
    if (this.#list.length > 0) this.#dial(0, "order");
  }

  /** Closes everything and dials nothing until start(). */
  stop(): void {
    if (!this.#running) return;
    this.#running = false;
    this.#stopped = true;
    this.#redirect = null;
    this.#restartFromPrimary = false;
    this.#cancelRetry();
    this.#cancelProbe();
    this.#session?.close("stopped");
    this.#session = null;
  }

  /** A policy change: from now on only these upstreams (and users) may be used. */
  setUpstreams(upstreams: readonly Upstream[]): void {
    this.#list = v1Only(upstreams);
    if (this.#ownBook) this.#reach.want(this.#list);
    if (this.#probe !== null && indexOf(this.#list, this.#probe.upstream) !== 0) {
      this.#cancelProbe();
    }
    const s = this.#session;
    if (s !== null) {
      const index = indexOf(this.#list, s.upstream);
      if (index < 0) {
        this.#restartFromPrimary = true;
        s.close("not_allowed");
        return;
      }
      this.#index = index;
      if (index === 0) this.#cancelProbe();
      else if (
        s.status === "ready" &&
        this.#via === "order" &&
        this.#probeTimer === null &&
        this.#probe === null
      ) {
        this.#scheduleProbe();
      }
      return;
    }
    if (!this.#running) return;
    // Waiting or idle: a deliberate change deserves a fresh start at the new primary.
    this.#cancelRetry();
    this.#failures = 0;
    if (this.#list.length > 0) this.#dial(0, "order");
  }

  /** Forwards a share to the ready upstream as the policy user (see UpstreamSession.submit). */
  submit(
    worker: string,
    jobId: string,
    extranonce2: string,
    ntime: string,
    nonce: string,
    versionBits?: string,
  ): Promise<SubmitResult> {
    const s = this.current;
    if (s === null) return Promise.resolve(unanswered("not_connected"));
    return s.submit(worker, jobId, extranonce2, ntime, nonce, versionBits);
  }

  /** Difficulty for a job of the ready upstream; undefined when unknown, stale or from another. */
  difficultyForJob(jobId: string): number | undefined {
    return this.current?.difficultyForJob(jobId);
  }

  job(jobId: string): Job | undefined {
    return this.current?.job(jobId);
  }

  // ---- dialling -----------------------------------------------------------------------------

  #dial(index: number, via: "order" | "reconnect"): void {
    const upstream = this.#list[index];
    if (upstream === undefined || !this.#running) return;
    this.#waiting = false;
    this.#index = index;
    this.#via = via;
    this.#attempts++;
    const s = this.#newSession(upstream);
    this.#session = s;
    this.#reach.attempt(upstream);
    s.start();
  }

  #schedule(delayMs: number, then: () => void): void {
    this.#cancelRetry();
    this.#waiting = true;
    this.#retryTimer = this.#timers.setTimeout(() => {
      this.#retryTimer = null;
      then();
    }, delayMs);
  }

  #newSession(upstream: Upstream): UpstreamSession {
    const o = this.#o;
    const s: UpstreamSession = new UpstreamSession({
      ...o.session,
      upstream,
      agentVersion: o.agentVersion,
      resolveTarget: (target) => this.#resolve(target),
      clock: this.#clock,
      ...(o.sessionTimers === undefined ? {} : { timers: o.sessionTimers }),
      ...(o.counters === undefined ? {} : { counters: o.counters }),
      ...(o.logger === undefined ? {} : { logger: o.logger }),
      onReady: () => {
        if (s === this.#session) this.#ready(s);
        else if (s === this.#probe) this.#promote(s);
      },
      onDifficulty: (d) => {
        if (s === this.#session) this.emit("difficulty", d, s.url);
      },
      onJob: (job) => {
        if (s === this.#session) this.emit("job", job, s.url);
      },
      onExtranonce: (en1, size) => {
        if (s === this.#session) this.emit("extranonce", en1, size, s.url);
      },
      onVersionMask: (mask) => {
        if (s === this.#session) this.emit("versionMask", mask, s.url);
      },
      onRefused: (refused) => this.emit("refused", { ...refused, url: s.url }),
      onReconnect: (target, waitMs) => {
        if (s === this.#probe) return s.close("reconnect"); // a probe only checks the primary
        if (s !== this.#session) return;
        this.#redirect = { upstream: target, waitMs };
        s.close("reconnect");
      },
      onClose: (reason, error) => {
        if (s === this.#session) this.#ended(s, reason, error);
        else if (s === this.#probe) this.#probeEnded(s, reason, error);
      },
    });
    return s;
  }

  #resolve(target: Endpoint): Upstream | null {
    return (
      this.#list.find((u) => {
        const e = parseV1Url(u.url);
        return e !== null && sameEndpoint(e, target);
      }) ?? null
    );
  }

  #ready(s: UpstreamSession): void {
    this.#reach.ready(s.upstream);
    this.#o.logger?.info({ url: s.url, index: this.#index }, "upstream connected");
    this.emit("connected", {
      url: s.url,
      user: s.upstream.user,
      index: this.#index ?? 0,
      extranonce1: s.extranonce1,
      extranonce2Size: s.extranonce2Size,
      versionMask: s.versionMask,
      difficulty: s.difficulty,
    });
    // The session may have been replaced by a listener (a policy change): check again.
    if (s !== this.#session) return;
    if (s.difficultySet) this.emit("difficulty", s.difficulty, s.url);
    if (s.lastJob !== null && s === this.#session) this.emit("job", s.lastJob, s.url);
    if (s === this.#session && this.#index !== 0 && this.#via === "order") this.#scheduleProbe();
  }

  #ended(s: UpstreamSession, reason: SessionEndReason, error?: Error): void {
    this.#session = null;
    this.#cancelProbe();
    const readyAt = s.readyAt;
    const stable =
      readyAt !== null &&
      this.#clock.now() - readyAt >= (this.#o.stableAfterMs ?? POOL_DEFAULTS.stableAfterMs);
    this.#failures = stable ? 0 : this.#failures + 1;
    this.#lastError = error === undefined ? reason : `${reason}: ${error.message}`;
    const end: SessionEnd =
      error === undefined ? { url: s.url, reason } : { url: s.url, reason, error: error.message };
    if (readyAt === null) this.#reach.failed(s.upstream, reason, error);
    else this.#reach.lost(s.upstream, reason, error);
    // A failed attempt is the book's to report (at warn, rate-limited); a lost session is news.
    this.#o.logger?.[readyAt === null ? "debug" : "info"](
      { ...end, failures: this.#failures },
      "upstream session ended",
    );
    this.emit(readyAt === null ? "failed" : "disconnected", end);
    if (!this.#running || this.#session !== null) return; // a listener may have acted

    const redirect = this.#redirect;
    this.#redirect = null;
    if (this.#restartFromPrimary) {
      this.#restartFromPrimary = false;
      this.#failures = 0;
      if (this.#list.length > 0) this.#dial(0, "order");
      return;
    }
    if (this.#list.length === 0) return;
    const delay = backoffDelay(this.#failures, this.#backoff, this.#random);
    if (redirect !== null) {
      const index = indexOf(this.#list, redirect.upstream);
      if (index >= 0) {
        this.#schedule(Math.max(delay, redirect.waitMs), () => this.#dial(index, "reconnect"));
        return;
      }
    }
    const next = ((this.#index ?? -1) + 1) % this.#list.length;
    this.#schedule(delay, () => this.#dial(next, "order"));
  }

  // ---- returning to the primary -------------------------------------------------------------

  #scheduleProbe(): void {
    this.#cancelProbe();
    this.#probeTimer = this.#timers.setTimeout(() => {
      this.#probeTimer = null;
      const primary = this.#list[0];
      const s = this.#session;
      if (!this.#running || primary === undefined || s?.status !== "ready" || this.#index === 0)
        return;
      this.#attempts++;
      this.#probe = this.#newSession(primary);
      this.#reach.attempt(primary);
      this.#probe.start();
    }, this.#o.primaryRetryMs ?? POOL_DEFAULTS.primaryRetryMs);
  }

  #probeEnded(s: UpstreamSession, reason: SessionEndReason, error?: Error): void {
    this.#probe = null;
    this.#reach.failed(s.upstream, reason, error);
    this.#o.logger?.debug(
      { url: s.url, reason, error: error?.message },
      "primary still unavailable",
    );
    if (this.#running && this.#session?.status === "ready" && this.#index !== 0)
      this.#scheduleProbe();
  }

  #promote(probe: UpstreamSession): void {
    const old = this.#session;
    this.#probe = null;
    this.#session = probe;
    this.#index = 0;
    this.#via = "order";
    this.#failures = 0;
    if (old !== null) {
      this.emit("disconnected", { url: old.url, reason: "primary_restored" });
      old.close("primary_restored");
    }
    if (this.#session === probe) this.#ready(probe);
    // The old session's close no longer reaches #ended: reported here, after the new one is
    // ready, so that the data path never reads as disconnected in between.
    if (old !== null) this.#reach.lost(old.upstream, "primary_restored");
  }

  #cancelRetry(): void {
    if (this.#retryTimer !== null) this.#timers.clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#waiting = false;
  }

  #cancelProbe(): void {
    if (this.#probeTimer !== null) this.#timers.clearTimeout(this.#probeTimer);
    this.#probeTimer = null;
    const p = this.#probe;
    this.#probe = null;
    if (p === null) return;
    // Its close no longer reaches #probeEnded: an attempt given up, no failure.
    this.#reach.failed(p.upstream, "stopped");
    p.close("stopped");
  }
}

function v1Only(upstreams: readonly Upstream[]): readonly Upstream[] {
  return Object.freeze(upstreams.filter((u) => parseV1Url(u.url) !== null));
}

/** Allowed means the same url and the same user: a new user is a new consent. */
function indexOf(list: readonly Upstream[], u: Upstream): number {
  return list.findIndex((x) => x.url === u.url && x.user === u.user);
}
