import { renameSync } from "node:fs";
import { deflateRawSync, inflateRawSync } from "node:zlib";
import type { Clock } from "../lib/clock.ts";
import { AgentdError, fail } from "../lib/errors.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";
import type { Timers } from "../lib/timers.ts";

/**
 * Node-reward eligibility (docs/eligibility.md): a node is eligible while
 *
 * - its uptime over the last 7 days is at least 95 %, counted over a full 7-day window;
 * - it has an open Lightning channel to the treasury;
 * - its bitcoind is synced.
 *
 * Two layers. The pure core, `createUptimeWindow` and `evaluateEligibility`, does no I/O and
 * reads no clock: every time is an argument, so a test can play seven days in milliseconds.
 * The shell, `startEligibilityTracker`, samples the injected inputs on an injected timer,
 * persists the window in a versioned state file, and reports.
 *
 * The window is 120,960 slots of 5 s. Each slot is one of: up, down, or excluded
 * (maintenance). A slot the agent did not sample because it was not running is down — an
 * agent that was off was not up — unless a maintenance window covered it, or the grace after
 * an update. Slots older than the window roll off. The past is fixed: a slot, once recorded,
 * is never rewritten by a maintenance window or grace declared later.
 */

/** The file's name inside the state directory. */
export const ELIGIBILITY_FILE = "eligibility.json";
/** The state file's format (lib/fs/state-file.ts). */
export const ELIGIBILITY_FORMAT = 1;
/** One slot, and the sampling period. */
export const SLOT_MS = 5_000;
/** The window: 7 days, 120,960 slots of 5 s. */
export const WINDOW_MS = 7 * 24 * 3600 * 1000;
/** The uptime rule: at least this share of the counted slots up. */
export const UPTIME_THRESHOLD_PERCENT = 95;
/** After an update (the running version differs from the file's), this long counts as up. */
export const UPDATE_GRACE_MS = 10 * 60 * 1000;
/** At most this many maintenance windows are kept. */
export const MAX_MAINTENANCE_WINDOWS = 256;

/**
 * Every reason eligibility can be withheld for, with its meaning. Stable codes (the local
 * API, heartbeats and the operator's scripts match on them); docs/eligibility.md lists them
 * and test/agent/eligibility.test.ts checks that it does. Unknown inputs fail closed, each
 * with its own reason.
 */
export const ELIGIBILITY_REASONS = Object.freeze({
  "uptime.window_incomplete":
    "Less than 7 days of history: the 95 % rule is over a full window, so a new node (or one whose history was lost) waits 7 days.",
  "uptime.history_lost":
    "The persisted window could not be read (corrupt, from a newer agentd, untrusted) or the clock went back further than the window; history starts again from now.",
  "uptime.below_95": "Less than 95 % of the counted slots of the window were up.",
  "uptime.clock_behind":
    "The clock is behind the last sample; samples are ignored, and eligibility withheld, until it catches up.",
  "lightning.no_channel": "No open Lightning channel to the treasury.",
  "lightning.unknown":
    "The Lightning channel to the treasury is not known (no answer from the node yet).",
  "bitcoind.not_synced": "bitcoind is not synced (initial block download or behind the tip).",
  "bitcoind.unknown": "bitcoind's sync state is not known (no answer from it yet).",
} as const);

export type EligibilityReason = keyof typeof ELIGIBILITY_REASONS;

/** The reason codes, in the order `evaluateEligibility` gives them. */
export const ELIGIBILITY_REASON_CODES: readonly EligibilityReason[] = Object.freeze(
  Object.keys(ELIGIBILITY_REASONS) as EligibilityReason[],
);

export type LightningState = "open" | "none" | "unknown";
export type BitcoindState = "synced" | "syncing" | "unknown";

/** A span of time, [start_ms, end_ms). */
export interface TimeRange {
  readonly start_ms: number;
  readonly end_ms: number;
}

// ---------------------------------------------------------------------------------------------
// The pure core: the window.

