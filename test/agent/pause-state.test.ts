import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { NO_PAUSE, openPauseFile, PAUSE_FILE, readPauses } from "../../agent/pause-state.ts";

/**
 * The two pauses on disk (agent/pause-state.ts): format 2 holds the local and the remote one;
 * format 1 (one pause) is migrated by who asked; a file that cannot be read is a local pause
 * (fail closed, lifted only on the machine).
 */

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function fileWith(text: string | null): string {
  const d = mkdtempSync(join(tmpdir(), "agentd-pause-"));
  dirs.push(d);
  const path = join(d, PAUSE_FILE);
  if (text !== null) writeFileSync(path, text, { mode: 0o600 });
  return path;
}

describe("pause file", () => {
  it("migrates format 1 by who asked: a command's pause is the remote one, any other the local one", () => {
    const v1 = (data: string) => fileWith(`{"format":1,"data":${data}}\n`);
    expect(readPauses(v1('{"at":7,"by":"command c-1","paused":true}'))).toEqual({
      local: null,
      remote: { by: "command c-1", at: 7 },
    });
    expect(readPauses(v1('{"at":8,"by":"local API","paused":true}'))).toEqual({
      local: { by: "local API", at: 8 },
      remote: null,
    });
    expect(readPauses(v1('{"at":9,"by":"local API","paused":false}'))).toEqual(NO_PAUSE);
  });

  it("reads a file it cannot make sense of as a local pause (fail closed)", () => {
    const unreadable = { local: { by: "unreadable pause file", at: 0 }, remote: null };
    expect(readPauses(fileWith("{not json"))).toEqual(unreadable);
    expect(readPauses(fileWith('{"format":2,"data":{"local":5,"remote":null}}\n'))).toEqual(
      unreadable,
    );
    expect(readPauses(fileWith('{"format":1,"data":{"paused":"yes"}}\n'))).toEqual(unreadable);
    expect(readPauses(fileWith(null))).toEqual(NO_PAUSE);
    // written by a newer agentd: refused, as every state file
    expect(() => readPauses(fileWith('{"format":3,"data":{}}\n'))).toThrow(/newer/);
  });

  it("keeps both pauses across a reopen; a resume of one leaves the other", () => {
    const path = fileWith(null);
    const f = openPauseFile(path, () => {});
    f.save("local", "local API", 10);
    f.save("remote", "command c-2", 20);
    expect(openPauseFile(path, () => {}).current()).toEqual({
      local: { by: "local API", at: 10 },
      remote: { by: "command c-2", at: 20 },
    });
    f.clear("remote");
    expect(readPauses(path)).toEqual({ local: { by: "local API", at: 10 }, remote: null });
    expect(JSON.parse(readFileSync(path, "utf8")).format).toBe(2);
    f.clear("local");
    expect(readPauses(path)).toEqual(NO_PAUSE);
  });
});
