import type { Clock } from "../lib/clock.ts";
import type { ChainHead } from "../lib/fs/chain-log.ts";
import type { TimerHandle, Timers } from "../lib/timers.ts";

/**
 * Repeats summarized in front of the audit log (issue 15). Some records are made by whoever
 * chooses to repeat them: a LAN host connecting from outside `networks` 20,000 times wrote
 * 20,000 records (5.8 MB in 26 s), and since an audit log that cannot be written holds mining,
 * filling the disk that way stopped mining. Routine repeats (a refused ASIC reconnecting, an
 * assignment renewed every 30 s) drowned what matters too.
 *
 * A record of a repeatable kind (REPEATABLE) is written in full the first time its key is
 * seen — its type and the fields that make two of them the same thing (never time) — then
 * repeats are only counted, and an `audit.repeated` record carries the count at most once per
 * interval per key:
 *
 *   {"type": "audit.repeated", "of": "stratum.connection_refused",
 *    "key": {"reason": "network", "ip": "10.0.0.9"}, "count": 19999,
 *    "first_at": "…", "last_at": "…", "interval_s": 60}
 *
 * so that the records written for one key and the counts of its summaries add up to every
 * record that was appended: nothing is dropped silently. Pending counts are written when due
 * (a timer, armed only while some are pending), when a run changes, and on close.
 *
 * Memory is bounded: at most `maxKeys` keys are tracked; a record whose key finds no room is
 * counted as overflow of its type (summarized the same way, `"key": null, "overflow": true`).
 *
 * Everything else is written every time, unchanged — state transitions, decisions, documents
 * accepted or refused, commands, keys, pauses, block candidates: a kind is merged only if it
 * is listed here. While the log cannot be written, records pass straight to it (and fail
 * there, counted lost by the sink and holding mining) as without the summarizer.
 */

export interface SummaryRule {
  /** The fields that make two records of this type the same (besides the type). */
  readonly key: readonly string[];
  /**
   * `key`: each key counted apart (refusals from many peers interleave). `run`: one key at a
   * time — a record whose key differs from the last is a change, written in full at once
   * (after the count of the previous run), never merged: an assignment naming another
   * upstream, say.
   */
  readonly scope: "key" | "run";
}

/**
 * The kinds a peer or a routine can repeat without end. Not listed: written every time.
 * Assignments are renewed long before they expire (with a 60 s publication TTL: 57 records a
 * minute): `exp` and `why` differ in each, the upstream is what matters.
 */
export const REPEATABLE: Readonly<Record<string, SummaryRule>> = Object.freeze({
  "stratum.connection_refused": { key: ["reason", "ip"], scope: "key" },
  "stratum.connection_closed": { key: ["reason", "ip"], scope: "key" },
  "stratum.reconnect_refused": { key: ["target", "reason"], scope: "key" },
  "assignment.accepted": { key: ["upstream", "stale"], scope: "run" },
  "assignment.refused": { key: ["reason"], scope: "run" },
  "heartbeat.replay": { key: [], scope: "run" },
});

export const SUMMARY_TYPE = "audit.repeated";
export const DEFAULT_SUMMARY_INTERVAL_MS = 60_000;
export const DEFAULT_MAX_SUMMARY_KEYS = 1024;

/** The log behind the summarizer: the agent's watched sink, or a chain log (local mode). */
export interface SummarizedLog {
  append(body: Readonly<Record<string, unknown>>): ChainHead;
  head(): ChainHead | null;
  /** False while appends fail (audit-sink.ts); absent: always writable. */
  readonly writable?: boolean;
}

export interface AuditSummarizer {
  append(body: Readonly<Record<string, unknown>>): ChainHead;
  /** Writes every pending count now, due or not. */
  flush(): void;
  /** Flushes and stops its timer; records appended afterwards pass straight through. */
  close(): void;
  /** What it holds: keys tracked (overflow included) and records counted not yet written. */
  pending(): { readonly keys: number; readonly counted: number };
}

export interface AuditSummaryOptions {
  readonly clock: Clock;
  readonly timers: Timers;
  readonly intervalMs?: number;
  readonly maxKeys?: number;
  readonly rules?: Readonly<Record<string, SummaryRule>>;
}

interface Entry {
  readonly of: string;
  /** The type and key values, serialised: what a repeat must equal. */
  readonly id: string;
  /** null for a type's overflow. */
  readonly key: Readonly<Record<string, unknown>> | null;
  count: number;
  firstAt: number;
  lastAt: number;
  /** When this key's last record (in full or summary) was written. */
  windowStart: number;
}