export interface UptimeWindowOptions {
  /** One slot (default 5 s). */
  readonly slotMs?: number;
  /** The window (default 7 days); a whole number of slots. */
  readonly windowMs?: number;
  /**
   * Up to this many slots missed between two samples take the later sample's value (default
   * 2, 10 s): timer drift or a GC pause must not cost uptime. A longer gap is the agent not
   * running, and is down.
   */
  readonly bridgeSlots?: number;
}

export interface UptimeStats {
  /** The window's length (604,800 s). */
  readonly window_s: number;
  /** History inside the window: from the first sample (or the window's start) to the last. */
  readonly observed_s: number;
  /** Slots counted (observed minus maintenance), in seconds. */
  readonly counted_s: number;
  /** Up slots, in seconds. */
  readonly up_s: number;
  /** up / counted; 0 when nothing is counted. */
  readonly uptime_ratio: number;
  /** At least 95 % up, over at least one counted slot (exact, in integers). */
  readonly meets_threshold: boolean;
  /** A whole window of history. */
  readonly complete: boolean;
  /** History was lost (and the window is not complete again yet). */
  readonly history_lost: boolean;
  /** The last sample offered was older than the last one recorded, and was ignored. */
  readonly clock_behind: boolean;
  /** The end of the last recorded slot (null before the first sample). */
  readonly through_ms: number | null;
}

export type RecordResult = "recorded" | "ignored" | "reset";

export interface UptimeWindow {
  readonly slotMs: number;
  /** Slots in the window (120,960). */
  readonly slots: number;
  /**
   * One sample at `nowMs`. Fills the slots since the last sample (down, unless bridged,
   * excused by maintenance, or in the grace). A sample before the last one is ignored (the
   * clock went back); one more than a window before it resets the history (`reset`).
   */
  record(nowMs: number, up: boolean): RecordResult;
  stats(): UptimeStats;
  /**
   * Replaces the maintenance windows from `nowMs` on. Before `nowMs`, the windows known until
   * then stay (they govern the slots not recorded yet, the gap of a restart): a window
   * declared now cannot excuse downtime that already happened.
   */
  setMaintenance(windows: readonly TimeRange[], nowMs: number): void;
  maintenance(): readonly TimeRange[];
  /** The post-update grace: slots starting inside it, not yet recorded, count as up. */
  setGrace(range: TimeRange | null): void;
  grace(): TimeRange | null;
  /** The window as JSON data for the state file. */
  encode(): EncodedWindow;
}

/**
 * The window as it is persisted. The two bitsets (one bit per slot, in ring order: slot `s` at
 * bit `s mod slots`) are deflated and base64-encoded: 15,120 bytes each raw, a few dozen
 * bytes each for a window with a few outages, so the file is typically under 1 KB (300 bytes
 * for a week all up); a random up/down pattern makes it about 20 KB, and its bound (both
 * bitsets incompressible) is about 41 KB.
 */
export interface EncodedWindow {
  readonly slot_ms: number;
  readonly window_ms: number;
  readonly first_slot: number | null;
  readonly last_slot: number | null;
  /** Slots up. */
  readonly up: string;
  /** Slots excluded (maintenance). A slot in neither is down. */
  readonly excluded: string;
  readonly maintenance: readonly TimeRange[];
  readonly grace: TimeRange | null;
  readonly history_lost: boolean;
}

interface WindowInit {
  firstSlot: number | null;
  lastSlot: number | null;
  up: Uint8Array;
  excluded: Uint8Array;
  maintenance: TimeRange[];
  grace: TimeRange | null;
  historyLost: boolean;
}

interface Geometry {
  readonly slotMs: number;
  readonly windowMs: number;
  readonly slots: number;
  readonly bridgeSlots: number;
}

