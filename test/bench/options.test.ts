import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/cli.ts";

/**
 * Every script under bench/ parses its options with bench/args.ts: each refuses a bad option
 * with exit 2, what is wrong and its usage line (the same flags as before the parser was
 * shared), before it starts anything. Run as processes, as the benchmarks are; a bad option
 * stops them at once, so this is quick.
 */

const NODE = existsSync(resolve(REPO_ROOT, "node_modules/.bin/node"))
  ? resolve(REPO_ROOT, "node_modules/.bin/node")
  : process.execPath;

function run(script: string, args: readonly string[]) {
  const r = spawnSync(NODE, [resolve(REPO_ROOT, "bench", script), ...args], {
    cwd: REPO_ROOT,
    encoding: "utf8",
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  return r;
}

const USAGE: Record<string, string> = {
  "agent.ts":
    "[--rounds N] [--miners N] [--share-ms MS] [--starts N] [--unreachable-starts N] [--idle-s S] [--heartbeat-s S] [--entry both|source|built] [--audit-fill-mib N] [--cpu-prof DIR] [--agent-node-options OPTS] [--seed N] [--json-only]",
  "cp-heartbeats.ts":
    "[--agents N] [--concurrency C] [--seconds S] [--warmup S] [--backends sqlite,postgres] [--presign-rate R] [--json-only]",
  "cp-push.ts":
    "[--agents N] [--pushes P] [--concurrency C] [--connect-concurrency K] [--backend sqlite|postgres] [--seed S] [--json-only]",
  "policy.ts": "[--evaluations N] [--warmup N] [--bundles N] [--cold N] [--seed N] [--json-only]",
  "proxy-scale.ts":
    "[--miners N] [--rate R] [--seconds S] [--warmup S] [--jobs N] [--source-ips N] [--pool-tx N] [--proxy-cpu-prof DIR] [--proxy-node-options OPTS] [--proxy-entry built|source] [--json-only]",
  "schedule.ts": "[--calls N | N]",
  "share-validation.ts":
    "[--shares N] [--warmup N] [--jobs N] [--branch N] [--seed N] [--json-only]",
  "supervisor.ts":
    "[--kills N] [--cln-kills N] [--idle-s S] [--no-probe-idle-s S] [--lightning both|lnd|cln] [--seed N] [--json-only]",
  "cp/heartbeat-baseline.ts": "--key F --cert F",
  "cp/push-baseline.ts": "--key F --cert F",
  "proxy-scale/echo.ts": "--job JSON [--en2-size N] [--host HOST]",
};

// A dozen Node processes per test, each loading its benchmark's modules: slow on a busy machine.
const SLOW = { timeout: 120_000 };

describe("bench/args.ts, the benchmarks' one option parser", () => {
  it("every script refuses an unknown option with exit 2 and its usage line", SLOW, () => {
    for (const [script, usage] of Object.entries(USAGE)) {
      const r = run(script, ["--nope"]);
      expect(r.status, script).toBe(2);
      expect(r.stdout, script).toBe("");
      const name = script.replace(/\.ts$/, "");
      expect(r.stderr, script).toContain(`bench/${name}: Unknown option '--nope'`);
      expect(r.stderr, script).toContain(`usage: node bench/${script} ${usage}\n`);
    }
  });

  it(
    "refuses a value out of bounds, not a number, not a choice, or missing, saying which",
    SLOW,
    () => {
      const cases: [string, string[], string][] = [
        ["agent.ts", ["--miners", "65"], "--miners must be an integer in 1..64"],
        ["supervisor.ts", ["--kills", "1.5"], "--kills must be an integer in 1..10000"],
        ["proxy-scale.ts", ["--rate", "x"], "--rate must be a number in 1..100000"],
        ["agent.ts", ["--entry", "nowhere"], "--entry must be one of both, source, built"],
        ["cp-push.ts", ["--backend", "mysql"], "--backend must be one of sqlite, postgres"],
        ["cp-heartbeats.ts", ["--backends", "sqlite,mysql"], "--backends takes sqlite, postgres"],
        ["cp/heartbeat-baseline.ts", ["--cert", "c.pem"], "--key is required"],
        ["schedule.ts", ["--calls", "5", "6"], "--calls given twice"],
        [
          "proxy-scale/echo.ts",
          ["--job", "[1,2]"],
          "--job must be the 9 params of a mining.notify",
        ],
      ];
      for (const [script, args, message] of cases) {
        const r = run(script, args);
        const what = `${script} ${args.join(" ")}`;
        expect(r.status, what).toBe(2);
        expect(r.stderr, what).toContain(message);
        expect(r.stderr, what).toContain(`usage: node bench/${script}`);
      }
    },
  );

  it("takes a declared positional argument as its option (schedule.ts [calls])", SLOW, () => {
    for (const args of [["300"], ["--calls", "300"]]) {
      const r = run("schedule.ts", args);
      expect(r.status, r.stderr).toBe(0);
      const first = JSON.parse(r.stdout.split("\n")[0] ?? "") as { calls: number };
      expect(first.calls).toBe(300);
    }
  });
});
