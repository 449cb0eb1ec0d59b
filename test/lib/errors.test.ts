import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  AgentdError,
  type AnyAgentdError,
  ERROR_CODES,
  EXIT_CODES,
  fail,
  isAgentdError,
  isErrorCode,
} from "../../lib/errors.ts";

const doc = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");

/** Rows of the table in docs/errors.md: | `CODE` | exit | meaning | action | */
function documentedCodes(): Map<string, { exit: number; meaning: string; action: string }> {
  const rows = new Map<string, { exit: number; meaning: string; action: string }>();
  for (const line of doc.split("\n")) {
    const m = /^\|\s*`(AGENTD_E_[A-Z0-9_]+)`\s*\|\s*(\d)\s*\|(.*)\|(.*)\|\s*$/.exec(line);
    if (!m) continue;
    const [, code, exit, meaning, action] = m as unknown as [
      string,
      string,
      string,
      string,
      string,
    ];
    expect(rows.has(code), `${code} documented twice`).toBe(false);
    rows.set(code, { exit: Number(exit), meaning: meaning.trim(), action: action.trim() });
  }
  return rows;
}

describe("error codes", () => {
  it("docs/errors.md documents exactly the codes in lib/errors.ts", () => {
    const documented = [...documentedCodes().keys()].sort();
    const defined = Object.keys(ERROR_CODES).sort();
    expect(documented).toEqual(defined);
  });

  it("every code mentioned anywhere in docs/errors.md exists", () => {
    for (const m of doc.matchAll(/AGENTD_E_[A-Z0-9_]+/g)) {
      expect(isErrorCode(m[0]), m[0]).toBe(true);
    }
  });

  it("each documented code has its exit code, a meaning and an action", () => {
    for (const [code, row] of documentedCodes()) {
      expect(isErrorCode(code)).toBe(true);
      if (!isErrorCode(code)) continue;
      expect(row.exit, code).toBe(EXIT_CODES[ERROR_CODES[code]]);
      expect(row.meaning.length, code).toBeGreaterThan(10);
      expect(row.action.length, code).toBeGreaterThan(5);
    }
  });

  it("carries code, context and cause, and narrows by code", () => {
    const cause = new Error("ENOSPC");
    const err: unknown = fail("AGENTD_E_IO", "disk full", { path: "/x" }, cause);
    expect(isAgentdError(err)).toBe(true);
    if (!isAgentdError(err)) return;
    const e: AnyAgentdError = err;
    expect(e.code).toBe("AGENTD_E_IO");
    expect(e.context).toEqual({ path: "/x" });
    expect(e.cause).toBe(cause);
    expect(e.exitCode).toBe(1);
    expect(Object.isFrozen(e.context)).toBe(true);
    expect(JSON.parse(JSON.stringify(e))).toEqual({
      code: "AGENTD_E_IO",
      message: "disk full",
      context: { path: "/x" },
    });
    expect(new AgentdError("AGENTD_E_CONFIG_TYPE", "x").exitCode).toBe(2);
    expect(new AgentdError("AGENTD_E_JWS_SIGNATURE", "x").exitCode).toBe(3);
    expect(isErrorCode("AGENTD_E_NOPE")).toBe(false);
  });

  it("types the facts callers read, per code (tsc checks the expectations below)", () => {
    const err: unknown = fail("AGENTD_E_IO", "missing", { errno: "ENOENT", path: "/p" });
    if (!isAgentdError(err) || err.code !== "AGENTD_E_IO") throw new Error("narrowing failed");
    const errno: string | undefined = err.context.errno;
    expect(errno).toBe("ENOENT");
    // @ts-expect-error an errno is a string: a number does not compile
    expect(fail("AGENTD_E_IO", "x", { errno: 2 }).context.errno).toBe(2);
    const cp = fail("AGENTD_E_CP_NOT_FOUND", "gone", { status: 404 });
    const status: number | undefined = cp.context.status;
    expect(status).toBe(404);
    // @ts-expect-error the status a client keeps is a number
    fail("AGENTD_E_CP_CONFLICT", "x", { status: "409" });
  });
});
