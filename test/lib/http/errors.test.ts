import { describe, expect, it } from "vitest";
import { ERROR_CODES, type ErrorCode, fail } from "../../../lib/errors.ts";
import {
  CODE_STATUS,
  errorResponse,
  statusForCode,
  TRANSIENT_IO_STATUS,
} from "../../../lib/http/errors.ts";

const ALL = Object.keys(ERROR_CODES) as ErrorCode[];

describe("the error → status table", () => {
  it("has an explicit row for every code in lib/errors.ts, and no other", () => {
    expect(ALL.length).toBeGreaterThan(50);
    for (const code of ALL) {
      const status = CODE_STATUS[code];
      expect(status, code).toBeDefined();
      expect([400, 401, 403, 404, 405, 409, 413, 415, 429, 500, 502, 503, 504], code).toContain(
        status,
      );
    }
    expect(Object.keys(CODE_STATUS).sort()).toEqual([...ALL].sort());
  });

  it("gives every code of an API a client status, never 500", () => {
    const apis = ALL.filter((c) => c.startsWith("AGENTD_E_CP_") || c.startsWith("AGENTD_E_API_"));
    expect(apis.length).toBeGreaterThan(15);
    for (const code of apis) expect(statusForCode(code), code).toBeLessThan(500);
  });

  it("maps the control plane's codes to the statuses of its design", () => {
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
      AGENTD_E_CP_METHOD_NOT_ALLOWED: 405,
      AGENTD_E_CP_CONFLICT: 409,
      AGENTD_E_CP_REPLAY: 409,
      AGENTD_E_CP_TOO_LARGE: 413,
      AGENTD_E_CP_UNSUPPORTED_MEDIA: 415,
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

  it("maps the local API's codes to its statuses, its disk failing being 503", () => {
    const expected: Partial<Record<ErrorCode, number>> = {
      AGENTD_E_USAGE: 400,
      AGENTD_E_SCHEMA: 400,
      AGENTD_E_JSON_INVALID: 400,
      AGENTD_E_JSON_DUPLICATE_KEY: 400,
      AGENTD_E_JSON_INTEGER_RANGE: 400,
      AGENTD_E_API_TOO_LARGE: 413,
      AGENTD_E_API_UNAUTHENTICATED: 401,
      AGENTD_E_API_FORBIDDEN: 403,
      AGENTD_E_API_NOT_FOUND: 404,
      AGENTD_E_API_METHOD_NOT_ALLOWED: 405,
      AGENTD_E_API_RATE_LIMITED: 429,
      AGENTD_E_IO: 503,
      AGENTD_E_INTERNAL: 500,
    };
    for (const [code, status] of Object.entries(expected)) {
      expect(statusForCode(code as ErrorCode, TRANSIENT_IO_STATUS), code).toBe(status);
    }
  });
});

describe("errorResponse", () => {
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
    const own = errorResponse(fail("AGENTD_E_API_UNAUTHENTICATED", "who?"), "rid", {
      wwwAuthenticate: 'Custom realm="x"',
    });
    expect([own.status, own.headers["www-authenticate"]]).toEqual([401, 'Custom realm="x"']);
  });

  it("never shows an internal message, context or cause", () => {
    const secretish = "SELECT * FROM api_keys at /var/lib/agentd/cp.sqlite";
    for (const overrides of [{}, TRANSIENT_IO_STATUS]) {
      for (const err of [
        new Error(secretish),
        fail("AGENTD_E_IO", secretish, { path: "/var/lib/agentd" }),
        fail("AGENTD_E_STORE", secretish),
        fail("AGENTD_E_FILE_CORRUPT", secretish),
        "a thrown string",
        undefined,
      ]) {
        const r = errorResponse(err, "req-1", { overrides });
        const text = JSON.stringify(r);
        expect(text).not.toContain("SELECT");
        expect(text).not.toContain("/var/lib");
        expect(r.status).toBeGreaterThanOrEqual(500);
        expect(r.body.error.message).toContain("req-1");
      }
    }
    for (const err of [fail("AGENTD_E_IO", "x"), new Error("x")]) {
      expect(["AGENTD_E_INTERNAL", "AGENTD_E_STORE"]).toContain(
        errorResponse(err, "r").body.error.code,
      );
    }
    expect(errorResponse(fail("AGENTD_E_STORE", "x"), "r").status).toBe(503);
  });

  it("keeps the code of a 503, which a client may retry on", () => {
    const store = errorResponse(fail("AGENTD_E_STORE", "x"), "r");
    expect([store.status, store.code, store.headers["retry-after"]]).toEqual([
      503,
      "AGENTD_E_STORE",
      "1",
    ]);
    const disk = errorResponse(fail("AGENTD_E_IO", "ENOSPC /var/lib/agentd/audit.jsonl"), "r", {
      overrides: TRANSIENT_IO_STATUS,
    });
    expect([disk.status, disk.body.error.code, disk.headers["retry-after"]]).toEqual([
      503,
      "AGENTD_E_IO",
      "1",
    ]);
    expect(disk.body.error.message).not.toContain("audit");
    const bug = errorResponse(fail("AGENTD_E_FILE_CORRUPT", "x"), "r");
    expect([bug.status, bug.body.error.code, bug.headers["retry-after"]]).toEqual([
      500,
      "AGENTD_E_INTERNAL",
      undefined,
    ]);
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
