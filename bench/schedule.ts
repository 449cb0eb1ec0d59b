/**
 * scheduleState cost per call: a realistic 3-window, 2-zone schedule at random instants
 * across 2026 (so across both DST changes of both zones). Prints JSON, then a table.
 *
 *   node bench/schedule.ts [--calls N | N]
 *
 * Each call is timed on its own (process.hrtime.bigint), so percentiles include the timer's
 * overhead, which is measured separately (`timer`) in the same run. The baseline is one
 * `Intl.DateTimeFormat#formatToParts` call — what a naive implementation pays at least once
 * per window per call — so `ratio` says how many such calls one scheduleState costs.
 */
import { cpus } from "node:os";
import { type ScheduleWindow, scheduleState } from "../policy-guard/schedule.ts";
import { benchArgs, integer } from "./args.ts";

const calls = benchArgs(
  "schedule",
  { calls: integer(1_000_000, 1, 100_000_000) },
  { positional: "calls", jsonOnly: false },
).values.calls;

const windows: readonly ScheduleWindow[] = [
  { days: ["mon", "tue", "wed", "thu", "fri"], start: "22:00", end: "06:00", tz: "Europe/Berlin" },
  { days: ["sat", "sun"], start: "00:00", end: "00:00", tz: "Europe/Berlin" },
  { days: ["mon", "wed", "fri"], start: "12:00", end: "14:30", tz: "America/New_York" },
];

const yearStart = Date.UTC(2026, 0, 1);
const yearMs = 365 * 86_400_000;

// Deterministic pseudo-random instants (xorshift32), generated before timing.
let seed = 0x9e3779b9;
function rand(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 0x1_0000_0000;
}
const nows = new Float64Array(calls);
for (let i = 0; i < calls; i++) nows[i] = yearStart + Math.floor(rand() * yearMs);

function percentiles(samples: Float64Array): {
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
} {
  const sorted = Float64Array.from(samples).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    p50: at(0.5),
    p99: at(0.99),
    p999: at(0.999),
    max: sorted[sorted.length - 1] ?? 0,
    mean: sum / sorted.length,
  };
}

const round = (v: number) => Math.round(v * 1000) / 1000;

// Warm-up (JIT and memo), not measured.
let sink = 0;
for (let i = 0; i < Math.min(calls, 100_000); i++) {
  const r = scheduleState(windows, nows[i] ?? 0);
  sink += r.inside ? 1 : 0;
}

// Timer overhead.
const timer = new Float64Array(Math.min(calls, 200_000));
for (let i = 0; i < timer.length; i++) {
  const t0 = process.hrtime.bigint();
  const t1 = process.hrtime.bigint();
  timer[i] = Number(t1 - t0) / 1000;
}

// Measured calls (µs each).
const samples = new Float64Array(calls);
const wall0 = process.hrtime.bigint();
for (let i = 0; i < calls; i++) {
  const now = nows[i] ?? 0;
  const t0 = process.hrtime.bigint();
  const r = scheduleState(windows, now);
  const t1 = process.hrtime.bigint();
  samples[i] = Number(t1 - t0) / 1000;
  sink += r.nextChangeMs === null ? 0 : 1;
}
const wallUs = Number(process.hrtime.bigint() - wall0) / 1000;

// Throughput without the per-call timer.
const thr0 = process.hrtime.bigint();
for (let i = 0; i < calls; i++) sink += scheduleState(windows, nows[i] ?? 0).inside ? 1 : 0;
const throughputUs = Number(process.hrtime.bigint() - thr0) / 1000 / calls;

// Baseline: one Intl formatToParts call per iteration, same instants.
const dtf = new Intl.DateTimeFormat("en-US", {
  timeZone: "Europe/Berlin",
  year: "numeric",
  month: "numeric",
  day: "numeric",
  hour: "numeric",
  minute: "numeric",
  hourCycle: "h23",
});
const baseCalls = Math.min(calls, 200_000);
const base0 = process.hrtime.bigint();
for (let i = 0; i < baseCalls; i++) sink += dtf.formatToParts(nows[i] ?? 0).length;
const baselineUs = Number(process.hrtime.bigint() - base0) / 1000 / baseCalls;

const stats = percentiles(samples);
const result = {
  bench: "policy-guard/schedule scheduleState",
  machine: { cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length, node: process.version },
  schedule: "3 windows, 2 zones (Europe/Berlin, America/New_York), now uniform over 2026",
  calls,
  us_per_call: {
    mean_timed: round(stats.mean),
    p50: round(stats.p50),
    p99: round(stats.p99),
    p999: round(stats.p999),
    max: round(stats.max),
    throughput_mean: round(throughputUs),
  },
  timer_overhead_us_p50: round(percentiles(timer).p50),
  baseline_formatToParts_us: round(baselineUs),
  ratio_throughput_to_baseline: round(throughputUs / baselineUs),
  wall_ms: Math.round(wallUs / 1000),
  sink,
};
process.stdout.write(`${JSON.stringify(result)}\n`);
process.stdout.write(
  [
    "",
    "metric                     µs",
    `scheduleState p50          ${round(stats.p50)}`,
    `scheduleState p99          ${round(stats.p99)}`,
    `scheduleState p99.9        ${round(stats.p999)}`,
    `scheduleState mean (untimed) ${round(throughputUs)}`,
    `timer overhead p50         ${result.timer_overhead_us_p50}`,
    `baseline formatToParts     ${round(baselineUs)}`,
    `ratio (mean / baseline)    ${result.ratio_throughput_to_baseline}`,
    "",
  ].join("\n"),
);
