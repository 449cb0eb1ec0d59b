/**
 * The consent's `schedule` rule (DOCUMENTS.md section 3): is an instant inside the owner's
 * mining windows, and when does that next change?
 *
 * Semantics, precisely (this is the contract the tests pin down):
 *
 * - A window `{days, start, end, tz}` yields, for every local calendar date D in `tz` whose
 *   weekday is in `days`, one half-open interval of instants `[S, E)`:
 *   - `S` = the wall time `D start` resolved in `tz`;
 *   - `end > start`: `E` = `D end`;
 *   - `end < start`: `E` = `D+1 end` — the window crosses midnight and belongs to its start
 *     day (sun 22:00–06:00 is Sunday 22:00 to Monday 06:00, and nothing on Monday night);
 *   - `end == start`: `E` = `D+1 start` — a whole day beginning at `start` (23 h or 25 h
 *     long on DST change days; `00:00`–`00:00` is the calendar day).
 * - Resolving a wall time w ("D HH:MM" in `tz`) gives the first instant at which the zone's
 *   wall clock reads w or later: `min { t : wall(t) >= w }`. So a wall time inside a DST gap
 *   becomes the transition instant (Berlin 2026-03-29 02:30 → 03:00 CEST = 01:00Z), and an
 *   ambiguous wall time in an overlap is its first occurrence (Berlin 2026-10-25 02:30 →
 *   02:30 CEST = 00:30Z). This holds for `start` and `end` alike, so a window lying wholly
 *   inside a gap is empty that day, and a window whose end is the wall time just after an
 *   overlap (sun 01:30–02:00 in New York on 2026-11-01) includes the repeated hour.
 * - An instant is inside the schedule when it is inside any window's interval (the union:
 *   overlapping and adjacent intervals merge). No windows: always inside.
 * - `nextChangeMs` is the first instant strictly after `now` at which membership flips, or
 *   `null` when it does not flip: no windows; the windows of one zone cover the whole week in
 *   wall time (then it never flips, whatever DST does); or, for windows in several zones whose
 *   union covers everything for a long time, no flip within `HORIZON_DAYS` (400) days — under
 *   the zone rules of the runtime, mixed zones can delay the first flip by most of a year
 *   (e.g. between the US and the EU DST starts), and 400 days covers every yearly pattern.
 *
 * Time zones are those of the runtime's ICU (Intl.DateTimeFormat): IANA names, matched
 * case-insensitively, aliases accepted (`US/Eastern`, `Etc/UTC`, `Etc/GMT+5`); UTC-offset
 * identifiers such as `+01:00` and the empty string are refused (they are not zones). Two
 * machines with different tzdata versions may disagree where the rules changed.
 *
 * Performance: offsets come from a bounded memo of UTC offsets per (zone, 8-day chunk of UTC
 * time), built from Intl on a miss (one sample a day, bisected to the second where the offset
 * changes). Consecutive offset changes in tzdata are at least ~4 days apart (the closest since
 * 1850 are 95 h), so daily sampling cannot miss a change. The memo holds at most
 * `MAX_CHUNKS` chunks and `MAX_ZONES` formatters (first in, first out), so memory is bounded.
 * It is a pure memo: results never depend on what is cached.
 */
import { fail } from "../lib/errors.ts";

export type Weekday = "mon" | "tue" | "wed" | "thu" | "fri" | "sat" | "sun";

export const WEEKDAYS: readonly Weekday[] = Object.freeze([
  "mon",
  "tue",
  "wed",
  "thu",
  "fri",
  "sat",
  "sun",
]);

export interface ScheduleWindow {
  readonly days: readonly Weekday[];
  readonly start: string;
  readonly end: string;
  readonly tz: string;
}

export interface ScheduleState {
  /** Whether `now` is inside any window (always true without windows). */
  readonly inside: boolean;
  /** First instant (epoch ms) strictly after `now` at which `inside` flips; null: never. */
  readonly nextChangeMs: number | null;
}

/** Days searched for the next flip of a schedule that stays inside (mixed zones only). */
export const HORIZON_DAYS = 400;

/**
 * Instants (epoch ms) this module accepts: a little inside the range of `Date`, so that the
 * look-ahead never leaves it (about ±272,000 years).
 */
export const MAX_ABS_INSTANT_MS = 8.6e15;

