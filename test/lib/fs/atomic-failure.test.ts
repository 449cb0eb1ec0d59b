import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { isAgentdError } from "../../../lib/errors.ts";
import { writeFileAtomic } from "../../../lib/fs/atomic.ts";
import { useTmpDir } from "../../support/tmp.ts";

// Failure injection: the named fs call throws EIO once, as a failing disk would.
const failing = vi.hoisted(() => ({ call: "" }));
vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  const wrap =
    <A extends unknown[], R>(name: string, f: (...a: A) => R) =>
    (...a: A): R => {
      if (failing.call === name) {
        failing.call = "";
        throw Object.assign(new Error(`EIO: injected ${name}`), { code: "EIO" });
      }
      return f(...a);
    };
  return {
    ...fs,
    writeSync: wrap("writeSync", fs.writeSync),
    fsyncSync: wrap("fsyncSync", fs.fsyncSync),
    renameSync: wrap("renameSync", fs.renameSync),
  };
});

const tmp = useTmpDir("agentd-atomic-fail-");

describe("writeFileAtomic under I/O failure", () => {
  for (const [call, op] of [
    ["writeSync", "write"],
    ["fsyncSync", "fsync"],
    ["renameSync", "rename into place"],
  ] as const) {
    it(`${call} failing: AGENTD_E_IO, old file intact, no temp file left`, () => {
      const dir = tmp();
      const p = join(dir, "state.json");
      writeFileSync(p, "old", { mode: 0o600 });
      failing.call = call;
      let caught: unknown;
      try {
        writeFileAtomic(p, "new".repeat(1000));
      } catch (err) {
        caught = err;
      }
      expect(failing.call).toBe(""); // the injection fired
      expect(isAgentdError(caught) && caught.code).toBe("AGENTD_E_IO");
      expect(isAgentdError(caught) && caught.context).toMatchObject({ path: p, op, errno: "EIO" });
      expect(readFileSync(p, "utf8")).toBe("old");
      expect(readdirSync(dir)).toEqual(["state.json"]);
    });
  }
});