function geometry(o: UptimeWindowOptions): Geometry {
  const slotMs = o.slotMs ?? SLOT_MS;
  const windowMs = o.windowMs ?? WINDOW_MS;
  const bridgeSlots = o.bridgeSlots ?? 2;
  if (!Number.isSafeInteger(slotMs) || slotMs < 1) {
    throw fail("AGENTD_E_INTERNAL", `eligibility: slotMs must be a positive integer (${slotMs})`);
  }
  if (!Number.isSafeInteger(windowMs) || windowMs < slotMs || windowMs % slotMs !== 0) {
    throw fail(
      "AGENTD_E_INTERNAL",
      `eligibility: windowMs must be a whole number of slots (${windowMs}, slot ${slotMs})`,
    );
  }
  if (!Number.isSafeInteger(bridgeSlots) || bridgeSlots < 0) {
    throw fail("AGENTD_E_INTERNAL", `eligibility: bridgeSlots must be >= 0 (${bridgeSlots})`);
  }
  return { slotMs, windowMs, slots: windowMs / slotMs, bridgeSlots };
}

/** An empty window (no history), or one marked as having lost its history. */
export function createUptimeWindow(
  options: UptimeWindowOptions & { readonly historyLost?: boolean } = {},
): UptimeWindow {
  const g = geometry(options);
  const bytes = Math.ceil(g.slots / 8);
  return windowOf(g, {
    firstSlot: null,
    lastSlot: null,
    up: new Uint8Array(bytes),
    excluded: new Uint8Array(bytes),
    maintenance: [],
    grace: null,
    historyLost: options.historyLost ?? false,
  });
}

