import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/cli.ts";

/**
 * Smoke test of bench/share-validation.ts at a tiny size: it runs, and its JSON has the
 * promised shape and self-consistent values (every share validated, every hash equal to the
 * baseline's). Nothing about speed is asserted.
 */

const NODE = existsSync(resolve(REPO_ROOT, "node_modules/.bin/node"))
  ? resolve(REPO_ROOT, "node_modules/.bin/node")
  : process.execPath;
const SCRIPT = resolve(REPO_ROOT, "bench/share-validation.ts");
const N = 600;
const JOBS = 3;

function run(args: readonly string[]) {
  const r = spawnSync(NODE, [SCRIPT, ...args], {
    cwd: REPO_ROOT,
    encoding: "utf8",
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  return r;
}

interface Summary {
  count: number;
  min_us: number;
  mean_us: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  p99_9_us: number;
  max_us: number;
}

function expectSane(s: Summary, count: number): void {
  expect(s.count).toBe(count);
  const order = [s.min_us, s.p50_us, s.p90_us, s.p99_us, s.p99_9_us, s.max_us];
  for (const v of order) expect(Number.isFinite(v) && v >= 0).toBe(true);
  for (let i = 1; i < order.length; i++)
    expect(order[i]).toBeGreaterThanOrEqual(order[i - 1] as number);
  expect(s.mean_us).toBeGreaterThanOrEqual(s.min_us);
  expect(s.mean_us).toBeLessThanOrEqual(s.max_us);
}

describe("bench/share-validation.ts (smoke, tiny N)", () => {
  it("prints one JSON line with --json-only, of the promised shape and consistent values", () => {
    const r = run(["--shares", String(N), "--warmup", "50", "--jobs", String(JOBS), "--json-only"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines.length).toBe(2);
    expect(lines[1]).toBe("");
    const j = JSON.parse(lines[0] as string);

    expect(j.bench).toBe("share-validation");
    expect(Object.keys(j)).toEqual(
      expect.arrayContaining(["machine", "config", "results", "baseline", "ratios", "goal"]),
    );
    expect(j.machine.cores).toBeGreaterThanOrEqual(1);
    expect(j.machine.node).toMatch(/^v\d+\./);
    expect(j.config).toMatchObject({
      shares: N,
      jobs: JOBS,
      branch_depth: 12,
      version_mask: "1fffe000",
    });
    expect(j.config.coinbase_bytes.min).toBeLessThanOrEqual(j.config.coinbase_bytes.max);

    const v = j.results.validate;
    expectSane(v, N);
    // every share validated, each hash equal to the baseline's hash of the same header
    expect(v.refused).toBe(0);
    expect(v.hash_mismatch).toBe(0);
    // share difficulty 2^-31 (~1/2 of hashes), upstream 2^-28 (~1/16), regtest jobs (~1/4)
    expect(v.meets_share).toBeGreaterThan(N / 4);
    expect(v.meets_share).toBeLessThan((3 * N) / 4);
    expect(v.meets_upstream).toBeLessThan(v.meets_share);
    expect(v.meets_upstream).toBeGreaterThan(0);
    expect(v.blocks).toBeGreaterThan(0);
    expect(v.blocks).toBeLessThan(N / 2);
    expect(v.shares_per_s).toBeGreaterThan(0);

    const raw = j.baseline.raw_sha256d;
    expectSane(raw, N);
    expect(raw.sha256d_per_share).toBe(14);
    expect(raw.sha256d_per_s).toBeCloseTo(raw.shares_per_s * 14, 0);

    expect(j.ratios.throughput_validate_over_raw).toBeCloseTo(v.shares_per_s / raw.shares_per_s, 2);
    expect(j.ratios.p50_raw_over_validate).toBeGreaterThan(0);
    expect(j.goal.min_ratio).toBe(0.8);
    expect(j.goal.met).toBe(j.ratios.throughput_validate_over_raw >= 0.8);
    expect(j.capacity.miners_per_core).toBe(Math.floor(v.shares_per_s * 10));
  });

  it("prints the table after the JSON line, and honours --branch", () => {
    const r = run(["--shares", "100", "--warmup", "0", "--branch", "3"]);
    expect(r.status).toBe(0);
    const [first, ...rest] = r.stdout.split("\n");
    const j = JSON.parse(first as string);
    expect(j.config.branch_depth).toBe(3);
    expect(j.baseline.raw_sha256d.sha256d_per_share).toBe(5);
    expect(j.results.validate.hash_mismatch).toBe(0);
    const text = rest.join("\n");
    expect(text).toContain("submit line → validateWork");
    expect(text).toContain("raw sha256d ×5 (baseline)");
    expect(text).toMatch(/goal: validation throughput >= 0.8 x raw SHA-256d: (met|NOT met)/);
  });

  it("refuses bad options with exit 2 and a usage line", () => {
    for (const args of [["--shares", "0"], ["--branch", "33"], ["--jobs", "x"], ["--nope"]]) {
      const r = run(args);
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain("usage: node bench/share-validation.ts");
    }
  });
});
