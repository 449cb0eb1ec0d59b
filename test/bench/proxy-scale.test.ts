import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/cli.ts";

/**
 * Smoke test of bench/proxy-scale.ts at a tiny size: the proxy, the sim pool and the baseline
 * server really run as processes, every miner subscribes and authorizes, every share is
 * answered and forwarded, every job reaches every miner, and the JSON has the promised shape.
 * Nothing about speed is asserted.
 */

const NODE = existsSync(resolve(REPO_ROOT, "node_modules/.bin/node"))
  ? resolve(REPO_ROOT, "node_modules/.bin/node")
  : process.execPath;
const SCRIPT = resolve(REPO_ROOT, "bench/proxy-scale.ts");
const MINERS = 50;
const RATE = 50;
const SECONDS = 2;
const JOBS = 3;
const SHARES = RATE * SECONDS;

function run(args: readonly string[], timeout = 110_000) {
  const r = spawnSync(NODE, [SCRIPT, ...args], { cwd: REPO_ROOT, encoding: "utf8", timeout });
  if (r.error) throw r.error;
  return r;
}

interface Phase {
  handshake: Record<string, unknown>;
  memory_mib: { miners_connected: number; peak_hwm: number };
  shares: { sent: number; replied: number; accepted: number; rejected: Record<string, number> };
  cpu: { wall_s: number; server_cores: number; generator_cores: number };
  rtt: { count: number; p50_us: number; p99_us: number; max_us: number };
  fanout: {
    jobs: number;
    complete: number;
    reached_min: number;
    first_to_last_ms: { p50: number; max: number; each: number[] };
  };
}

function expectPhase(p: Phase): void {
  expect(p.handshake).toMatchObject({
    miners: MINERS,
    connected: MINERS,
    subscribed: MINERS,
    authorized: MINERS,
    ready: MINERS,
    errors: {},
  });
  expect(p.shares).toEqual({
    sent: SHARES,
    replied: SHARES,
    accepted: SHARES,
    rejected: {},
    rate_per_s: expect.any(Number),
    difficulty_changes: 0,
  });
  expect(p.rtt.count).toBe(SHARES);
  expect(p.rtt.p50_us).toBeGreaterThan(0);
  expect(p.rtt.max_us).toBeGreaterThanOrEqual(p.rtt.p99_us);
  expect(p.fanout).toMatchObject({ jobs: JOBS, complete: JOBS, reached_min: MINERS });
  expect(p.fanout.first_to_last_ms.each).toHaveLength(JOBS);
  expect(p.memory_mib.miners_connected).toBeGreaterThan(0);
  expect(p.memory_mib.peak_hwm).toBeGreaterThanOrEqual(p.memory_mib.miners_connected);
  expect(p.cpu.wall_s).toBeGreaterThan(0);
  expect(p.cpu.server_cores).toBeGreaterThanOrEqual(0);
}

describe("bench/proxy-scale.ts (smoke, tiny size)", () => {
  it("runs the proxy, the pool and the baseline as processes and prints the promised JSON", () => {
    const r = run([
      "--miners",
      String(MINERS),
      "--rate",
      String(RATE),
      "--seconds",
      String(SECONDS),
      "--warmup",
      "0.5",
      "--jobs",
      String(JOBS),
      "--source-ips",
      "4",
      "--json-only",
    ]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines).toHaveLength(2);
    const j = JSON.parse(lines[0] as string);

    expect(j.bench).toBe("proxy-scale");
    expect(Object.keys(j)).toEqual(
      expect.arrayContaining(["machine", "config", "results", "baseline", "ratios", "goals"]),
    );
    expect(j.machine.cores).toBeGreaterThanOrEqual(1);
    expect(j.config).toMatchObject({
      miners: MINERS,
      rate_per_s: RATE,
      seconds: SECONDS,
      jobs: JOBS,
    });
    expect(j.config.source_ips).toEqual(["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    // the bench's descriptor limit covers the miners, and the proxy inherited it
    expect(j.config.fd_limit.bench_after.soft).toBeGreaterThanOrEqual(MINERS + 256);
    expect(j.config.fd_limit.proxy.soft).toBe(j.config.fd_limit.bench_after.soft);

    const p = j.results.proxy;
    expectPhase(p);
    expect(p.miners_gauge).toBe(MINERS);
    // every share in the window forwarded and accepted by the pool (difficulty 2^-34)
    expect(p.forwarded).toEqual({
      accepted: SHARES,
      rejected: 0,
      unanswered: 0,
      pool_accepted: SHARES,
    });
    expect(p.forward_added.count).toBe(SHARES);
    expect(p.forward_added.buckets["+Inf"]).toBe(SHARES);
    expect(p.fanout_loop.count).toBe(JOBS);

    const e = j.baseline.echo;
    expectPhase(e);
    expect(e.fanout_loop_ms.max).toBeGreaterThanOrEqual(e.fanout_loop_ms.p50);

    // null only where a baseline rounds to 0 (CPU time below the clock tick at this size)
    for (const v of Object.values(j.ratios)) expect(v === null || Number.isFinite(v)).toBe(true);
    expect(j.ratios.rtt_p50_proxy_over_echo).toBeCloseTo(p.rtt.p50_us / e.rtt.p50_us, 2);
    for (const name of ["rss", "cpu", "fanout", "forward_added"])
      expect(typeof j.goals[name].met).toBe("boolean");
    expect(j.goals.all_met).toBe(
      ["rss", "cpu", "fanout", "forward_added"].every((n) => j.goals[n].met),
    );
  }, 120_000);

  it("refuses bad options with exit 2 and a usage line", () => {
    for (const args of [["--miners", "0"], ["--rate", "x"], ["--jobs", "1.5"], ["--nope"]]) {
      const r = run(args, 30_000);
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain("usage: node bench/proxy-scale.ts");
    }
  });
});
