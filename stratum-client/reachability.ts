import type { Clock } from "../lib/clock.ts";
import type { Logger } from "../lib/log/logger.ts";
import type { Upstream } from "../policy-guard/documents.ts";
import { parseV1Url } from "./endpoint.ts";
import type { SessionEndReason } from "./upstream.ts";

/**
 * Whether the proxy reaches its upstreams, for the operator (the local API's status, the
 * heartbeat's telemetry) and for the log: each Stratum V1 upstream of the policy, and the data
 * path as a whole. The upstream pools (failover.ts, one per lane) report every attempt, every
 * session that became ready, and every end; one book is shared by all lanes, so a lane added
 * for capacity neither doubles the log nor hides the other's session.
 *
 * "unreachable" means that connection attempts have failed since `since`, the first failure
 * after the last success; an attempt still in flight does not change that (a pool that keeps
 * refusing stays unreachable while it is dialled again). A session that was ready and ended is
 * not a failed attempt: the next attempt decides. Ends we chose (a policy change, a stop, a
 * client.reconnect followed, the primary restored) are no failure at all.
 *
 * The log gets one warning when an upstream becomes unreachable, then at most one a minute
 * while it stays so (with the count of failures since `since`), and one info line when it is
 * reached again: a pool down for a day is a few dozen lines, not one per backoff. No timer is
 * needed: failures are the events that are logged, and the injected clock spaces them.
 */

export type UpstreamState = "connected" | "connecting" | "unreachable" | "idle";

export interface UpstreamView {
  /** The upstream; null only when none is wanted (idle). */
  readonly url: string | null;
  readonly user: string | null;
  /**
   * connected: a session is ready. connecting: being dialled (or about to be), no failure since
   * the last success. unreachable: attempts have failed since `since`. idle: not dialled (for
   * the whole data path: the policy lists no Stratum V1 upstream).
   */
  readonly state: UpstreamState;
  /** When the state began (Unix ms); for unreachable, the first failed attempt. */
  readonly since: number;
  /**
   * Why the last attempt failed, or how the last session ended: an errno code (ECONNREFUSED,
   * ETIMEDOUT, ENOTFOUND…) or the session's reason (handshake_timeout, unauthorized,
   * peer_closed…), at most 64 characters of [A-Za-z0-9_.-]. Null while connected and after an
   * end we chose.
   */
  readonly last_error: string | null;
  /** Connection attempts since the last success (0 while connected). */
  readonly attempts: number;
}

export interface UpstreamStatus extends UpstreamView {
  /** Each Stratum V1 upstream of the policy, in its order. */
  readonly upstreams: readonly UpstreamView[];
}

/** A consent lists at most 16 upstreams (policy-guard/documents.ts): the book keeps no more. */
export const MAX_TRACKED_UPSTREAMS = 16;
/** While an upstream stays unreachable, a warning at most this often. */
export const UNREACHABLE_LOG_EVERY_MS = 60_000;

/** Ends of a session that we chose: no failure of the upstream. */
const CHOSEN: ReadonlySet<SessionEndReason> = new Set<SessionEndReason>([
  "local",
  "stopped",
  "not_allowed",
  "reconnect",
  "primary_restored",
]);

/** The short, bounded label of a failure: the errno code when there is one, else the reason. */
export function failureLabel(reason: SessionEndReason, error?: Error): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const raw = typeof code === "string" ? code : reason;
  const clean = raw.replace(/[^A-Za-z0-9_.-]/g, "").slice(0, 64);
  return clean.length > 0 ? clean : reason;
}

interface Entry {
  readonly upstream: Upstream;
  state: UpstreamState;
  since: number;
  lastError: string | null;
  attempts: number;
  /** Ready sessions to it (one per lane at most). */
  ready: number;
  /** Failures since `since` while unreachable, and the last warning's time. */
  failures: number;
  warnedAt: number;
}

const key = (u: Upstream) => `${u.url}\n${u.user}`;

export class UpstreamReachability {
  readonly #clock: Clock;
  readonly #log: Logger | undefined;
  #wanted: readonly Upstream[] = [];
  #entries = new Map<string, Entry>();
  /** The data path as a whole; `upstream` is the one in use, last dialled or last failed. */
  readonly #all: Omit<Entry, "upstream" | "failures" | "warnedAt"> & { upstream: Upstream | null };

