import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, inject, it } from "vitest";
import { REPO_ROOT } from "../support/cli.ts";
import { podmanAvailable } from "../support/podman.ts";

/**
 * Smoke test of bench/supervisor.ts at a tiny size: its own Podman service, the simulated
 * services in containers, the supervisor in its own process; every death is seen, restarted
 * after exactly the restart minimum (a first failure) and answers its probe again, Podman's
 * floor is sampled once per death, the idle windows and memory report, the probe-less
 * supervisor adopts the running containers, and the JSON has the promised shape. Nothing about
 * speed is asserted. Skipped only where Podman cannot run (test/support/podman.ts).
 */

const availability = podmanAvailable(inject("agentdPodman"));
const NODE = existsSync(resolve(REPO_ROOT, "node_modules/.bin/node"))
  ? resolve(REPO_ROOT, "node_modules/.bin/node")
  : process.execPath;

interface Summary {
  count: number;
  p50: number;
  p99: number;
  min: number;
  max: number;
}

interface Deaths {
  restart_min_ms: number;
  deaths: number;
  exit_codes: Record<string, number>;
  consecutive_failures: Record<string, number>;
  exit_seen_ms: Summary;
  backoff_scheduled_ms: Summary;
  start_returned_ms: Summary;
  running_ms: Summary;
  healthy_ms: Summary;
  by_kind: Record<string, { deaths: number }>;
}

interface CpuWindow {
  window_s: number;
  cpu_s: number;
  cpu_s_per_min: number;
  pct_of_one_core: number;
}

describe.skipIf(!availability.available)("supervisor benchmark (tiny)", () => {
  it("deaths restarted and healthy again, the floor sampled, idle CPU and memory reported", () => {
    const r = spawnSync(
      NODE,
      [
        resolve(REPO_ROOT, "bench", "supervisor.ts"),
        ...["--kills", "2", "--cln-kills", "1", "--idle-s", "2", "--no-probe-idle-s", "1"],
        "--json-only",
      ],
      { cwd: REPO_ROOT, encoding: "utf8", timeout: 230_000 },
    );
    if (r.error) throw r.error;
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.split("\n").filter((l) => l !== "");
    expect(lines.length).toBe(1); // --json-only: the JSON line alone
    const out = JSON.parse(lines[0] as string) as {
      bench: string;
      machine: { cores: number };
      config: { kills: number; cln_kills: number; kill_methods: Record<string, number> };
      results: {
        restart: Record<string, Deaths>;
        idle: Record<
          string,
          {
            supervisor: CpuWindow & { driver_calls: Record<string, number> };
            adopted_without_restart?: boolean;
          }
        >;
        memory: Record<string, { rss_mib: number; anon_mib: number; file_mib: number }>;
      };
      baseline: {
        podman_start: Record<
          string,
          { starts: number; running_ms: Summary; healthy_ms: Summary; start_call_ms: Summary }
        >;
        idle: Record<string, { trivial_node: CpuWindow; import_only: CpuWindow }>;
        memory: { trivial_node: { rss_mib: number }; import_only: { rss_mib: number } };
      };
      ratios: { restart: Record<string, Record<string, number | null>>; memory: object };
      goals: Record<string, { goal: string; value: number; met: boolean }>;
    };
    expect(out.bench).toBe("supervisor");
    expect(out.machine.cores).toBeGreaterThan(0);
    const expected: Record<string, { min: number; deaths: number }> = {
      lnd_min1000: { min: 1000, deaths: 2 },
      lnd_min100: { min: 100, deaths: 2 },
      cln_min1000: { min: 1000, deaths: 1 },
    };
    expect(Object.keys(out.results.restart).sort()).toEqual(Object.keys(expected).sort());
    for (const [label, e] of Object.entries(expected)) {
      const d = out.results.restart[label] as Deaths;
      expect(d.restart_min_ms).toBe(e.min);
      expect(d.deaths).toBe(e.deaths);
      // SIGKILLed, seen, and each a first failure: restarted after exactly the minimum
      expect(d.exit_codes).toEqual({ "137": e.deaths });
      expect(d.consecutive_failures).toEqual({ "1": e.deaths });
      expect(d.backoff_scheduled_ms).toMatchObject({ count: e.deaths, min: e.min, max: e.min });
      for (const s of [d.exit_seen_ms, d.start_returned_ms, d.running_ms, d.healthy_ms]) {
        expect(s.count).toBe(e.deaths);
        expect(s.min).toBeGreaterThan(0);
        expect(s.max).toBeGreaterThanOrEqual(s.p99);
      }
      // the probe is polled once Podman says running: never before
      expect(d.healthy_ms.min).toBeGreaterThanOrEqual(d.running_ms.min);
      expect(
        Object.values(d.by_kind)
          .map((k) => k.deaths)
          .reduce((a, b) => a + b, 0),
      ).toBe(e.deaths);
      const f = out.baseline.podman_start[label];
      expect(f?.starts).toBe(e.deaths);
      expect(f?.healthy_ms.min).toBeGreaterThanOrEqual(f?.running_ms.min ?? Number.NaN);
      expect(out.ratios.restart[label]?.running_p50_over_podman_start).toBeGreaterThan(0);
      expect(out.goals[`running_p99_ms_${label}`]).toMatchObject({
        goal: "< 2000",
        value: d.running_ms.p99,
      });
    }
    for (const w of ["lnd", "lnd_no_probe", "cln"]) {
      const idle = out.results.idle[w];
      expect(idle?.supervisor.window_s).toBeGreaterThan(0);
      expect(idle?.supervisor.cpu_s).toBeGreaterThanOrEqual(0);
      expect(out.baseline.idle[w]?.trivial_node.window_s).toBeGreaterThan(0);
      expect(out.baseline.idle[w]?.import_only.cpu_s).toBeGreaterThanOrEqual(0);
    }
    // the probe-less supervisor took the running containers over without starting any
    expect(out.results.idle.lnd_no_probe?.adopted_without_restart).toBe(true);
    for (const m of ["lnd_idle", "lnd_after_deaths", "cln_idle"]) {
      const mem = out.results.memory[m];
      expect(mem?.rss_mib).toBeGreaterThan(0);
      // VmRSS = RssAnon + RssFile + RssShmem (next to nothing here), each rounded to 0.1
      const parts = (mem?.anon_mib ?? 0) + (mem?.file_mib ?? 0);
      expect(Math.abs(parts - (mem?.rss_mib ?? 0))).toBeLessThanOrEqual(1);
    }
    expect(out.baseline.memory.trivial_node.rss_mib).toBeGreaterThan(0);
    expect(out.baseline.memory.import_only.rss_mib).toBeGreaterThan(0);
    // every supervised death and every floor start ended with a SIGKILL, plus one per floor
    // container to prepare it
    const kills = Object.values(out.config.kill_methods).reduce((a, b) => a + b, 0);
    expect(kills).toBe(2 * (2 + 2 + 1) + 5);
  }, 240_000);
});
