/**
 * Shared helpers for the benchmarks in bench/: what machine a run was on, latency summaries
 * (nearest-rank percentiles) and a plain-text table. No dependencies beyond node:os.
 *
 * The machines here are shared and noisy, so every benchmark states the machine and compares
 * against a baseline measured in the same run; `loadavg_1m` is recorded at the start so a
 * reader can tell a busy run from a quiet one.
 */
import { availableParallelism, cpus, loadavg, release, totalmem, type } from "node:os";

export interface MachineInfo {
  readonly cpu: string;
  /** Logical CPUs the OS reports. */
  readonly cores: number;
  /** What Node may use (affinity, cgroup quota). */
  readonly available_parallelism: number;
  readonly memory_gib: number;
  readonly node: string;
  readonly v8: string;
  readonly os: string;
  readonly arch: string;
  readonly loadavg_1m: number;
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cpu: list[0]?.model.trim() ?? "unknown",
    cores: list.length,
    available_parallelism: availableParallelism(),
    memory_gib: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    v8: process.versions.v8,
    os: `${type()} ${release()}`,
    arch: process.arch,
    loadavg_1m: round(loadavg()[0] ?? 0, 2),
  };
}

/** Rounds to `digits` decimals (for JSON and tables; never for computing). */
export function round(v: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/**
 * The nearest-rank q-quantile of an ascending array: the smallest sample such that at least
 * q of all samples are at or below it (q in (0, 1]; q = 1 is the maximum). NaN when empty.
 */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const rank = Math.min(n, Math.max(1, Math.ceil(q * n)));
  return sorted[rank - 1] as number;
}

export interface LatencySummary {
  readonly count: number;
  readonly min_us: number;
  readonly mean_us: number;
  readonly p50_us: number;
  readonly p90_us: number;
  readonly p99_us: number;
  readonly p99_9_us: number;
  readonly max_us: number;
}

/**
 * Summary in microseconds of per-operation samples in nanoseconds (process.hrtime.bigint
 * differences). Sorts a copy; the samples are left as they are.
 */
export function summarizeNs(samplesNs: Float64Array): LatencySummary {
  const sorted = Float64Array.from(samplesNs).sort();
  let sum = 0;
  for (let i = 0; i < sorted.length; i++) sum += sorted[i] as number;
  const us = (ns: number) => round(ns / 1000, 3);
  return {
    count: sorted.length,
    min_us: us(sorted[0] ?? Number.NaN),
    mean_us: us(sorted.length === 0 ? Number.NaN : sum / sorted.length),
    p50_us: us(percentile(sorted, 0.5)),
    p90_us: us(percentile(sorted, 0.9)),
    p99_us: us(percentile(sorted, 0.99)),
    p99_9_us: us(percentile(sorted, 0.999)),
    max_us: us(percentile(sorted, 1)),
  };
}

/** Sum of samples (ns), for throughput: operations per second of time spent in them. */
export function sumNs(samplesNs: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < samplesNs.length; i++) sum += samplesNs[i] as number;
  return sum;
}

export type Cell = string | number | boolean | null;

/**
 * A plain-text table: columns padded to their widest cell, numeric columns right-aligned,
 * text left-aligned, a rule under the header. Ends with a newline.
 */
export function table(headers: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const text = (c: Cell | undefined) => (c === null || c === undefined ? "" : String(c));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => text(r[i]).length)));
  // A column is right-aligned, header included, when its first row holds a number.
  const right = widths.map((_, i) => typeof rows[0]?.[i] === "number");
  const line = (cells: readonly Cell[]) =>
    widths
      .map((w, i) => {
        const s = text(cells[i]);
        return right[i] === true ? s.padStart(w) : s.padEnd(w);
      })
      .join("  ")
      .trimEnd();
  return [
    line(headers),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...rows.map((r) => line(r)),
    "",
  ].join("\n");
}

/** Deterministic pseudo-random numbers (mulberry32): the same inputs for the same seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
