/**
 * The fleet's facts for the policy guard (issue 18; DOCUMENTS.md section 6 shapes): `watts`
 * and `temp_c`, pure, from what the fleet last read. Both fail closed: a fact the guard would
 * trust is given only when every miner it speaks for was read recently and measured; otherwise
 * it is absent and `reasons` says why, naming the miners — the guard then denies the rule that
 * needs it (policy-guard/decision.ts), which is the safe outcome for `max_watts`/`max_temp_c`.
 */

import type { Reading } from "../plugins/driver.ts";
import { DEFAULT_FACTS_MAX_AGE_S } from "../policy-guard/decision.ts";
import type { FleetFacts, FleetMiner, FleetView, MeterState } from "./types.ts";

/** The guard's own freshness bound: a reading older than this could never pass it. */
export const FACT_MAX_AGE_MS = DEFAULT_FACTS_MAX_AGE_S * 1000;

/** Asleep as the firmware proves it: in sleep mode and not hashing (an ack alone is not). */
export function confirmedAsleep(r: Reading): boolean {
  return r.mode === "sleep" && r.hashrateGhs === 0;
}

/** Whether a time is usable by the guard: not older than its bound, not from the future. */
function usable(at: number, now: number): boolean {
  return now - at <= FACT_MAX_AGE_MS && at - now <= FACT_MAX_AGE_MS;
}

/**
 * Why a miner's last read cannot be used, as a short code, or null when it can: never read,
 * the last read failed (an error newer than the read), older than two read intervals (a read
 * was missed), or older than the guard accepts.
 */
export function unreadCode(
  view: FleetView,
  m: FleetMiner,
  now: number,
  readIntervalMs: number,
): string | null {
  const s = view.states[m.id];
  if (s === undefined || s.reading === null || s.readAt === null) {
    return s?.lastError?.code ?? "never_read";
  }
  if (s.lastError !== null && s.lastError.at >= s.readAt) return s.lastError.code;
  if (now - s.readAt > 2 * readIntervalMs || !usable(s.reading.at, now)) return "stale";
  return null;
}

/** A meter's reading if it can be used now: read, not failed since, fresh. */
function meterWatts(m: MeterState, now: number): { watts: number; at: number } | null {
  const r = m.reading;
  if (r === null || !usable(r.at, now) || !Number.isFinite(r.watts)) return null;
  if (m.lastError !== null && m.lastError.at >= r.at) return null;
  return { watts: r.watts, at: r.at };
}

/**
 * Which meters are summed: each meter covers its feeds together, so a meter is used whole or
 * not at all. Meters with more feeds first (a main meter over a sub-meter), ties by id; a
 * meter that shares a miner with one already used is left out, since its watts would count
 * that miner twice. A miner it alone fed is then covered by its firmware or not at all.
 */
function chooseMeters(
  meters: readonly MeterState[],
  now: number,
): {
  used: { id: string; watts: number; at: number; feeds: readonly string[] }[];
  failed: string[];
} {
  const used: { id: string; watts: number; at: number; feeds: readonly string[] }[] = [];
  const failed: string[] = [];
  const covered = new Set<string>();
  const order = [...meters].sort(
    (a, b) => b.spec.feeds.length - a.spec.feeds.length || (a.spec.id < b.spec.id ? -1 : 1),
  );
  for (const m of order) {
    const w = meterWatts(m, now);
    if (w === null) {
      failed.push(`fleet.meter_unread: ${m.spec.id} (${m.lastError?.code ?? "stale"})`);
      continue;
    }
    if (m.spec.feeds.some((f) => covered.has(f))) continue;
    for (const f of m.spec.feeds) covered.add(f);
    used.push({ id: m.spec.id, ...w, feeds: m.spec.feeds });
  }
  return { used, failed };
}

export interface MeasuredTotal {
  readonly value: number;
  /** The oldest reading the value rests on (ms). */
  readonly at: number;
}

export function fleetFacts(view: FleetView, now: number, readIntervalMs: number): FleetFacts {
  if (view.miners.length === 0) return { reasons: ["fleet.no_miners"] };
  const unread: string[] = [];
  for (const m of view.miners) {
    const code = unreadCode(view, m, now, readIntervalMs);
    if (code !== null) unread.push(`fleet.miner_unread: ${m.id} (${code})`);
  }
  // One miner we cannot see could be drawing anything at any temperature: neither fact.
  if (unread.length > 0) return { reasons: unread };

  const readings = view.miners.map((m) => ({ m, r: view.states[m.id]?.reading as Reading }));
  let oldest = Math.min(...readings.map((x) => x.r.at));
  const reasons: string[] = [];
  let watts: FleetFacts["watts"];

  const { used, failed } = chooseMeters(view.meters, now);
  const byMeter = new Set(used.flatMap((u) => u.feeds));
  let sum = 0;
  for (const u of used) {
    sum += u.watts;
    oldest = Math.min(oldest, u.at);
  }
  const uncovered: string[] = [];
  for (const { m, r } of readings) {
    if (byMeter.has(m.id)) continue; // the meter's value already holds it: never twice
    if (r.power !== null && r.power.provenance === "measured") sum += r.power.watts;
    // An estimate is reported elsewhere, never summed: without a measurement an awake miner
    // leaves the total unknown. A miner proven asleep draws close to nothing.
    else if (!confirmedAsleep(r)) uncovered.push(m.id);
  }
  if (uncovered.length > 0) {
    reasons.push(`fleet.watts_uncovered: ${uncovered.join(", ")}`, ...failed);
  } else {
    watts = { value: sum, source: "measured", at: new Date(oldest).toISOString() };
  }

  let max = Number.NEGATIVE_INFINITY;
  const noTemp: string[] = [];
  let tempOldest = Number.POSITIVE_INFINITY;
  for (const { m, r } of readings) {
    const chips = r.boards.flatMap((b) => b.chipTempC).filter(Number.isFinite);
    // An awake miner that reports no chip temperature hides the hottest chip.
    if (chips.length === 0 && !confirmedAsleep(r)) noTemp.push(m.id);
    for (const c of chips) max = Math.max(max, c);
    tempOldest = Math.min(tempOldest, r.at);
  }
  let temp: FleetFacts["temp_c"];
  if (noTemp.length > 0) reasons.push(`fleet.temp_unreported: ${noTemp.join(", ")}`);
  // Every miner proven asleep and none reporting a chip: no chip is working. Giving no fact
  // here would make the guard deny `max_temp_c` for good and the fleet could never wake.
  else
    temp = {
      max: max === Number.NEGATIVE_INFINITY ? 0 : max,
      at: new Date(tempOldest).toISOString(),
    };

  return {
    ...(watts === undefined ? {} : { watts }),
    ...(temp === undefined ? {} : { temp_c: temp }),
    reasons,
  };
}

/** The measured total as a number (for the planner), or null when the fact is absent. */
export function measuredTotal(facts: FleetFacts): MeasuredTotal | null {
  if (facts.watts === undefined) return null;
  return { value: facts.watts.value, at: Date.parse(facts.watts.at) };
}