export function summarizeAudit(log: SummarizedLog, o: AuditSummaryOptions): AuditSummarizer {
  const intervalMs = o.intervalMs ?? DEFAULT_SUMMARY_INTERVAL_MS;
  const maxKeys = o.maxKeys ?? DEFAULT_MAX_SUMMARY_KEYS;
  const rules = o.rules ?? REPEATABLE;
  /** `key` scope, by key id: at most maxKeys. */
  const keyed = new Map<string, Entry>();
  /** `run` scope, by type: one each, outside the cap (a change must never become overflow). */
  const runs = new Map<string, Entry>();
  /** By type: `key`-scope records that found no room among `keyed`. */
  const overflow = new Map<string, Entry>();
  const books = [keyed, runs, overflow];
  let timer: TimerHandle | null = null;
  let timerAt = Number.POSITIVE_INFINITY;
  let closed = false;

  const iso = (ms: number) => new Date(ms).toISOString();
  // A clock stepped back counts as due: a summary is never postponed by the clock.
  const due = (e: Entry, now: number) => now - e.windowStart >= intervalMs || now < e.windowStart;

  /** Writes the entry's count; a failure (thrown) keeps the count for the next try. */
  const summarize = (e: Entry, now: number): void => {
    if (e.count === 0) return;
    log.append({
      type: SUMMARY_TYPE,
      of: e.of,
      key: e.key,
      ...(e.key === null ? { overflow: true } : {}),
      count: e.count,
      first_at: iso(e.firstAt),
      last_at: iso(e.lastAt),
      interval_s: intervalMs / 1000,
    });
    e.count = 0;
    e.windowStart = now;
  };

  const arm = (at: number): void => {
    if (closed || at >= timerAt) return;
    if (timer !== null) o.timers.clearTimeout(timer);
    timerAt = at;
    timer = o.timers.setTimeout(sweep, Math.max(1, at - o.clock.now()));
  };

  /** Writes what is due, forgets keys idle for an interval, re-arms for what is still pending. */
  const sweep = (): void => {
    timer = null;
    timerAt = Number.POSITIVE_INFINITY;
    const now = o.clock.now();
    let next = Number.POSITIVE_INFINITY;
    for (const book of books) {
      for (const [slot, e] of book) {
        if (e.count > 0 && due(e, now) && log.writable !== false) {
          try {
            summarize(e, now);
          } catch {
            // The sink holds mining and probes; the count waits for the next sweep.
          }
        }
        if (e.count > 0) next = Math.min(next, Math.max(e.windowStart + intervalMs, now + 1));
        else if (due(e, now)) book.delete(slot);
      }
    }
    if (next < Number.POSITIVE_INFINITY) arm(next);
  };

  /** Room for one more key: drop one idle for an interval, if any. */
  const room = (now: number): boolean => {
    if (keyed.size < maxKeys) return true;
    for (const [slot, e] of keyed) {
      if (e.count === 0 && due(e, now)) {
        keyed.delete(slot);
        return true;
      }
    }
    return false;
  };

  const fresh = (of: string, id: string, key: Entry["key"], now: number): Entry => ({
    of,
    id,
    key,
    count: 0,
    firstAt: now,
    lastAt: now,
    windowStart: now,
  });

  return {
    append(body) {
      const type = typeof body.type === "string" ? body.type : "";
      const rule = rules[type];
      if (closed || rule === undefined || log.writable === false) return log.append(body);
      const now = o.clock.now();
      const key: Record<string, unknown> = {};
      for (const f of rule.key) key[f] = body[f] ?? null;
      const id = JSON.stringify([type, ...rule.key.map((f) => key[f])]);
      const book = rule.scope === "run" ? runs : keyed;
      const slot = rule.scope === "run" ? type : id;
      let e = book.get(slot);
      if (e !== undefined && e.id !== id) {
        // A run changed: its count first, so that the log keeps the order, then the change.
        summarize(e, now);
        book.delete(slot);
        e = undefined;
      }
      if (e !== undefined && e.count === 0 && due(e, now)) {
        book.delete(slot); // quiet for an interval: written in full again
        e = undefined;
      }
      if (e === undefined && rule.scope === "key" && !room(now)) {
        e = overflow.get(type);
        if (e === undefined) {
          e = fresh(type, type, null, now);
          overflow.set(type, e);
        }
      }
      // Counted, nothing written: the head stays the last record that was. There is one
      // (the key's first record); were there none, the record goes in full, never lost.
      const last = e === undefined ? null : log.head();
      if (e === undefined || last === null) {
        const written = log.append(body);
        book.set(slot, fresh(type, id, key, now));
        return written;
      }
      if (e.count === 0) e.firstAt = now;
      e.count++;
      e.lastAt = now;
      arm(e.windowStart + intervalMs);
      return last;
    },
    flush() {
      const now = o.clock.now();
      for (const book of books) for (const e of book.values()) summarize(e, now);
    },
    close() {
      if (closed) return;
      closed = true;
      if (timer !== null) o.timers.clearTimeout(timer);
      timer = null;
      const now = o.clock.now();
      for (const book of books) {
        for (const e of book.values()) {
          try {
            summarize(e, now);
          } catch {
            // The log failed: the sink counts the summary lost, as any record it refused.
          }
        }
        book.clear();
      }
    },
    pending() {
      let counted = 0;
      for (const book of books) for (const e of book.values()) counted += e.count;
      return { keys: keyed.size + runs.size + overflow.size, counted };
    },
  };
}
