import { describe, expect, it } from "vitest";
import type { SchemaName } from "../../../control-plane/protocol/schemas/index.ts";
import { compileSchemas, matches, validate } from "../../../control-plane/protocol/validate.ts";
import { AgentdError } from "../../../lib/errors.ts";
import { API_KEY, EXAMPLES, JWK, TOKEN } from "./schemas-examples.ts";

/** validate(): typed results, precise and secret-free errors. */

function refusal(f: () => unknown): AgentdError {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) return err;
    throw err;
  }
  throw new Error("accepted");
}

describe("validate", () => {
  it("returns the value itself, typed, when it matches", () => {
    const body: unknown = JSON.parse(JSON.stringify(EXAMPLES["heartbeat-response"][0]));
    const typed = validate("heartbeat-response", body);
    expect(typed).toBe(body);
    expect(typed.counter).toBe(7);
    expect(matches("heartbeat-response", body)).toBe(true);
    expect(matches("heartbeat-response", { ...(body as object), counter: 0 })).toBe(false);
  });

  it("names schema, pointer and keyword, and a message that says what was expected", () => {
    const e = refusal(() =>
      validate("machine-register-request", {
        token: TOKEN,
        jwk: JWK,
        facts: { ...EXAMPLES["machine-register-request"][0]?.facts, boot_time: -1 },
      }),
    );
    expect(e.code).toBe("AGENTD_E_SCHEMA");
    expect(e.context).toEqual({
      schema: "machine-register-request",
      pointer: "/facts/boot_time",
      keyword: "minimum",
    });
    expect(e.message).toBe("machine-register-request: /facts/boot_time: must be at least 0");
    expect(e.exitCode).toBe(3);
  });

  it("points at the missing or unknown member itself", () => {
    const missing = refusal(() => validate("quarantine-request", {}));
    expect(missing.context.pointer).toBe("/reason");
    expect(missing.message).toBe("quarantine-request: /reason: missing required member");
    const unknown = refusal(() => validate("quarantine-request", { reason: "x", force: true }));
    expect(unknown.context).toMatchObject({ pointer: "/force", keyword: "additionalProperties" });
    const root = refusal(() => validate("quarantine-request", "x"));
    expect(root.message).toBe("quarantine-request: (root): must be of type object");
  });

  it("escapes member names in pointers (RFC 6901) and bounds and cleans them", () => {
    const slash = refusal(() => validate("quarantine-request", { reason: "x", "a/b~c": 1 }));
    expect(slash.context.pointer).toBe("/a~1b~0c");
    const long = refusal(() =>
      validate("quarantine-request", { reason: "x", ["n".repeat(500)]: 1 }),
    );
    expect(String(long.context.pointer).length).toBeLessThan(80);
    const forged = refusal(() =>
      validate("quarantine-request", { reason: "x", "a\nlevel=fatal": 1 }),
    );
    expect(forged.message).not.toContain("\n");
    expect(forged.context.pointer).toBe("/a?level=fatal");
  });

  it("never repeats the offending value, so a secret in the wrong place stays out of logs", () => {
    const cases: [SchemaName, unknown][] = [
      ["owner-create-request", { jwk: JWK, label: `${API_KEY}\u0000` }], // pattern
      ["enrollment-token-create-request", { ttl_s: API_KEY }], // type
      ["apikey-create-request", { role: API_KEY }], // enum
      ["attest-response", { ...EXAMPLES["attest-response"][0], token_type: API_KEY }], // const
      ["machine-register-request", { token: API_KEY.repeat(100), jwk: JWK }], // maxLength
    ];
    for (const [name, value] of cases) {
      const e = refusal(() => validate(name, value));
      expect(e.code).toBe("AGENTD_E_SCHEMA");
      expect(e.message).not.toContain(API_KEY.slice(-20));
      expect(JSON.stringify(e.context)).not.toContain(API_KEY.slice(-20));
    }
  });

  it("compiles every schema once; an unknown schema name is a bug, not bad input", () => {
    expect(() => compileSchemas()).not.toThrow();
    const e = refusal(() => validate("no-such-schema" as SchemaName, {}));
    expect(e.code).toBe("AGENTD_E_INTERNAL");
  });
});
