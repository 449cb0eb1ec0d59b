import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/cli.ts";

/**
 * Smoke test of bench/agent.ts at a tiny size, on ./bin/agentd only (no build): the control
 * plane, the pool and the agent really run, every revocation drops every miner and every new
 * consent brings them back, the memory and start phases report, and the JSON has the promised
 * shape. Nothing about speed is asserted.
 */

const NODE = existsSync(resolve(REPO_ROOT, "node_modules/.bin/node"))
  ? resolve(REPO_ROOT, "node_modules/.bin/node")
  : process.execPath;

interface Summary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

describe("agent benchmark (tiny)", () => {
  it("revocations stop the data path, consents resume it; memory and start are reported", () => {
    const r = spawnSync(
      NODE,
      [
        resolve(REPO_ROOT, "bench", "agent.ts"),
        ...["--rounds", "3", "--miners", "2", "--starts", "1", "--unreachable-starts", "1"],
        ...["--idle-s", "2", "--entry", "source", "--json-only"],
      ],
      { cwd: REPO_ROOT, encoding: "utf8", timeout: 170_000 },
    );
    if (r.error) throw r.error;
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.split("\n")[0] as string) as {
      config: Record<string, unknown>;
      results: {
        revoke: Record<string, unknown> & {
          revoke_to_stop_ms: Summary;
          revoke_to_agent_accepted_ms: Summary;
          farm: Record<string, number>;
          decision_triggers: Record<string, number>;
        };
        memory: Record<string, { rss_idle_mib: number; heartbeats_sent: number }>;
        start: Record<string, { to_first_line_ms: Summary; to_policy_guard_started_ms: Summary }>;
        start_cp_unreachable: Record<string, { to_first_line_ms: Summary }>;
      };
      baseline: { push_to_agent_accepted_ms: Summary };
      goals: Record<string, { goal: string }>;
    };
    const rv = out.results.revoke;
    expect(rv.rounds).toBe(3);
    expect(rv.agent_exit).toBe(0);
    expect(rv.revoke_to_stop_ms.count).toBe(3);
    expect(rv.revoke_to_stop_ms.p50).toBeGreaterThan(0);
    expect(rv.revoke_to_stop_ms.max).toBeGreaterThanOrEqual(rv.revoke_to_stop_ms.p99);
    expect(rv.farm.unexpected_drops).toBe(0);
    expect(Object.values(rv.decision_triggers).reduce((a, b) => a + b, 0)).toBe(3);
    expect(out.baseline.push_to_agent_accepted_ms.count).toBe(3);
    expect(out.results.memory.source?.rss_idle_mib).toBeGreaterThan(0);
    expect(out.results.memory.source?.heartbeats_sent).toBeGreaterThan(0);
    expect(out.results.start.source?.to_first_line_ms.count).toBe(1);
    expect(out.results.start.source?.to_policy_guard_started_ms.count).toBe(1);
    expect(out.results.start_cp_unreachable.source?.to_first_line_ms.count).toBe(1);
    expect(out.goals).toMatchObject({
      revoke_to_stop_p99_ms: { goal: "< 250" },
      start_to_ready_p90_ms_source: { goal: "< 500" },
    });
  }, 180_000);
});
