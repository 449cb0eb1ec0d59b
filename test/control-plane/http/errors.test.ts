import { describe, expect, it } from "vitest";
import { CODE_STATUS, errorResponse, statusForCode } from "../../../control-plane/http/errors.ts";
import { ERROR_CODES, type ErrorCode, fail } from "../../../lib/errors.ts";

describe("error mapping", () => {
  it("has an explicit status for every AGENTD_E_CP_* code in lib/errors.ts", () => {
    const cp = (Object.keys(ERROR_CODES) as ErrorCode[]).filter((c) =>
      c.startsWith("AGENTD_E_CP_"),
    );
    expect(cp.length).toBeGreaterThan(5);
    for (const code of cp) {
      const status = CODE_STATUS[code];
      expect(status, code).toBeDefined();
      expect(status as number, code).toBeGreaterThanOrEqual(400);
    }
  });

  it("maps the codes to the statuses of the design", () => {
    const expected: Partial<Record<ErrorCode, number>> = {
      AGENTD_E_SCHEMA: 400,
      AGENTD_E_JSON_DUPLICATE_KEY: 400,
      AGENTD_E_JSON_INVALID: 400,
      AGENTD_E_JWS_SIGNATURE: 400,
      AGENTD_E_CP_UNAUTHENTICATED: 401,
      AGENTD_E_CP_PROOF_INVALID: 401,
      AGENTD_E_CP_TOKEN_INVALID: 401,
      AGENTD_E_CP_FORBIDDEN: 403,
      AGENTD_E_CP_QUARANTINED: 403,
      AGENTD_E_CP_NOT_FOUND: 404,
      AGENTD_E_CP_CONFLICT: 409,
      AGENTD_E_CP_REPLAY: 409,
      AGENTD_E_CP_TOO_LARGE: 413,
      AGENTD_E_CP_RATE_LIMITED: 429,
      AGENTD_E_STORE: 503,
      AGENTD_E_IO: 500,
      AGENTD_E_INTERNAL: 500,
      AGENTD_E_KEY_INVALID: 500,
    };
    for (const [code, status] of Object.entries(expected)) {
      expect(statusForCode(code as ErrorCode), code).toBe(status);
    }
    expect(statusForCode("AGENTD_E_SCHEMA", { AGENTD_E_SCHEMA: 422 })).toBe(422);
  });

  it("gives client errors their code and message, and Retry-After / WWW-Authenticate", () => {
    const r = errorResponse(
      fail("AGENTD_E_CP_RATE_LIMITED", "slow down", { retry_after_s: 2.2 }),
      "rid",
    );
    expect(r.status).toBe(429);
    expect(r.headers["retry-after"]).toBe("3");
    expect(r.body).toEqual({ error: { code: "AGENTD_E_CP_RATE_LIMITED", message: "slow down" } });
    const u = errorResponse(fail("AGENTD_E_CP_UNAUTHENTICATED", "who?"), "rid");
    expect(u.headers["www-authenticate"]).toMatch(/Bearer/);
  });

  it("never shows an internal message, context or cause", () => {
    const secretish = "SELECT * FROM api_keys at /var/lib/agentd/cp.sqlite";
    for (const err of [
      new Error(secretish),
      fail("AGENTD_E_IO", secretish, { path: "/var/lib/agentd" }),
      fail("AGENTD_E_STORE", secretish),
      "a thrown string",
      undefined,
    ]) {
      const r = errorResponse(err, "req-1");
      const text = JSON.stringify(r);
      expect(text).not.toContain("SELECT");
      expect(text).not.toContain("/var/lib");
      expect(r.status).toBeGreaterThanOrEqual(500);
      expect(["AGENTD_E_INTERNAL", "AGENTD_E_STORE"]).toContain(r.body.error.code);
      expect(r.body.error.message).toContain("req-1");
    }
    expect(errorResponse(fail("AGENTD_E_STORE", "x"), "r").status).toBe(503);
  });

  it("takes the status from the code alone: 405 and 415 have their own codes", () => {
    const r405 = errorResponse(
      fail("AGENTD_E_CP_METHOD_NOT_ALLOWED", "m", { allow: "GET, POST" }),
      "r",
    );
    expect([r405.status, r405.headers.allow]).toEqual([405, "GET, POST"]);
    expect(errorResponse(fail("AGENTD_E_CP_UNSUPPORTED_MEDIA", "m"), "r").status).toBe(415);
    // A status in the context is not honoured: it cannot make an internal error speak.
    const sneaky = errorResponse(fail("AGENTD_E_IO", "secret", { http_status: 400 }), "r");
    expect(sneaky.status).toBe(500);
    expect(sneaky.body.error.message).not.toContain("secret");
  });
});
