import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isAgentdError } from "../../../lib/errors.ts";
import { fsyncDirectory, writeFileAtomic } from "../../../lib/fs/atomic.ts";
import { useTmpDir } from "../../support/tmp.ts";

const tmp = useTmpDir("agentd-atomic-");

function codeOf(fn: () => unknown): { code: string; context: Record<string, unknown> } {
  try {
    fn();
  } catch (err) {
    if (isAgentdError(err)) return { code: err.code, context: { ...err.context } };
    throw err;
  }
  throw new Error("expected an AgentdError");
}

describe("writeFileAtomic", () => {
  it("writes the content with mode 0600 by default, whatever the umask", () => {
    const dir = tmp();
    const p = join(dir, "state.json");
    const old = process.umask(0o077);
    try {
      writeFileAtomic(p, "hello\n");
      writeFileAtomic(join(dir, "pub"), new Uint8Array([1, 2, 3]), { mode: 0o644 });
    } finally {
      process.umask(old);
    }
    expect(readFileSync(p, "utf8")).toBe("hello\n");
    expect(statSync(p).mode & 0o777).toBe(0o600);
    // 0644 under umask 077 would be 0600 if the mode were left to open(2)
    expect(statSync(join(dir, "pub")).mode & 0o777).toBe(0o644);
    expect(readFileSync(join(dir, "pub"))).toEqual(Buffer.from([1, 2, 3]));
  });

  it("replaces an existing file and leaves no temporary file behind", () => {
    const dir = tmp();
    const p = join(dir, "state.json");
    for (let i = 0; i < 5; i++) writeFileAtomic(p, `v${i}`);
    expect(readFileSync(p, "utf8")).toBe("v4");
    expect(readdirSync(dir)).toEqual(["state.json"]);
  });

  it("throws AGENTD_E_IO naming the path when the directory does not exist", () => {
    const dir = tmp();
    const p = join(dir, "missing", "state.json");
    const e = codeOf(() => writeFileAtomic(p, "x"));
    expect(e.code).toBe("AGENTD_E_IO");
    expect(e.context.path).toBe(p);
    expect(e.context.errno).toBe("ENOENT");
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a failure after the temp file was written keeps the old target and removes the temp", () => {
    // rename(2) of a file over a non-empty directory fails (EISDIR): the last step before
    // the target changes. The target (a directory here) and its content must be untouched.
    const dir = tmp();
    const p = join(dir, "target");
    mkdirSync(p);
    writeFileSync(join(p, "old"), "old content");
    const e = codeOf(() => writeFileAtomic(p, "new content"));
    expect(e.code).toBe("AGENTD_E_IO");
    expect(e.context.path).toBe(p);
    expect(e.context.op).toBe("rename into place");
    expect(readdirSync(dir)).toEqual(["target"]);
    expect(readFileSync(join(p, "old"), "utf8")).toBe("old content");
  });
});

describe("fsyncDirectory", () => {
  it("succeeds on a directory and throws AGENTD_E_IO on a missing one", () => {
    const dir = tmp();
    expect(() => fsyncDirectory(dir)).not.toThrow();
    expect(codeOf(() => fsyncDirectory(join(dir, "nope"))).code).toBe("AGENTD_E_IO");
  });
});
