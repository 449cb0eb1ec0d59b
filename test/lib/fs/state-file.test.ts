import { chmodSync, chownSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isAgentdError } from "../../../lib/errors.ts";
import { readStateFile, writeStateFile } from "../../../lib/fs/state-file.ts";
import { useTmpDir } from "../../support/tmp.ts";

const tmp = useTmpDir("agentd-state-");

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isAgentdError(err)) return err.code;
    throw err;
  }
  throw new Error("expected an AgentdError");
}

describe("state files", () => {
  it("round-trips data with its format, as one line, mode 0600", () => {
    const p = join(tmp(), "s.json");
    const data = { n: 7, name: "rig-1", nested: { list: [1, "two", null, true] } };
    writeStateFile(p, 3, data);
    expect(readStateFile(p, { format: 3 })).toEqual({ format: 3, data });
    expect(readFileSync(p, "utf8")).toBe(
      '{"format":3,"data":{"n":7,"name":"rig-1","nested":{"list":[1,"two",null,true]}}}\n',
    );
    expect(statSync(p).mode & 0o777).toBe(0o600);
  });

  it("returns an older format as is, for the caller to migrate", () => {
    const p = join(tmp(), "s.json");
    writeStateFile(p, 1, { old: true });
    expect(readStateFile(p, { format: 2 })).toEqual({ format: 1, data: { old: true } });
  });

  it("returns undefined when the file does not exist", () => {
    expect(readStateFile(join(tmp(), "none.json"), { format: 1 })).toBeUndefined();
  });

  it("refuses a newer format instead of guessing", () => {
    const p = join(tmp(), "s.json");
    writeStateFile(p, 3, { x: 1 });
    expect(codeOf(() => readStateFile(p, { format: 2 }))).toBe("AGENTD_E_FILE_FORMAT_NEWER");
  });

  it.each([
    ["cut short (no final newline)", '{"format":1,"data":{"a":1}}'],
    ["cut inside the JSON", '{"format":1,"data":{"a"\n'],
    ["empty", ""],
    ["not an object", "[1]\n"],
    ["missing format", '{"data":1}\n'],
    ["format not an integer", '{"format":"1","data":1}\n'],
    ["format 1.5", '{"format":1.5,"data":1}\n'],
    ["format 0", '{"format":0,"data":1}\n'],
    ["missing data", '{"format":1}\n'],
    ["an unknown member", '{"format":1,"data":1,"extra":2}\n'],
    ["a duplicated member", '{"format":1,"data":{"armed":false,"armed":true}}\n'],
  ])("refuses a corrupt file: %s", (_why, text) => {
    const p = join(tmp(), "s.json");
    writeFileSync(p, text, { mode: 0o600 });
    expect(codeOf(() => readStateFile(p, { format: 9 }))).toBe("AGENTD_E_FILE_CORRUPT");
  });

  it("refuses invalid UTF-8 as corrupt", () => {
    const p = join(tmp(), "s.json");
    writeFileSync(p, Buffer.from([...Buffer.from('{"format":1,"data":"'), 0xff, 0x22, 0x7d, 0x0a]));
    expect(codeOf(() => readStateFile(p, { format: 1 }))).toBe("AGENTD_E_FILE_CORRUPT");
  });

  it("refuses a state file writable by others (0666)", () => {
    const p = join(tmp(), "s.json");
    writeStateFile(p, 1, { a: 1 });
    chmodSync(p, 0o666);
    expect(codeOf(() => readStateFile(p, { format: 1 }))).toBe("AGENTD_E_FILE_INSECURE_MODE");
  });

  it("refuses a state file owned by another user", () => {
    const p = join(tmp(), "s.json");
    writeStateFile(p, 1, { a: 1 });
    chownSync(p, 4242, 4242);
    expect(codeOf(() => readStateFile(p, { format: 1 }))).toBe("AGENTD_E_FILE_FOREIGN_OWNER");
  });

  it("refuses data that JSON would silently change", () => {
    const p = join(tmp(), "s.json");
    expect(codeOf(() => writeStateFile(p, 1, { a: undefined }))).toBe(
      "AGENTD_E_JSON_NOT_CANONICALIZABLE",
    );
    expect(codeOf(() => writeStateFile(p, 1, { t: new Date(0) }))).toBe(
      "AGENTD_E_JSON_NOT_CANONICALIZABLE",
    );
    expect(codeOf(() => writeStateFile(p, 0, {}))).toBe("AGENTD_E_INTERNAL");
  });
});
