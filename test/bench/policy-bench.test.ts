import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/cli.ts";

/**
 * Smoke test of bench/policy.ts at a tiny size: it runs, and its JSON has the promised shape
 * and self-consistent values. It asserts nothing about speed (benchmarks measure speed; tests
 * never time anything).
 */

const NODE = existsSync(resolve(REPO_ROOT, "node_modules/.bin/node"))
  ? resolve(REPO_ROOT, "node_modules/.bin/node")
  : process.execPath;
const SCRIPT = resolve(REPO_ROOT, "bench/policy.ts");
const N = 2000;
const BUNDLES = 12;
const COLD = 40;
const SMALL = [
  "--evaluations",
  String(N),
  "--warmup",
  "300",
  "--bundles",
  String(BUNDLES),
  "--cold",
  String(COLD),
];

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
  for (const v of order) {
    expect(Number.isFinite(v)).toBe(true);
    expect(v).toBeGreaterThanOrEqual(0);
  }
  for (let i = 1; i < order.length; i++)
    expect(order[i]).toBeGreaterThanOrEqual(order[i - 1] as number);
  expect(s.mean_us).toBeGreaterThanOrEqual(s.min_us);
  expect(s.mean_us).toBeLessThanOrEqual(s.max_us);
}

describe("bench/policy.ts (smoke, tiny N)", () => {
  it("prints one JSON line with --json-only, of the promised shape and consistent values", () => {
    const r = run([...SMALL, "--json-only"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines.length).toBe(2); // the JSON and the final newline
    expect(lines[1]).toBe("");
    const j = JSON.parse(lines[0] as string);

    expect(Object.keys(j)).toEqual(
      expect.arrayContaining(["machine", "config", "results", "baseline", "ratios", "goal"]),
    );
    expect(j.machine).toMatchObject({ cpu: expect.any(String), os: expect.any(String) });
    expect(j.machine.cores).toBeGreaterThanOrEqual(1);
    expect(j.machine.memory_gib).toBeGreaterThan(0);
    expect(j.machine.node).toMatch(/^v\d+\./);
    expect(j.config).toMatchObject({ evaluations: N, bundles: BUNDLES, cold_evaluations: COLD });
    expect(j.config.policy.rules).toEqual([
      "schedule",
      "max_watts",
      "max_temp_c",
      "upstreams",
      "payout",
      "services",
      "commands",
      "networks",
      "job_classes",
      "offline_grace_s",
      "max_publication_ttl_s",
    ]);
    expect(j.config.policy.windows.length).toBeGreaterThanOrEqual(4);
    expect(j.config.policy.zones.length).toBeGreaterThanOrEqual(3);

    // evaluate: every call counted once, allow + deny = N, both paths of the schedule seen
    const ev = j.results.evaluate;
    expectSane(ev, N);
    expect(ev.allow + ev.deny).toBe(N);
    expect(ev.allow).toBeGreaterThan(0);
    expect(ev.deny).toBeGreaterThan(0);
    expectSane(ev.by_schedule.inside, ev.by_schedule.inside.count);
    expectSane(ev.by_schedule.outside, ev.by_schedule.outside.count);
    expect(ev.by_schedule.inside.count + ev.by_schedule.outside.count).toBe(N);
    expect(ev.by_schedule.outside.count).toBe(ev.deny_reasons["rules.schedule_outside"]);
    expect(ev.by_schedule.inside.count).toBeGreaterThan(0);
    for (const reason of [
      "rules.schedule_outside",
      "rules.upstream_not_allowed",
      "facts.watts_stale",
      "facts.temp_stale",
    ]) {
      expect(ev.deny_reasons[reason], reason).toBeGreaterThan(0);
    }
    expectSane(j.results.timer_overhead, N);

    const base = j.baseline.evaluate_minimal;
    expectSane(base, N);
    expect(base.allow + base.deny).toBe(N);
    expect(base.deny_reasons["rules.schedule_outside"]).toBeUndefined();

    // verification: distinct bundles, all of which verify, in both series
    const v = j.results.verify;
    expectSane(v, BUNDLES);
    expect(v).toMatchObject({ ok: BUNDLES, failed: 0 });
    expect(v.bundles_per_s).toBeGreaterThan(0);
    const raw = j.baseline.raw_ed25519;
    expectSane(raw, BUNDLES);
    expect(raw).toMatchObject({ ok: BUNDLES, failed: 0, signatures_per_bundle: 2 });

    expectSane(j.results.schedule_memo.cold, COLD);

    for (const [name, value] of Object.entries(j.ratios)) {
      expect(typeof value, name).toBe("number");
      expect(value as number, name).toBeGreaterThan(0);
    }
    expect(j.ratios.evaluate_p50_realistic_over_minimal).toBeCloseTo(ev.p50_us / base.p50_us, 2);

    expect(j.goal.p99_us).toBe(20);
    expect(j.goal.met).toBe(ev.p99_us < 20);
  });

  it("prints the table on stdout after the JSON line without --json-only", () => {
    const r = run(["--evaluations", "500", "--warmup", "0", "--bundles", "2", "--cold", "0"]);
    expect(r.status).toBe(0);
    const [first, ...rest] = r.stdout.split("\n");
    const j = JSON.parse(first as string);
    expect(j.results.evaluate.count).toBe(500);
    expect(j.results.schedule_memo.cold).toBeNull();
    const tableText = rest.join("\n");
    expect(tableText).toContain("evaluate, realistic");
    expect(tableText).toContain("verifyDocuments per bundle");
    expect(tableText).toMatch(/goal: evaluate p99 < 20 µs: (met|NOT met)/);
  });

  it("refuses bad options with exit 2 and a usage line", () => {
    for (const args of [["--evaluations", "0"], ["--bundles", "x"], ["--nope"]]) {
      const r = run(args);
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain("usage: node bench/policy.ts");
    }
  });
});
