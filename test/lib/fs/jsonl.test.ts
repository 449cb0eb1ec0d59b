import {
  appendFileSync,
  chmodSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isAgentdError } from "../../../lib/errors.ts";
import { JsonlWriter, readJsonlLines } from "../../../lib/fs/jsonl.ts";
import { useTmpDir } from "../../support/tmp.ts";

const tmp = useTmpDir("agentd-jsonl-");

function errorOf(fn: () => unknown): { code: string; context: Record<string, unknown> } {
  try {
    fn();
  } catch (err) {
    if (isAgentdError(err)) return { code: err.code, context: { ...err.context } };
    throw err;
  }
  throw new Error("expected an AgentdError");
}

describe("JsonlWriter", () => {
  it("appends one line per record, batches included, creating the file 0600", () => {
    const p = join(tmp(), "log.jsonl");
    const { writer, recovery } = JsonlWriter.open(p);
    expect(recovery).toEqual({ recovered: false, tornBytes: 0 });
    writer.append({ a: 1 });
    writer.appendBatch([{ b: "x\ny" }, { c: [1, 2] }]);
    writer.appendBatch([]);
    writer.close();
    expect(readFileSync(p, "utf8")).toBe('{"a":1}\n{"b":"x\\ny"}\n{"c":[1,2]}\n');
    expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(readJsonlLines(p)?.values).toEqual([{ a: 1 }, { b: "x\ny" }, { c: [1, 2] }]);
  });

  it("continues after the existing lines when reopened", () => {
    const p = join(tmp(), "log.jsonl");
    for (const n of [1, 2, 3]) {
      const { writer } = JsonlWriter.open(p, { fsync: "batch" });
      writer.append({ n });
      writer.flush();
      writer.close();
    }
    expect(readJsonlLines(p)?.values).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
  });

  it("truncates a torn last line (no newline) on open and reports it", () => {
    const p = join(tmp(), "log.jsonl");
    writeFileSync(p, '{"a":1}\n{"b":2}\n', { mode: 0o600 });
    appendFileSync(p, '{"c":3,"pad":"xx'); // a write cut by a crash: 16 bytes
    expect(readJsonlLines(p)).toMatchObject({ lines: ['{"a":1}', '{"b":2}'], tornBytes: 16 });
    const { writer, recovery } = JsonlWriter.open(p);
    expect(recovery).toEqual({ recovered: true, tornBytes: 16 });
    expect(readFileSync(p, "utf8")).toBe('{"a":1}\n{"b":2}\n');
    writer.append({ d: 4 }); // lands on a line of its own, not after the fragment
    writer.close();
    expect(readFileSync(p, "utf8")).toBe('{"a":1}\n{"b":2}\n{"d":4}\n');
  });

  it("treats a newline-terminated but invalid last line as torn", () => {
    const p = join(tmp(), "log.jsonl");
    writeFileSync(p, '{"a":1}\n\0\0\0\0\n', { mode: 0o600 });
    const { writer, recovery } = JsonlWriter.open(p);
    writer.close();
    expect(recovery).toEqual({ recovered: true, tornBytes: 5 });
    expect(readFileSync(p, "utf8")).toBe('{"a":1}\n');
  });

  it("refuses (AGENTD_E_FILE_CORRUPT) an invalid line that is not the last, touching nothing", () => {
    const p = join(tmp(), "log.jsonl");
    const text = '{"a":1}\n{"b":\n{"c":3}\n{"d":';
    writeFileSync(p, text, { mode: 0o600 });
    const e = errorOf(() => JsonlWriter.open(p));
    expect(e.code).toBe("AGENTD_E_FILE_CORRUPT");
    expect(e.context.line).toBe(2);
    expect(readFileSync(p, "utf8")).toBe(text); // the torn tail was not cut either
    expect(errorOf(() => readJsonlLines(p)).code).toBe("AGENTD_E_FILE_CORRUPT");
  });

  it("refuses a log others can write", () => {
    const p = join(tmp(), "log.jsonl");
    writeFileSync(p, "");
    chmodSync(p, 0o666);
    expect(errorOf(() => JsonlWriter.open(p)).code).toBe("AGENTD_E_FILE_INSECURE_MODE");
  });

  it("refuses a symlink (AGENTD_E_FILE_NOT_REGULAR) instead of appending to its target", () => {
    const dir = tmp();
    writeFileSync(join(dir, "target"), "", { mode: 0o600 });
    symlinkSync(join(dir, "target"), join(dir, "log.jsonl"));
    expect(errorOf(() => JsonlWriter.open(join(dir, "log.jsonl"))).code).toBe(
      "AGENTD_E_FILE_NOT_REGULAR",
    );
  });

  it("refuses records that are not JSON objects, and use after close", () => {
    const p = join(tmp(), "log.jsonl");
    const { writer } = JsonlWriter.open(p);
    expect(errorOf(() => writer.append([1, 2])).code).toBe("AGENTD_E_INTERNAL");
    expect(errorOf(() => writer.appendLines(['{"a":1}\n{"b":2}'])).code).toBe("AGENTD_E_INTERNAL");
    writer.close();
    expect(errorOf(() => writer.append({ a: 1 })).code).toBe("AGENTD_E_INTERNAL");
    expect(readFileSync(p, "utf8")).toBe("");
  });
});
