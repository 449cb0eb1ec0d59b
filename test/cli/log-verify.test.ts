import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { ChainLog } from "../../lib/fs/chain-log.ts";
import { agentd } from "../support/cli.ts";
import { useTmpDir } from "../support/tmp.ts";

const tmp = useTmpDir();

function makeLog(
  records: number,
  rotateBytes = 1 << 20,
): { path: string; head: { seq: number; hash: string } } {
  const path = join(tmp(), "audit.jsonl");
  const { log } = ChainLog.open(path, { rotateBytes });
  for (let i = 1; i <= records; i++) log.append({ type: "test", n: i });
  const head = log.head();
  log.close();
  if (head === null) throw new Error("no head");
  return { path, head };
}

describe("agentd log verify", () => {
  it("accepts an intact log across rotated segments and reports its head", () => {
    const { path, head } = makeLog(20, 600);
    expect(readdirSync(dirname(path)).length).toBeGreaterThan(2); // rotated
    const r = agentd(["log", "verify", path, "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ valid: true, records: 20, head });
    const t = agentd(["log", "verify", path, "--head", head.hash, "--seq", String(head.seq)]);
    expect(t).toMatchObject({ code: 0, stdout: `ok: 20 records, head 20 ${head.hash}\n` });
  });

  it("exits 3 naming the first bad record when a record is edited", () => {
    const { path } = makeLog(5);
    const lines = readFileSync(path, "utf8").split("\n");
    const idx = lines.findIndex((l) => l.includes('"n":4'));
    lines[idx] = (lines[idx] ?? "").replace('"n":4', '"n":40');
    writeFileSync(path, lines.join("\n"));
    const r = agentd(["log", "verify", path, "--json"]);
    expect(r.code).toBe(3);
    const doc = JSON.parse(r.stdout) as { valid: boolean; error: { code: string; seq: number } };
    expect(doc.valid).toBe(false);
    expect(doc.error.code).toBe("AGENTD_E_LOG_CHAIN_BROKEN");
    expect(doc.error.seq).toBe(4);
    expect(r.stderr).toMatch(/^agentd: AGENTD_E_LOG_CHAIN_BROKEN: /);
  });

  it("exits 3 when the last records were cut off and --head says where it should end", () => {
    const { path, head } = makeLog(3);
    const lines = readFileSync(path, "utf8")
      .split("\n")
      .filter((l) => l !== "");
    writeFileSync(path, `${lines.slice(0, -1).join("\n")}\n`);
    expect(agentd(["log", "verify", path]).code).toBe(0); // self-consistent without an anchor
    const r = agentd(["log", "verify", path, "--head", head.hash]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("AGENTD_E_LOG_HEAD_MISMATCH");
  });

  it("exits 2 on bad usage", () => {
    expect(agentd(["log", "verify", "/x", "--seq", "3"]).code).toBe(2);
    expect(agentd(["log", "verify"]).code).toBe(2);
  });
});