function windowOf(g: Geometry, init: WindowInit): UptimeWindow {
  const { slotMs, slots: n, bridgeSlots } = g;
  const up = init.up;
  const excluded = init.excluded;
  let firstSlot = init.firstSlot;
  let lastSlot = init.lastSlot;
  let maintenance = init.maintenance;
  let grace = init.grace;
  let historyLost = init.historyLost;
  let clockBehind = false;
  let upCount = popcount(up);
  let excludedCount = popcount(excluded);

  const put = (slot: number, isUp: boolean, isExcluded: boolean) => {
    const i = slot % n;
    if (getBit(up, i)) upCount--;
    if (getBit(excluded, i)) excludedCount--;
    setBit(up, i, isUp);
    setBit(excluded, i, isExcluded);
    if (isUp) upCount++;
    if (isExcluded) excludedCount++;
  };

  /** The slots whose start lies in `r`, intersected with [a, b]. */
  const slotsIn = (r: TimeRange, a: number, b: number): [number, number] => [
    Math.max(a, Math.ceil(r.start_ms / slotMs)),
    Math.min(b, Math.ceil(r.end_ms / slotMs) - 1),
  ];

  /** Finalizes slots [a, b]: the sample's value, then the grace (up), then maintenance. */
  const fill = (a: number, b: number, sampled: boolean) => {
    for (let s = a; s <= b; s++) put(s, sampled, false);
    if (grace !== null) {
      const [from, to] = slotsIn(grace, a, b);
      for (let s = from; s <= to; s++) put(s, true, false);
    }
    for (const w of maintenance) {
      const [from, to] = slotsIn(w, a, b);
      for (let s = from; s <= to; s++) put(s, false, true);
    }
  };

  /** Drops what can no longer touch a slot not yet recorded. */
  const prune = () => {
    if (lastSlot === null) return;
    const next = (lastSlot + 1) * slotMs;
    maintenance = maintenance.filter((w) => w.end_ms > next);
    if (grace !== null && grace.end_ms <= next) grace = null;
  };

  const record = (nowMs: number, isUp: boolean): RecordResult => {
    if (!Number.isFinite(nowMs) || nowMs < 0) {
      throw fail("AGENTD_E_INTERNAL", `eligibility: not a time: ${nowMs}`);
    }
    const slot = Math.floor(nowMs / slotMs);
    if (firstSlot === null || lastSlot === null) {
      firstSlot = slot;
      lastSlot = slot;
      fill(slot, slot, isUp);
      return "recorded";
    }
    if (slot < lastSlot) {
      if (lastSlot - slot < n) {
        clockBehind = true;
        return "ignored";
      }
      // Back by more than the whole window: the history cannot be placed in time any more.
      up.fill(0);
      excluded.fill(0);
      upCount = 0;
      excludedCount = 0;
      historyLost = true;
      clockBehind = false;
      firstSlot = slot;
      lastSlot = slot;
      fill(slot, slot, isUp);
      return "reset";
    }
    clockBehind = false;
    if (slot === lastSlot) {
      // A second sample in one slot: it is up only if every sample in it was.
      if (!isUp) fill(slot, slot, false);
      return "recorded";
    }
    const missed = slot - lastSlot - 1;
    const from = Math.max(lastSlot + 1, slot - n + 1);
    if (from <= slot - 1) fill(from, slot - 1, missed <= bridgeSlots ? isUp : false);
    fill(slot, slot, isUp);
    lastSlot = slot;
    if (historyLost && lastSlot - firstSlot + 1 >= n) historyLost = false;
    prune();
    return "recorded";
  };

  const stats = (): UptimeStats => {
    const span = firstSlot === null || lastSlot === null ? 0 : lastSlot - firstSlot + 1;
    const inWindow = Math.min(span, n);
    const counted = inWindow - excludedCount;
    const complete = span >= n;
    return {
      window_s: (n * slotMs) / 1000,
      observed_s: (inWindow * slotMs) / 1000,
      counted_s: (counted * slotMs) / 1000,
      up_s: (upCount * slotMs) / 1000,
      uptime_ratio: counted > 0 ? upCount / counted : 0,
      meets_threshold: counted > 0 && upCount * 100 >= counted * UPTIME_THRESHOLD_PERCENT,
      complete,
      history_lost: historyLost && !complete,
      clock_behind: clockBehind,
      through_ms: lastSlot === null ? null : (lastSlot + 1) * slotMs,
    };
  };

  return {
    slotMs,
    slots: n,
    record,
    stats,
    setMaintenance(windows, nowMs) {
      const given = checkRanges(windows);
      if (!Number.isFinite(nowMs) || nowMs < 0) {
        throw fail("AGENTD_E_INTERNAL", `eligibility: not a time: ${nowMs}`);
      }
      const before = maintenance
        .filter((w) => w.start_ms < nowMs)
        .map((w) => ({ start_ms: w.start_ms, end_ms: Math.min(w.end_ms, nowMs) }));
      const after = given
        .filter((w) => w.end_ms > nowMs)
        .map((w) => ({ start_ms: Math.max(w.start_ms, nowMs), end_ms: w.end_ms }));
      const next = [...before, ...after].sort((a, b) => a.start_ms - b.start_ms);
      if (next.length > MAX_MAINTENANCE_WINDOWS) {
        throw fail(
          "AGENTD_E_USAGE",
          `eligibility: at most ${MAX_MAINTENANCE_WINDOWS} maintenance windows (${next.length})`,
        );
      }
      maintenance = next;
      prune();
    },
    maintenance: () => maintenance.map((w) => ({ ...w })),
    setGrace(range) {
      grace = range === null ? null : (checkRanges([range])[0] ?? null);
      prune();
    },
    grace: () => (grace === null ? null : { ...grace }),
    encode: () => ({
      slot_ms: slotMs,
      window_ms: g.windowMs,
      first_slot: firstSlot,
      last_slot: lastSlot,
      up: deflateRawSync(up, { level: 9 }).toString("base64"),
      excluded: deflateRawSync(excluded, { level: 9 }).toString("base64"),
      maintenance: maintenance.map((w) => ({ ...w })),
      grace: grace === null ? null : { ...grace },
      history_lost: historyLost,
    }),
  };
}

function checkRanges(ranges: readonly TimeRange[]): TimeRange[] {
  if (!Array.isArray(ranges)) {
    throw fail("AGENTD_E_USAGE", "eligibility: time ranges must be a list");
  }
  return ranges.map((r, i) => {
    const ok =
      typeof r === "object" &&
      r !== null &&
      Number.isSafeInteger(r.start_ms) &&
      Number.isSafeInteger(r.end_ms) &&
      r.start_ms >= 0 &&
      r.start_ms < r.end_ms;
    if (!ok) {
      throw fail(
        "AGENTD_E_USAGE",
        `eligibility: time range ${i} must be {start_ms, end_ms}, integers with start < end`,
      );
    }
    return { start_ms: r.start_ms, end_ms: r.end_ms };
  });
}

