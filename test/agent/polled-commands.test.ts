import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openPolledCommands, POLLED_FILE } from "../../agent/polled-commands.ts";

/**
 * The commands fetched by polling, kept across restarts (agent/polled-commands.ts): by the id
 * a document claims and the document itself, bounded.
 */

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function path(): string {
  const d = mkdtempSync(join(tmpdir(), "agentd-polled-"));
  dirs.push(d);
  return join(d, POLLED_FILE);
}

describe("commands fetched by polling", () => {
  it("remembers a document across a reopen; another document claiming the same id is new", () => {
    const p = path();
    openPolledCommands(p, () => {}).add("c1", "jws-a");
    const again = openPolledCommands(p, () => {});
    expect(again.hasId("c1")).toBe(true);
    expect(again.has("c1", "jws-a")).toBe(true);
    expect(again.has("c1", "jws-b")).toBe(false);
    expect(again.hasId("c2")).toBe(false);
  });

  it("keeps only the newest entries", () => {
    const p = path();
    const polled = openPolledCommands(p, () => {}, 5);
    for (let i = 0; i <= 5; i++) polled.add(`c${i}`, `jws-${i}`);
    expect(polled.hasId("c0")).toBe(false);
    const again = openPolledCommands(p, () => {}, 5);
    expect(again.hasId("c0")).toBe(false);
    expect(again.has("c1", "jws-1")).toBe(true);
    expect(again.has("c5", "jws-5")).toBe(true);
  });

  it("starts over from a file it cannot read, and reports a write it cannot make", () => {
    const failures: unknown[] = [];
    const polled = openPolledCommands(join(path(), "missing-dir", POLLED_FILE), (err) =>
      failures.push(err),
    );
    polled.add("c1", "jws");
    expect(failures).toHaveLength(1);
    // kept in memory all the same
    expect(polled.has("c1", "jws")).toBe(true);
  });
});