  constructor(o: { readonly clock: Clock; readonly logger?: Logger }) {
    this.#clock = o.clock;
    this.#log = o.logger;
    this.#all = {
      upstream: null,
      state: "idle",
      since: o.clock.now(),
      lastError: null,
      attempts: 0,
      ready: 0,
    };
  }

  /** The policy's upstreams (only Stratum V1 ones are dialled); empty: none is wanted. */
  want(upstreams: readonly Upstream[]): void {
    const now = this.#clock.now();
    this.#wanted = upstreams
      .filter((u) => parseV1Url(u.url) !== null)
      .slice(0, MAX_TRACKED_UPSTREAMS);
    const entries = new Map<string, Entry>();
    for (const u of this.#wanted) {
      entries.set(key(u), this.#entries.get(key(u)) ?? newEntry(u, now));
    }
    this.#entries = entries;
    const all = this.#all;
    if (this.#wanted.length === 0) {
      if (all.ready === 0) {
        this.#settle("idle", now, null, null);
        all.attempts = 0;
      }
    } else if (all.state === "idle") {
      this.#settle("connecting", now, this.#wanted[0] ?? null, null);
    }
  }

  /** An attempt to reach `u` starts (a session's dial, or a probe of the primary). */
  attempt(u: Upstream): void {
    const now = this.#clock.now();
    const e = this.#entries.get(key(u));
    if (e !== undefined) {
      e.attempts++;
      if (e.state === "idle") setState(e, "connecting", now);
    }
    const all = this.#all;
    if (all.ready > 0) return;
    all.attempts++;
    // While unreachable the view keeps naming the last failure (url and error together).
    if (all.state === "unreachable") return;
    const same = all.upstream !== null && key(all.upstream) === key(u);
    this.#settle("connecting", now, u, same ? all.lastError : null);
  }

  /** A session to `u` is ready. */
  ready(u: Upstream): void {
    const now = this.#clock.now();
    const e = this.#entries.get(key(u));
    if (e !== undefined) {
      e.ready++;
      if (e.state === "unreachable") {
        this.#log?.info(
          {
            url: u.url,
            user: u.user,
            unreachable_since: new Date(e.since).toISOString(),
            down_s: Math.round((now - e.since) / 1000),
            failures: e.failures,
          },
          "upstream reachable again",
        );
      }
      if (e.state !== "connected") setState(e, "connected", now);
      e.lastError = null;
      e.attempts = 0;
    }
    const all = this.#all;
    all.ready++;
    // The newest ready session is the one in use (a primary restored replaces the other).
    this.#settle("connected", now, u, null);
    all.attempts = 0;
  }

  /** An attempt to reach `u` ended before its session was ready. */
  failed(u: Upstream, reason: SessionEndReason, error?: Error): void {
    const now = this.#clock.now();
    const e = this.#entries.get(key(u));
    if (CHOSEN.has(reason)) {
      if (e !== undefined && e.ready === 0 && e.state === "connecting") setState(e, "idle", now);
      return;
    }
    const label = failureLabel(reason, error);
    if (e !== undefined && e.ready === 0) this.#failure(e, label, reason, error, now);
    if (this.#all.ready === 0) this.#settle("unreachable", now, u, label);
  }

  /** A ready session to `u` ended. */
  lost(u: Upstream, reason: SessionEndReason, error?: Error): void {
    const now = this.#clock.now();
    const label = CHOSEN.has(reason) ? null : failureLabel(reason, error);
    const e = this.#entries.get(key(u));
    if (e !== undefined) {
      e.ready = Math.max(0, e.ready - 1);
      if (e.ready === 0) {
        setState(e, "idle", now);
        e.lastError = label;
        e.attempts = 0;
      }
    }
    const all = this.#all;
    all.ready = Math.max(0, all.ready - 1);
    if (all.ready > 0) {
      if (all.upstream !== null && key(all.upstream) === key(u)) {
        all.upstream = [...this.#entries.values()].find((x) => x.ready > 0)?.upstream ?? u;
      }
      return;
    }
    // Attempts count again from this success; the next one decides whether it is reachable.
    all.attempts = 0;
    if (this.#wanted.length === 0) this.#settle("idle", now, null, null);
    else this.#settle("connecting", now, u, label);
  }

  /** The data path's upstream (the one in use), and each of the policy's. */
  status(): UpstreamStatus {
    const a = this.#all;
    return {
      url: a.upstream?.url ?? null,
      user: a.upstream?.user ?? null,
      state: a.state,
      since: a.since,
      last_error: a.lastError,
      attempts: a.attempts,
      upstreams: this.#wanted.map((u) => {
        const e = this.#entries.get(key(u)) ?? newEntry(u, a.since);
        return {
          url: u.url,
          user: u.user,
          state: e.state,
          since: e.since,
          last_error: e.lastError,
          attempts: e.attempts,
        };
      }),
    };
  }

  #failure(
    e: Entry,
    label: string,
    reason: SessionEndReason,
    error: Error | undefined,
    now: number,
  ): void {
    e.lastError = label;
    const u = e.upstream;
    if (e.state !== "unreachable") {
      setState(e, "unreachable", now);
      e.failures = 1;
      e.warnedAt = now;
      this.#log?.warn(
        { url: u.url, user: u.user, error: label, reason, detail: bounded(error?.message) },
        "upstream unreachable",
      );
      return;
    }
    e.failures++;
    // A clock set back must not silence the log: any step backwards counts as due.
    if (now - e.warnedAt >= UNREACHABLE_LOG_EVERY_MS || now < e.warnedAt) {
      e.warnedAt = now;
      this.#log?.warn(
        {
          url: u.url,
          user: u.user,
          error: label,
          since: new Date(e.since).toISOString(),
          failures: e.failures,
        },
        "upstream still unreachable",
      );
    }
  }

  #settle(state: UpstreamState, now: number, u: Upstream | null, lastError: string | null): void {
    const a = this.#all;
    if (a.state !== state) {
      a.state = state;
      a.since = now;
    }
    a.upstream = u;
    a.lastError = lastError;
  }
}

function newEntry(upstream: Upstream, now: number): Entry {
  return {
    upstream,
    state: "idle",
    since: now,
    lastError: null,
    attempts: 0,
    ready: 0,
    failures: 0,
    warnedAt: now,
  };
}

function setState(e: Entry, state: UpstreamState, now: number): void {
  if (e.state === state) return;
  e.state = state;
  e.since = now;
  if (state !== "unreachable") e.failures = 0;
}

/** An error message for the log: bounded, as it may quote the peer. */
function bounded(message: string | undefined): string | undefined {
  if (message === undefined) return undefined;
  return message.length > 200 ? `${message.slice(0, 197)}...` : message;
}
