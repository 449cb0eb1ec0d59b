import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/cli.ts";
import { ensureDriverUser } from "../support/driver-user.ts";

/**
 * Smoke test of bench/drivers.ts at a tiny size: the fleet, the driver host under its user and
 * the baseline really run, every reading is checked complete and current against what the
 * simulator served, and the JSON has the promised shape. Nothing about speed is asserted.
 */

const NODE = existsSync(resolve(REPO_ROOT, "node_modules/.bin/node"))
  ? resolve(REPO_ROOT, "node_modules/.bin/node")
  : process.execPath;

beforeAll(() => {
  ensureDriverUser();
});

describe("drivers benchmark (tiny)", () => {
  it("reads a mixed fleet of every family and both meter kinds through the driver host, each reading complete and current", () => {
    const r = spawnSync(
      NODE,
      [
        resolve(REPO_ROOT, "bench", "drivers.ts"),
        "--s9",
        "2",
        "--s19",
        "2",
        "--bos",
        "2",
        "--luxos",
        "2",
        "--vnish",
        "2",
        "--bitaxe",
        "2",
        "--meters",
        "2",
        "--plugs",
        "2",
        "--rounds",
        "2",
        "--interval",
        "1",
        "--json-only",
      ],
      { encoding: "utf8", timeout: 180_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout.trim().split("\n")[0] ?? "") as {
      config: { driver_user: string };
      readings_complete_and_current: boolean;
      rounds: {
        devices: number;
        requests: number;
        complete: number;
        stale: number;
        incomplete: number;
        ratio: number;
        host_cpu_s: number;
      }[];
    };
    expect(s.config.driver_user).toBe("agentd-drivers");
    expect(s.readings_complete_and_current).toBe(true);
    expect(s.rounds).toHaveLength(2);
    for (const round of s.rounds) {
      // every family's miners, two PDUs and two plugs: each read complete and current
      expect(round).toMatchObject({ devices: 16, complete: 16, stale: 0, incomplete: 0 });
      // at least one request per miner and one per meter; S9: summary, stats, pools
      expect(round.requests).toBeGreaterThanOrEqual(2 * 3 + 10 + 4);
      expect(round.ratio).toBeGreaterThan(0);
      expect(round.host_cpu_s).toBeGreaterThanOrEqual(0);
    }
  });
});
