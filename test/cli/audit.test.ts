import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ChainLog } from "../../lib/fs/chain-log.ts";
import { agentd } from "../support/cli.ts";
import { useTmpDir } from "../support/tmp.ts";

const tmp = useTmpDir("agentd-audit-cli-");

/** A state directory whose audit log holds `n` records, rotated into segments. */
function logWith(n: number): string {
  const dir = tmp();
  const { log } = ChainLog.open(join(dir, "audit.jsonl"), { rotateBytes: 400 });
  for (let i = 1; i <= n; i++) log.append({ type: "test.event", i });
  log.close();
  return dir;
}

describe("agentd audit", () => {
  it("verify: exit 0 with the head for an intact log, 3 for an edited one", () => {
    const dir = logWith(12);
    const ok = agentd(["audit", "verify", "--state-dir", dir, "--json"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ valid: true, records: 12, head: { seq: 12 } });
    const active = join(dir, "audit.jsonl");
    writeFileSync(active, readFileSync(active, "utf8").replace('"i":12', '"i":13'));
    const bad = agentd(["audit", "verify", "--state-dir", dir]);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/AGENTD_E_/);
  });

  it("tail: the last N records across rotated segments, oldest first", () => {
    const dir = logWith(12);
    const r = agentd(["audit", "tail", "-n", "9", "--state-dir", dir]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { i: number });
    expect(lines.map((l) => l.i)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const all = agentd(["audit", "tail", "-n", "100", "--state-dir", dir, "--json"]);
    expect((JSON.parse(all.stdout) as unknown[]).length).toBe(12);
    expect(agentd(["audit", "tail", "-n", "0", "--state-dir", dir]).code).toBe(2);
    expect(agentd(["audit", "tail", "--state-dir", tmp()]).code).toBe(1);
  });
});