/**
 * A window from its persisted form. Throws AGENTD_E_FILE_CORRUPT for anything that is not
 * exactly what `encode` writes with this geometry (a window kept with other slots cannot be
 * mapped onto this one).
 */
export function decodeUptimeWindow(data: unknown, options: UptimeWindowOptions = {}): UptimeWindow {
  const g = geometry(options);
  const bad = (why: string) =>
    fail("AGENTD_E_FILE_CORRUPT", `eligibility window: ${why}`, { reason: why });
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw bad("not an object");
  }
  const d = data as Record<string, unknown>;
  const keys = Object.keys(d).sort().join(",");
  const expected =
    "excluded,first_slot,grace,history_lost,last_slot,maintenance,slot_ms,up,window_ms";
  if (keys !== expected) throw bad(`members must be exactly ${expected}`);
  if (d.slot_ms !== g.slotMs || d.window_ms !== g.windowMs) {
    throw bad(
      `kept with ${String(d.slot_ms)} ms slots over ${String(d.window_ms)} ms, not ${g.slotMs} over ${g.windowMs}`,
    );
  }
  const slot = (v: unknown) => v === null || (Number.isSafeInteger(v) && (v as number) >= 0);
  if (
    !slot(d.first_slot) ||
    !slot(d.last_slot) ||
    (d.first_slot === null) !== (d.last_slot === null)
  ) {
    throw bad("first_slot and last_slot must both be slots, or both null");
  }
  const firstSlot = d.first_slot as number | null;
  const lastSlot = d.last_slot as number | null;
  if (firstSlot !== null && lastSlot !== null && firstSlot > lastSlot) {
    throw bad("first_slot is after last_slot");
  }
  if (typeof d.history_lost !== "boolean") throw bad("history_lost must be a boolean");
  const bytes = Math.ceil(g.slots / 8);
  const up = bitset(d.up, bytes, "up", bad);
  const excluded = bitset(d.excluded, bytes, "excluded", bad);
  for (let i = 0; i < bytes; i++) {
    if (((up[i] as number) & (excluded[i] as number)) !== 0)
      throw bad("a slot both up and excluded");
  }
  // Bits may only be set for slots of the history inside the window.
  let inHistory = 0;
  if (firstSlot !== null && lastSlot !== null) {
    for (let s = Math.max(firstSlot, lastSlot - g.slots + 1); s <= lastSlot; s++) {
      const i = s % g.slots;
      if (getBit(up, i)) inHistory++;
      if (getBit(excluded, i)) inHistory++;
    }
  }
  if (inHistory !== popcount(up) + popcount(excluded)) throw bad("slots set outside the history");
  let maintenance: TimeRange[];
  let grace: TimeRange | null;
  try {
    maintenance = checkRanges(d.maintenance as TimeRange[]);
    grace = d.grace === null ? null : (checkRanges([d.grace as TimeRange])[0] ?? null);
  } catch {
    throw bad("maintenance or grace is not a list of time ranges");
  }
  if (maintenance.length > MAX_MAINTENANCE_WINDOWS) throw bad("too many maintenance windows");
  return windowOf(g, {
    firstSlot,
    lastSlot,
    up,
    excluded,
    maintenance,
    grace,
    historyLost: d.history_lost,
  });
}

