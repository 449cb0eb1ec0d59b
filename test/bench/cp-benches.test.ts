import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/cli.ts";

/**
 * Smoke tests of bench/cp-heartbeats.ts and bench/cp-push.ts at a tiny size: `agentd cp init`
 * and `agentd cp serve` really run, every heartbeat answered 200 is found in the database,
 * every push reaches its agent's stream, the baselines run, and the JSON has the promised
 * shape. Nothing about speed is asserted.
 */

const NODE = existsSync(resolve(REPO_ROOT, "node_modules/.bin/node"))
  ? resolve(REPO_ROOT, "node_modules/.bin/node")
  : process.execPath;

function bench(script: string, args: readonly string[]) {
  const r = spawnSync(NODE, [resolve(REPO_ROOT, "bench", script), ...args], {
    cwd: REPO_ROOT,
    encoding: "utf8",
    timeout: 110_000,
  });
  if (r.error) throw r.error;
  expect(r.status, r.stderr).toBe(0);
  const [line] = r.stdout.split("\n");
  return JSON.parse(line as string) as Record<string, unknown> & {
    results: Record<string, Record<string, unknown>>;
  };
}

describe("control-plane benchmarks (tiny)", () => {
  it("cp-heartbeats: every heartbeat answered 200 is stored, none refused", () => {
    const out = bench("cp-heartbeats.ts", [
      "--agents",
      "20",
      "--concurrency",
      "4",
      "--seconds",
      "1",
      "--warmup",
      "1",
      "--presign-rate",
      "200",
      "--backends",
      "sqlite",
      "--json-only",
    ]);
    const r = out.results.sqlite as {
      ok: number;
      sent: number;
      refused: Record<string, number>;
      errors: number;
      durability_check: { answered_200_incl_warmup: number; stored_heartbeats: number };
    };
    expect(r.ok).toBeGreaterThan(0);
    expect([r.sent, r.refused, r.errors]).toEqual([r.ok, {}, 0]);
    expect(r.durability_check.stored_heartbeats).toBe(r.durability_check.answered_200_incl_warmup);
    expect(out.baseline).toMatchObject({ ok: expect.any(Number), errors: 0 });
    expect(out.goals).toMatchObject({ sqlite: { goal: ">= 5000/s" } });
  }, 120_000);

  it("cp-push: every push reaches its agent's stream; memory per agent is reported", () => {
    const out = bench("cp-push.ts", ["--agents", "30", "--pushes", "12", "--json-only"]);
    for (const phase of [out.results.control_plane, out.baseline] as {
      stream_errors: number;
      memory_per_agent_kib: number;
      push_latency_ms: { p50: number; p99: number; max: number };
    }[]) {
      expect(phase.stream_errors).toBe(0);
      expect(phase.memory_per_agent_kib).toEqual(expect.any(Number));
      expect(phase.push_latency_ms.p50).toBeGreaterThan(0);
      expect(phase.push_latency_ms.max).toBeGreaterThanOrEqual(phase.push_latency_ms.p99);
    }
    expect(out.config).toMatchObject({ agents: 30, pushes: 12, backend: "sqlite" });
    expect(out.goals).toMatchObject({ push_p99_ms: { goal: "< 100" } });
  }, 120_000);
});