const SECOND = 1000;
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const WEEK_MINUTES = 7 * 1440;
const HORIZON_MS = HORIZON_DAYS * DAY;
/** A covered stretch longer than this makes us ask whether one zone covers the whole week. */
const FULL_WEEK_CHECK_MS = 7 * DAY;
/** Bound on any UTC offset, LMT included (the largest in tzdata are under 16 h). */
const MAX_OFFSET = 36 * HOUR;
/** Offsets are memoised per chunk of UTC time; a chunk must span at least 2 * MAX_OFFSET. */
const CHUNK_MS = 8 * DAY;
const SAMPLE_MS = DAY;
const MAX_CHUNKS = 4096;
const MAX_ZONES = 512;

// ---------------------------------------------------------------------------------------------
// Validation

const HHMM = /^(?:[01][0-9]|2[0-3]):[0-5][0-9]$/;
/** The shape of an IANA name: letters first, then letters, digits, `_`, `-`, `+` and `/`. */
const TZ_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/;
const WINDOW_KEYS = new Set(["days", "start", "end", "tz"]);
const DAY_INDEX: ReadonlyMap<string, number> = new Map(WEEKDAYS.map((d, i) => [d, i]));

function show(value: unknown): string {
  let s: string;
  try {
    s = typeof value === "string" ? JSON.stringify(value) : (JSON.stringify(value) ?? typeof value);
  } catch {
    s = typeof value;
  }
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

/**
 * Checks one schedule window as it appears in a consent: exactly the members `days`
 * (non-empty, distinct, from `mon`…`sun`), `start` and `end` (`"HH:MM"`, 00:00–23:59, two
 * digits each) and `tz` (see the module comment). Returns null when valid, else one line
 * naming the offending member under `path`.
 */
export function validateWindow(w: unknown, path: string): string | null {
  if (typeof w !== "object" || w === null || Array.isArray(w)) {
    return `${path}: must be an object {days, start, end, tz}`;
  }
  for (const key of Object.keys(w)) {
    if (!WINDOW_KEYS.has(key)) return `${path}: unknown member ${show(key)}`;
  }
  const rec = w as Record<string, unknown>;
  for (const key of WINDOW_KEYS) {
    if (!Object.hasOwn(rec, key)) return `${path}: missing member "${key}"`;
  }
  const days = rec.days;
  if (!Array.isArray(days) || days.length === 0) {
    return `${path}.days: must be a non-empty array of mon…sun`;
  }
  const seen = new Set<string>();
  for (let i = 0; i < days.length; i++) {
    const d: unknown = days[i];
    if (typeof d !== "string" || !DAY_INDEX.has(d)) {
      return `${path}.days[${i}]: unknown day ${show(d)} (expected mon, tue, wed, thu, fri, sat or sun)`;
    }
    if (seen.has(d)) return `${path}.days[${i}]: duplicate day "${d}"`;
    seen.add(d);
  }
  for (const key of ["start", "end"] as const) {
    const v = rec[key];
    if (typeof v !== "string" || !HHMM.test(v)) {
      return `${path}.${key}: must be "HH:MM" from 00:00 to 23:59, got ${show(v)}`;
    }
  }
  const tz = rec.tz;
  if (typeof tz !== "string" || zoneOf(tz) === null) {
    return `${path}.tz: not an IANA time zone name known to this runtime: ${show(tz)}`;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Zones and the offset memo

interface Chunk {
  /** UTC offset (ms) at the start of the chunk. */
  readonly o0: number;
  /** Instants inside the chunk where the offset changes, ascending, and the offset after. */
  readonly ts: readonly number[];
  readonly os: readonly number[];
}

interface Zone {
  readonly dtf: Intl.DateTimeFormat;
  /** The runtime's identifier for the zone (aliases may resolve to their target). */
  readonly id: string;
  readonly chunks: Map<number, Chunk>;
  lastIndex: number;
  lastChunk: Chunk | null;
}

const zones = new Map<string, Zone>();
const ringZone: (Zone | undefined)[] = new Array<Zone | undefined>(MAX_CHUNKS).fill(undefined);
const ringIndex = new Float64Array(MAX_CHUNKS);
let ringPos = 0;

function zoneOf(tz: string): Zone | null {
  const hit = zones.get(tz);
  if (hit !== undefined) return hit;
  if (tz.length > 64 || !TZ_NAME.test(tz)) return null;
  let dtf: Intl.DateTimeFormat;
  try {
    dtf = new Intl.DateTimeFormat("en-US-u-ca-gregory-nu-latn", {
      timeZone: tz,
      era: "short",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
      hourCycle: "h23",
    });
  } catch {
    return null;
  }
  if (zones.size >= MAX_ZONES) {
    const oldest = zones.keys().next();
    if (oldest.done !== true) zones.delete(oldest.value);
  }
  const zone: Zone = {
    dtf,
    id: dtf.resolvedOptions().timeZone,
    chunks: new Map(),
    lastIndex: Number.NaN,
    lastChunk: null,
  };
  zones.set(tz, zone);
  return zone;
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** The zone's UTC offset at `t` (a whole second), straight from Intl. Slow: memo misses only. */
function intlOffset(zone: Zone, t: number): number {
  let y = 0;
  let mo = 1;
  let d = 1;
  let h = 0;
  let mi = 0;
  let s = 0;
  let bc = false;
  for (const part of zone.dtf.formatToParts(t)) {
    switch (part.type) {
      case "year":
        y = Number(part.value);
        break;
      case "month":
        mo = Number(part.value);
        break;
      case "day":
        d = Number(part.value);
        break;
      case "hour":
        h = Number(part.value);
        break;
      case "minute":
        mi = Number(part.value);
        break;
      case "second":
        s = Number(part.value);
        break;
      case "era":
        bc = part.value === "BC" || part.value === "B";
        break;
      default:
        break;
    }
  }
  if (bc) y = 1 - y;
  return daysFromCivil(y, mo, d) * DAY + h * HOUR + mi * MINUTE + s * SECOND - t;
}

function buildChunk(zone: Zone, index: number): Chunk {
  const start = index * CHUNK_MS;
  const end = start + CHUNK_MS;
  const ts: number[] = [];
  const os: number[] = [];
  const o0 = intlOffset(zone, start);
  let a = start;
  let oa = o0;
  for (let b = start + SAMPLE_MS; b <= end; b += SAMPLE_MS) {
    const ob = intlOffset(zone, b);
    // Every change in (a, b]: bisect (whole seconds) to the first instant whose offset differs.
    while (oa !== ob) {
      let lo = a;
      let hi = b;
      let ohi = ob;
      while (hi - lo > SECOND) {
        const mid = lo + Math.floor((hi - lo) / (2 * SECOND)) * SECOND;
        const om = intlOffset(zone, mid);
        if (om === oa) {
          lo = mid;
        } else {
          hi = mid;
          ohi = om;
        }
      }
      if (hi < end) {
        ts.push(hi);
        os.push(ohi);
      }
      a = hi;
      oa = ohi;
    }
    a = b;
    oa = ob;
  }
  return { o0, ts, os };
}

function chunkAt(zone: Zone, index: number): Chunk {
  if (index === zone.lastIndex && zone.lastChunk !== null) return zone.lastChunk;
  let chunk = zone.chunks.get(index);
  if (chunk === undefined) {
    chunk = buildChunk(zone, index);
    const evictZone = ringZone[ringPos];
    if (evictZone !== undefined) evictZone.chunks.delete(ringIndex[ringPos] ?? Number.NaN);
    ringZone[ringPos] = zone;
    ringIndex[ringPos] = index;
    ringPos = (ringPos + 1) % MAX_CHUNKS;
    zone.chunks.set(index, chunk);
  }
  zone.lastIndex = index;
  zone.lastChunk = chunk;
  return chunk;
}

function offsetAt(zone: Zone, t: number): number {
  const chunk = chunkAt(zone, Math.floor(t / CHUNK_MS));
  let o = chunk.o0;
  const ts = chunk.ts;
  for (let i = 0; i < ts.length; i++) {
    if (t < (ts[i] as number)) break;
    o = chunk.os[i] as number;
  }
  return o;
}

/** Within one chunk: the first t >= chunk start with wall(t) >= w, or NaN if none in it. */
function firstInChunk(chunk: Chunk, start: number, w: number): number {
  const ts = chunk.ts;
  let segStart = start;
  let o = chunk.o0;
  for (let i = 0; i <= ts.length; i++) {
    const segEnd = i < ts.length ? (ts[i] as number) : start + CHUNK_MS;
    const c = Math.max(segStart, w - o);
    if (c < segEnd) return c;
    segStart = segEnd;
    o = chunk.os[i] as number;
  }
  return Number.NaN;
}

/**
 * The first instant whose wall clock in `zone` reads `w` or later, `w` being a wall time
 * written as if it were UTC epoch ms. It lies within MAX_OFFSET of w, so within two chunks.
 */
function resolveWall(zone: Zone, w: number): number {
  const iLo = Math.floor((w - MAX_OFFSET) / CHUNK_MS);
  const iHi = Math.floor((w + MAX_OFFSET) / CHUNK_MS);
  const a = chunkAt(zone, iLo);
  if (iLo === iHi) {
    return a.ts.length === 0 ? w - a.o0 : firstInChunk(a, iLo * CHUNK_MS, w);
  }
  const b = chunkAt(zone, iHi);
  if (a.ts.length === 0 && b.ts.length === 0 && a.o0 === b.o0) return w - a.o0;
  const c = firstInChunk(a, iLo * CHUNK_MS, w);
  return Number.isNaN(c) ? firstInChunk(b, iHi * CHUNK_MS, w) : c;
}

function isInt(v: number, lo: number, hi: number): boolean {
  return Number.isInteger(v) && v >= lo && v <= hi;
}

/**
 * The instant (epoch ms) of the wall-clock time `y-m-d hh:mm` in `tz`, by the schedule's
 * rules: in a DST gap, the first instant after the gap; in an overlap, the first occurrence.
 * Throws AGENTD_E_INTERNAL for an invalid zone or date (callers validate first).
 */
export function wallToInstant(
  tz: string,
  y: number,
  m: number,
  d: number,
  hh: number,
  mm: number,
): number {
  const zone = zoneOf(tz);
  if (zone === null) throw fail("AGENTD_E_INTERNAL", "wallToInstant: invalid time zone", { tz });
  const valid =
    isInt(y, -270_000, 270_000) &&
    isInt(m, 1, 12) &&
    isInt(d, 1, 31) &&
    isInt(hh, 0, 23) &&
    isInt(mm, 0, 59) &&
    // the day exists in that month
    daysFromCivil(y, m, d) < daysFromCivil(m === 12 ? y + 1 : y, m === 12 ? 1 : m + 1, 1);
  if (!valid) {
    throw fail("AGENTD_E_INTERNAL", "wallToInstant: invalid wall time", { y, m, d, hh, mm });
  }
  return resolveWall(zone, daysFromCivil(y, m, d) * DAY + hh * HOUR + mm * MINUTE);
}

// ---------------------------------------------------------------------------------------------
// The schedule

// Compiled windows of the current call, in reused parallel arrays (no allocation per call).
const cZone: Zone[] = [];
const cMask: number[] = [];
const cStart: number[] = [];
const cEnd: number[] = [];
const cEndDay: number[] = [];
/** The frozen windows array the arrays above were compiled from, if any. */
let compiledFor: readonly ScheduleWindow[] | null = null;

/** Minutes since midnight of a valid "HH:MM", or -1. */
function minutesOf(s: string): number {
  if (s.length !== 5 || s.charCodeAt(2) !== 58) return -1;
  const h1 = s.charCodeAt(0) - 48;
  const h2 = s.charCodeAt(1) - 48;
  const m1 = s.charCodeAt(3) - 48;
  const m2 = s.charCodeAt(4) - 48;
  if (h1 < 0 || h1 > 2 || h2 < 0 || h2 > 9 || m1 < 0 || m1 > 5 || m2 < 0 || m2 > 9) return -1;
  const h = h1 * 10 + h2;
  return h > 23 ? -1 : h * 60 + m1 * 10 + m2;
}

function compile(windows: readonly ScheduleWindow[]): void {
  for (let i = 0; i < windows.length; i++) {
    const w = windows[i] as ScheduleWindow;
    const zone = zoneOf(w.tz);
    const s = minutesOf(w.start);
    const e = minutesOf(w.end);
    let mask = 0;
    for (let k = 0; k < w.days.length; k++) {
      const bit = DAY_INDEX.get(w.days[k] as string);
      if (bit === undefined) mask = -1;
      else if (mask >= 0) mask |= 1 << bit;
    }
    if (zone === null || s < 0 || e < 0 || mask <= 0) {
      throw fail("AGENTD_E_INTERNAL", "scheduleState: window was not validated", {
        index: i,
        problem: validateWindow(w, `schedule[${i}]`),
      });
    }
    cZone[i] = zone;
    cMask[i] = mask;
    cStart[i] = s * MINUTE;
    cEnd[i] = e * MINUTE;
    cEndDay[i] = e > s ? 0 : 1;
  }
}

/** Monday = 0 … Sunday = 6 of a day count since 1970-01-01 (a Thursday). */
function weekdayOf(day: number): number {
  return (((day + 3) % 7) + 7) % 7;
}

/** The latest end among window i's intervals that contain t, or -Infinity. */
function endOfIntervalsContaining(i: number, t: number): number {
  const zone = cZone[i] as Zone;
  const mask = cMask[i] as number;
  const s = cStart[i] as number;
  // Intervals of local dates before L-1 have ended by t, those after L+1 start after it
  // (a date's interval ends by the wall time two dates later; backward jumps are <= 24 h).
  const local = Math.floor((t + offsetAt(zone, t)) / DAY);
  let best = Number.NEGATIVE_INFINITY;
  for (let day = local - 1; day <= local + 1; day++) {
    if (((mask >> weekdayOf(day)) & 1) === 0) continue;
    const start = resolveWall(zone, day * DAY + s);
    if (start > t) break; // starts only grow with the date
    const end = resolveWall(zone, (day + (cEndDay[i] as number)) * DAY + (cEnd[i] as number));
    if (end > t && end > best) best = end;
  }
  return best;
}

/** The first start after t of a non-empty interval of window i, or +Infinity. */
function nextStartAfter(i: number, t: number): number {
  const zone = cZone[i] as Zone;
  const mask = cMask[i] as number;
  const s = cStart[i] as number;
  const local = Math.floor((t + offsetAt(zone, t)) / DAY);
  // Starts of dates before L are at or before t. Days are non-empty, so a listed date comes
  // every week; an interval is empty only when it lies inside a DST gap.
  for (let day = local; day <= local + 21; day++) {
    if (((mask >> weekdayOf(day)) & 1) === 0) continue;
    const start = resolveWall(zone, day * DAY + s);
    if (start <= t) continue;
    const end = resolveWall(zone, (day + (cEndDay[i] as number)) * DAY + (cEnd[i] as number));
    if (end > start) return start;
  }
  return Number.POSITIVE_INFINITY;
}

/** Whether the windows of some one zone cover the whole week in wall time. */
function oneZoneCoversWeek(n: number): boolean {
  const byZone = new Map<string, [number, number][]>();
  for (let i = 0; i < n; i++) {
    const id = (cZone[i] as Zone).id;
    let list = byZone.get(id);
    if (list === undefined) {
      list = [];
      byZone.set(id, list);
    }
    const s = (cStart[i] as number) / MINUTE;
    const e = (cEnd[i] as number) / MINUTE;
    const len = e > s ? e - s : e - s + 1440;
    for (let wd = 0; wd < 7; wd++) {
      if ((((cMask[i] as number) >> wd) & 1) === 0) continue;
      const a = wd * 1440 + s;
      const b = a + len;
      if (b <= WEEK_MINUTES) {
        list.push([a, b]);
      } else {
        list.push([a, WEEK_MINUTES], [0, b - WEEK_MINUTES]);
      }
    }
  }
  for (const list of byZone.values()) {
    list.sort((x, y) => x[0] - y[0]);
    let reach = 0;
    for (const [a, b] of list) {
      if (a > reach) break;
      if (b > reach) reach = b;
    }
    if (reach >= WEEK_MINUTES) return true;
  }
  return false;
}

/**
 * Whether `nowMs` is inside the schedule and the next instant at which that flips (see the
 * module comment for the exact rules). Pure and deterministic; never throws for windows that
 * passed `validateWindow` and a finite `nowMs` within ±MAX_ABS_INSTANT_MS.
 */
export function scheduleState(windows: readonly ScheduleWindow[], nowMs: number): ScheduleState {
  if (!(Math.abs(nowMs) <= MAX_ABS_INSTANT_MS)) {
    throw fail("AGENTD_E_INTERNAL", "scheduleState: instant out of range", { nowMs });
  }
  const n = windows.length;
  if (n === 0) return { inside: true, nextChangeMs: null };
  // A verified consent's rules are deeply frozen, so the same frozen array always compiles the
  // same way: skip recompiling it (a quarter of a decision's time otherwise).
  if (windows !== compiledFor) {
    compiledFor = null;
    compile(windows);
    compiledFor = Object.isFrozen(windows) && windows.every(Object.isFrozen) ? windows : null;
  }

  let reach = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const e = endOfIntervalsContaining(i, nowMs);
    if (e > reach) reach = e;
  }

  if (reach === Number.NEGATIVE_INFINITY) {
    let next = Number.POSITIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const s = nextStartAfter(i, nowMs);
      if (s < next) next = s;
    }
    return { inside: false, nextChangeMs: next === Number.POSITIVE_INFINITY ? null : next };
  }

  // Inside: follow the union forward until an instant that no interval contains.
  let askedWeek = false;
  for (;;) {
    let further = reach;
    for (let i = 0; i < n; i++) {
      const e = endOfIntervalsContaining(i, reach);
      if (e > further) further = e;
    }
    if (further === reach) return { inside: true, nextChangeMs: reach };
    reach = further;
    if (reach - nowMs > FULL_WEEK_CHECK_MS && !askedWeek) {
      askedWeek = true;
      if (oneZoneCoversWeek(n)) return { inside: true, nextChangeMs: null };
    }
    if (reach - nowMs > HORIZON_MS) return { inside: true, nextChangeMs: null };
  }
}