function bitset(
  v: unknown,
  bytes: number,
  name: string,
  bad: (why: string) => AgentdError,
): Uint8Array {
  if (typeof v !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw bad(`${name}: not base64`);
  const packed = Buffer.from(v, "base64");
  if (packed.toString("base64") !== v) throw bad(`${name}: not canonical base64`);
  let raw: Buffer;
  try {
    // Bounded: a hostile file cannot make it inflate more than one window.
    raw = inflateRawSync(packed, { maxOutputLength: bytes });
  } catch {
    throw bad(`${name}: not a deflated bitset of ${bytes} bytes`);
  }
  if (raw.length !== bytes) throw bad(`${name}: ${raw.length} bytes, not ${bytes}`);
  return new Uint8Array(raw);
}

const getBit = (bits: Uint8Array, i: number): boolean =>
  (((bits[i >> 3] as number) >> (i & 7)) & 1) === 1;

function setBit(bits: Uint8Array, i: number, v: boolean): void {
  const b = bits[i >> 3] as number;
  bits[i >> 3] = v ? b | (1 << (i & 7)) : b & ~(1 << (i & 7));
}

function popcount(bits: Uint8Array): number {
  let c = 0;
  for (const byte of bits) {
    let b = byte;
    while (b !== 0) {
      b &= b - 1;
      c++;
    }
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// The pure core: the rule.

export interface EligibilityVerdict {
  readonly eligible: boolean;
  readonly reasons: readonly EligibilityReason[];
}

/** Eligible when no reason withholds it; the reasons in ELIGIBILITY_REASON_CODES order. */
export function evaluateEligibility(
  uptime: UptimeStats,
  lightning: LightningState,
  bitcoind: BitcoindState,
): EligibilityVerdict {
  const reasons: EligibilityReason[] = [];
  if (!uptime.complete) reasons.push("uptime.window_incomplete");
  if (uptime.history_lost) reasons.push("uptime.history_lost");
  if (!uptime.meets_threshold) reasons.push("uptime.below_95");
  if (uptime.clock_behind) reasons.push("uptime.clock_behind");
  if (lightning === "none") reasons.push("lightning.no_channel");
  else if (lightning !== "open") reasons.push("lightning.unknown");
  if (bitcoind === "syncing") reasons.push("bitcoind.not_synced");
  else if (bitcoind !== "synced") reasons.push("bitcoind.unknown");
  return { eligible: reasons.length === 0, reasons };
}

// ---------------------------------------------------------------------------------------------
// The state file.

export interface EligibilityFile {
  /** The agent version that wrote the file (a different running version: an update). */
  readonly agentVersion: string;
  readonly window: UptimeWindow;
}

/**
 * Reads the eligibility file: undefined if there is none; throws the state-file layer's
 * AgentdError (AGENTD_E_FILE_CORRUPT, AGENTD_E_FILE_FORMAT_NEWER, trust and I/O errors) when
 * it cannot be used. For `agentd eligibility` and the tracker.
 */
export function readEligibilityFile(
  path: string,
  options: UptimeWindowOptions = {},
): EligibilityFile | undefined {
  const file = readStateFile(path, { format: ELIGIBILITY_FORMAT });
  if (file === undefined) return undefined;
  const d = file.data as { agent_version?: unknown; window?: unknown } | null;
  const keys = typeof d === "object" && d !== null ? Object.keys(d).sort().join(",") : "";
  if (keys !== "agent_version,window" || typeof d?.agent_version !== "string") {
    throw fail("AGENTD_E_FILE_CORRUPT", `${path}: not an eligibility state`, { path });
  }
  try {
    return { agentVersion: d.agent_version, window: decodeUptimeWindow(d.window, options) };
  } catch (err) {
    if (err instanceof AgentdError && err.code === "AGENTD_E_FILE_CORRUPT") {
      throw fail("AGENTD_E_FILE_CORRUPT", `${path}: ${err.message}`, { path }, err);
    }
    throw err;
  }
}

export function writeEligibilityFile(path: string, agentVersion: string, w: UptimeWindow): void {
  writeStateFile(path, ELIGIBILITY_FORMAT, { agent_version: agentVersion, window: w.encode() });
}

// ---------------------------------------------------------------------------------------------
// The shell.

export interface EligibilitySnapshot {
  readonly eligible: boolean;
  readonly reasons: readonly EligibilityReason[];
  readonly uptime_ratio: number;
  readonly window_s: number;
  readonly observed_s: number;
  readonly lightning: LightningState;
  readonly bitcoind: BitcoindState;
  /** Since when `eligible` has had its value, as far as this tracker saw (its start at most). */
  readonly since_ms: number;
  /** When this snapshot was taken. */
  readonly at_ms: number;
}

export interface EligibilityTrackerOptions {
  /** The state file (ELIGIBILITY_FILE in the state directory). */
  readonly path: string;
  readonly clock: Clock;
  readonly timers: Timers;
  /** The sampling period, which is also the slot (default 5 s). */
  readonly sampleMs?: number;
  /** The window (default 7 days). */
  readonly windowMs?: number;
  /** Whether the node is up now; the caller decides what that means. A throw is down. */
  readonly up: () => boolean;
  /** The Lightning channel to the treasury (the supervisor's adapter); a throw is unknown. */
  readonly lightning: () => LightningState;
  /** bitcoind's sync state (the supervisor's adapter); a throw is unknown. */
  readonly bitcoind: () => BitcoindState;
  /** The running agent's version: when the file's differs, the post-update grace applies. */
  readonly agentVersion: string;
  /** The post-update grace (default 10 min; 0: none). */
  readonly graceMs?: number;
  /** Maintenance windows in force from the start (see UptimeWindow.setMaintenance). */
  readonly maintenance?: readonly TimeRange[];
  /** Called when eligible or the reasons change, and at least every `reportEveryMs`. */
  readonly onReport?: (snapshot: EligibilitySnapshot) => void;
  readonly reportEveryMs?: number;
  /** The window is written at most this often (default 1 min), and on close. */
  readonly persistEveryMs?: number;
  /**
   * Errors the tracker survives, for the caller to log and audit: `load` (the file could not
   * be used: an AgentdError; history starts again and the file is kept as `<path>.unreadable`),
   * `persist` (retried at the next persist time), `report` (onReport threw), `sample` (a
   * sample on the timer failed; sampling goes on).
   */
  readonly onError?: (err: unknown, during: "load" | "persist" | "report" | "sample") => void;
}

export interface EligibilityTracker {
  /** The snapshot of the last sample. */
  current(): EligibilitySnapshot;
  /** Samples now (the timer does this every sampleMs). */
  sample(): EligibilitySnapshot;
  /** Replaces the maintenance windows from now on. */
  setMaintenance(windows: readonly TimeRange[]): void;
  maintenance(): readonly TimeRange[];
  /** Stops sampling and writes the window; throws if it cannot be written. Once. */
  close(): void;
}

const LIGHTNING_STATES: readonly string[] = ["open", "none", "unknown"];
const BITCOIND_STATES: readonly string[] = ["synced", "syncing", "unknown"];

/**
 * Opens the window from `path`, samples at once, then every `sampleMs` at the middle of each
 * slot (so that timer drift of up to half a slot neither skips nor doubles a slot).
 *
 * A file that cannot be used (corrupt, from a newer agentd, untrusted) is reported through
 * `onError(err, "load")`, set aside as `<path>.unreadable`, and the history starts again,
 * marked lost. That is the fail-closed choice here: throwing would stop the whole agent over a
 * file that only says how long it has been up, while starting empty can only withhold
 * eligibility (`uptime.history_lost`, `uptime.window_incomplete`) until a full window has been
 * earned again — a damaged or tampered file can never make a node eligible, and never keeps it
 * from mining.
 *
 * The first sample, and its report through `onReport`, happen before this returns. A crash
 * loses at most `persistEveryMs` of samples: those slots then count as down.
 */
export function startEligibilityTracker(o: EligibilityTrackerOptions): EligibilityTracker {
  const geometryOptions = {
    ...(o.sampleMs === undefined ? {} : { slotMs: o.sampleMs }),
    ...(o.windowMs === undefined ? {} : { windowMs: o.windowMs }),
  };
  const graceMs = o.graceMs ?? UPDATE_GRACE_MS;
  const reportEveryMs = o.reportEveryMs ?? 3_600_000;
  const persistEveryMs = o.persistEveryMs ?? 60_000;
  const onError = (err: unknown, during: "load" | "persist" | "report" | "sample") => {
    try {
      o.onError?.(err, during);
    } catch {
      // a failing error hook must not stop the sampling
    }
  };

  let window: UptimeWindow;
  let loaded: EligibilityFile | undefined;
  let unreadable = false;
  try {
    loaded = readEligibilityFile(o.path, geometryOptions);
  } catch (err) {
    if (!(err instanceof AgentdError)) throw err;
    unreadable = true;
    onError(err, "load");
    try {
      renameSync(o.path, `${o.path}.unreadable`);
    } catch {
      // kept in place; the next write replaces it
    }
  }
  if (loaded !== undefined) {
    window = loaded.window;
    const through = window.stats().through_ms;
    if (loaded.agentVersion !== o.agentVersion && graceMs > 0 && through !== null) {
      // An update: the old version's last sample was the restart's start.
      window.setGrace({ start_ms: through, end_ms: through + graceMs });
    }
  } else {
    // No file: a new node. An unusable one: history lost.
    window = createUptimeWindow({ ...geometryOptions, historyLost: unreadable });
  }
  if (o.maintenance !== undefined) window.setMaintenance(o.maintenance, o.clock.now());

  let snapshot: EligibilitySnapshot | undefined;
  let lastReportAt = 0;
  let lastPersistAt: number | undefined;
  let handle: unknown;
  let closed = false;

  const persist = () => writeEligibilityFile(o.path, o.agentVersion, window);

  const sample = (): EligibilitySnapshot => {
    if (closed && snapshot !== undefined) return snapshot;
    const now = o.clock.now();
    let isUp = false;
    try {
      isUp = o.up() === true;
    } catch {
      // down
    }
    window.record(now, isUp);
    const lightning = pick(o.lightning, LIGHTNING_STATES) as LightningState;
    const bitcoind = pick(o.bitcoind, BITCOIND_STATES) as BitcoindState;
    const stats = window.stats();
    const verdict = evaluateEligibility(stats, lightning, bitcoind);
    const prev = snapshot;
    snapshot = {
      eligible: verdict.eligible,
      reasons: verdict.reasons,
      uptime_ratio: stats.uptime_ratio,
      window_s: stats.window_s,
      observed_s: stats.observed_s,
      lightning,
      bitcoind,
      since_ms: prev === undefined || prev.eligible !== verdict.eligible ? now : prev.since_ms,
      at_ms: now,
    };
    const changed =
      prev === undefined ||
      prev.eligible !== snapshot.eligible ||
      prev.reasons.join(",") !== snapshot.reasons.join(",");
    if (changed || now - lastReportAt >= reportEveryMs || now < lastReportAt) {
      lastReportAt = now;
      try {
        o.onReport?.(snapshot);
      } catch (err) {
        onError(err, "report");
      }
    }
    if (
      lastPersistAt === undefined ||
      now - lastPersistAt >= persistEveryMs ||
      now < lastPersistAt
    ) {
      lastPersistAt = now;
      try {
        persist();
      } catch (err) {
        onError(err, "persist");
      }
    }
    return snapshot;
  };

  const schedule = () => {
    if (closed) return;
    const slotMs = window.slotMs;
    const now = o.clock.now();
    const delay = (Math.floor(now / slotMs) + 1) * slotMs + Math.floor(slotMs / 2) - now;
    handle = o.timers.setTimeout(() => {
      handle = undefined;
      try {
        sample();
      } catch (err) {
        onError(err, "sample");
      }
      schedule();
    }, delay);
  };

  const first = sample();
  schedule();

  return {
    current: () => snapshot ?? first,
    sample,
    setMaintenance(windows) {
      window.setMaintenance(windows, o.clock.now());
    },
    maintenance: () => window.maintenance(),
    close() {
      if (closed) return;
      closed = true;
      if (handle !== undefined) o.timers.clearTimeout(handle);
      handle = undefined;
      persist();
    },
  };
}

function pick(read: () => string, allowed: readonly string[]): string {
  try {
    const v = read();
    return allowed.includes(v) ? v : "unknown";
  } catch {
    return "unknown";
  }
}
