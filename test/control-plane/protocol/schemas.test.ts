import { Ajv2020 } from "ajv/dist/2020.js";
import { describe, expect, it } from "vitest";
import { SCHEMA_BASE } from "../../../control-plane/protocol/schemas/common.ts";
import {
  SCHEMA_NAMES,
  SCHEMAS,
  type SchemaName,
} from "../../../control-plane/protocol/schemas/index.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import { AgentdError } from "../../../lib/errors.ts";
import { EXAMPLES, HEX, OWNER, WORKER } from "./schemas-examples.ts";

/**
 * The wire schemas: they compile under strict Ajv, they are closed and bounded everywhere, the
 * examples pass, and every one-member change of every example (an unknown member, a missing
 * one, a wrong type, an overlong string, a huge number, an overlong array) is refused with
 * AGENTD_E_SCHEMA pointing at that member — without the offending value in the message.
 */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function refusal(f: () => unknown): AgentdError {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) return err;
    throw err;
  }
  throw new Error("accepted");
}

function expectRefused(
  name: SchemaName,
  value: unknown,
  pointer: string,
  keywords: readonly string[],
): AgentdError {
  let e: AgentdError;
  try {
    e = refusal(() => validate(name, value));
  } catch {
    throw new Error(`${name}: accepted a value wrong at ${pointer}`);
  }
  expect(e.code).toBe("AGENTD_E_SCHEMA");
  expect(e.context.schema).toBe(name);
  expect({ pointer: e.context.pointer, keyword: e.context.keyword }).toEqual({
    pointer,
    keyword: expect.toSatisfy((k: string) => keywords.includes(k)),
  });
  return e;
}

const clone = <T>(v: T): T => structuredClone(v);
const esc = (k: string) => k.replace(/~/g, "~0").replace(/\//g, "~1");

/** The JSON pointer tokens of every node of `v`, with the node. */
function* nodes(v: Json, path: string[] = []): Generator<[string[], Json]> {
  yield [path, v];
  if (Array.isArray(v)) {
    for (const [i, x] of v.entries()) yield* nodes(x, [...path, String(i)]);
  } else if (v !== null && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) yield* nodes(x, [...path, k]);
  }
}

/** A copy of `root` with the node at `path` replaced (or, with `undefined`, deleted). */
function replaced(root: Json, path: string[], value: Json | undefined): Json {
  const copy = clone(root);
  if (path.length === 0) return value as Json;
  let parent = copy as Record<string, Json> | Json[];
  for (const t of path.slice(0, -1)) parent = (parent as Record<string, Json>)[t] as never;
  const last = path[path.length - 1] as string;
  if (value === undefined) {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else {
    (parent as Record<string, Json>)[last] = value;
  }
  return copy;
}

const pointerOf = (path: string[]) => path.map((t) => `/${esc(t)}`).join("");
const SENTINEL = "S3CRET-VALUE-";

describe("wire schemas", () => {
  it("has one schema per name, with the matching $id, draft 2020-12, and an example", () => {
    expect(SCHEMA_NAMES.length).toBeGreaterThanOrEqual(45);
    for (const name of SCHEMA_NAMES) {
      expect(SCHEMAS[name].$id).toBe(`${SCHEMA_BASE}${name}.json`);
      expect(SCHEMAS[name].$schema).toBe("https://json-schema.org/draft/2020-12/schema");
      expect(EXAMPLES[name].length, name).toBeGreaterThan(0);
    }
  });

  it("every schema compiles on its own under strict Ajv (no unknown keyword, no loose type)", () => {
    for (const name of SCHEMA_NAMES) {
      const ajv = new Ajv2020({ strict: true, allowUnionTypes: true });
      expect(() => ajv.compile(SCHEMAS[name]), name).not.toThrow();
    }
    // And strict mode really is on: a typo in a keyword would not compile.
    const ajv = new Ajv2020({ strict: true });
    expect(() => ajv.compile({ type: "string", maxLenght: 3 })).toThrow(/unknown keyword/);
  });

  it("is closed and bounded everywhere: objects, strings, arrays, numbers", () => {
    const problems: string[] = [];
    const walk = (s: unknown, at: string): void => {
      if (Array.isArray(s)) {
        for (const [i, x] of s.entries()) walk(x, `${at}/${i}`);
        return;
      }
      if (s === null || typeof s !== "object") return;
      const o = s as Record<string, unknown>;
      const types = ([] as unknown[]).concat(o.type ?? []);
      if (types.includes("object")) {
        const map = o.propertyNames !== undefined && o.maxProperties !== undefined;
        // `args` of a command is closed per action by its if/then branch.
        const perAction = at.endsWith("/properties/args");
        if (o.additionalProperties !== false && !map && !perAction) problems.push(`${at} open`);
      }
      if (types.includes("string") && o.maxLength === undefined) problems.push(`${at} string`);
      if (types.includes("array") && o.maxItems === undefined) problems.push(`${at} array`);
      if ((types.includes("integer") || types.includes("number")) && o.maximum === undefined) {
        problems.push(`${at} number`);
      }
      for (const [k, v] of Object.entries(o)) walk(v, `${at}/${k}`);
    };
    for (const name of SCHEMA_NAMES) walk(SCHEMAS[name], name);
    expect(problems).toEqual([]);
  });

  it("accepts every example", () => {
    for (const name of SCHEMA_NAMES) {
      for (const example of EXAMPLES[name]) expect(validate(name, example)).toBe(example);
    }
  });

  it("refuses every one-member mutation of every example at that member", () => {
    let checked = 0;
    for (const name of SCHEMA_NAMES) {
      for (const example of EXAMPLES[name] as unknown as Json[]) {
        for (const [path, node] of nodes(example)) {
          const at = pointerOf(path);
          // An audit event's `data` holds any (bounded) JSON: any type is right there.
          const inMap = name === "audit-events-response" && path.includes("data");
          if (node !== null && typeof node === "object" && !Array.isArray(node)) {
            // An unknown member (for the audit data map: a name outside its pattern).
            if (!inMap) {
              const bad = replaced(example, [...path, "Extra-Member!"], 1);
              expectRefused(name, bad, `${at}/Extra-Member!`, ["additionalProperties"]);
            }
            // Each member removed: accepted if optional, else refused as missing at it.
            for (const k of Object.keys(node)) {
              const without = replaced(example, [...path, k], undefined);
              let e: AgentdError | undefined;
              try {
                validate(name, without);
              } catch (err) {
                e = err as AgentdError;
              }
              if (e !== undefined) {
                expect(e.context.keyword, `${name}${at}/${k}`).toBe("required");
                expect(e.context.pointer).toBe(`${at}/${esc(k)}`);
              }
            }
          } else if (Array.isArray(node)) {
            const first = node[0];
            if (first === undefined) continue;
            const long = Array.from({ length: 10_001 }, () => clone(first));
            expectRefused(name, replaced(example, path, long), at, ["maxItems"]);
          } else if (typeof node === "string") {
            const long = SENTINEL.repeat(8000);
            const e = expectRefused(name, replaced(example, path, long), at, [
              "maxLength",
              "const",
              "enum",
            ]);
            expect(e.message).not.toContain(SENTINEL);
            if (!inMap) {
              const typed = expectRefused(name, replaced(example, path, 12345), at, [
                "type",
                "const",
                "enum",
              ]);
              expect(typed.message).not.toContain("12345");
            }
          } else if (typeof node === "number") {
            expectRefused(name, replaced(example, path, 1e300), at, ["maximum", "const", "enum"]);
            if (!inMap) {
              const e = expectRefused(name, replaced(example, path, SENTINEL), at, [
                "type",
                "const",
                "enum",
              ]);
              expect(e.message).not.toContain(SENTINEL);
            }
          } else if (typeof node === "boolean" && !inMap) {
            expectRefused(name, replaced(example, path, "true"), at, ["type", "const"]);
          }
          checked++;
        }
        // The root must be an object.
        expectRefused(name, [example], "", ["type"]);
      }
    }
    expect(checked).toBeGreaterThan(400);
  });

  it("removing any top-level required member is refused at that member", () => {
    for (const name of SCHEMA_NAMES) {
      const required = (SCHEMAS[name].required ?? []) as string[];
      for (const example of EXAMPLES[name] as unknown as Record<string, Json>[]) {
        for (const k of required) {
          const { [k]: _, ...rest } = example;
          expectRefused(name, rest, `/${k}`, ["required"]);
        }
      }
    }
  });
});

describe("conditional rules", () => {
  const cmd = EXAMPLES.command[0] as unknown as Record<string, Json>;

  it("checks command args against the action", () => {
    expectRefused("command", { ...cmd, action: "service.start", args: {} }, "/args/service", [
      "required",
    ]);
    expectRefused(
      "command",
      { ...cmd, action: "mining.pause", args: { service: "bitcoind" } },
      "/args/service",
      ["additionalProperties"],
    );
    expectRefused(
      "command",
      { ...cmd, action: "service.stop", args: { service: "docker.io/evil:latest" } },
      "/args/service",
      ["enum"],
    );
    expectRefused("command", { ...cmd, action: "shell.exec", args: {} }, "/action", ["enum"]);
    expectRefused(
      "command-create-request",
      { worker: WORKER, action: "agent.update", args: { version: "1.0.0", image: "x" } },
      "/args/manifest_sha256",
      ["required"],
    );
    expectRefused(
      "command-create-request",
      { worker: WORKER, action: "mining.pause", args: {}, ttl_s: 5 },
      "/ttl_s",
      ["minimum"],
    );
  });

  it("keeps emergency-stop scopes apart", () => {
    expectRefused(
      "emergency-stop-request",
      { scope: "all", cohort: "hall-b", reason: "x" },
      "/cohort",
      ["false schema"],
    );
    expectRefused("emergency-stop-request", { scope: "cohort", reason: "x" }, "/cohort", [
      "required",
    ]);
    expectRefused("emergency-stop-request", { scope: "owner", reason: "x" }, "/scope", ["enum"]);
  });

  it("bounds the free-form audit data at every depth", () => {
    const page = EXAMPLES["audit-events-response"][0];
    const event = page?.events[0];
    const deep = { ...event, data: { a: { b: ["x".repeat(5000)] } } };
    expectRefused("audit-events-response", { ...page, events: [deep] }, "/events/0/data/a/b/0", [
      "maxLength",
    ]);
    const wide = {
      ...event,
      data: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, i])),
    };
    expectRefused("audit-events-response", { ...page, events: [wide] }, "/events/0/data", [
      "maxProperties",
    ]);
  });

  it("binds an owner API key to an owner, and only owner keys", () => {
    expectRefused("apikey-create-request", { role: "owner" }, "/owner", ["required"]);
    expectRefused("apikey-create-request", { role: "admin", owner: OWNER }, "/owner", [
      "false schema",
    ]);
  });

  it("sends the consent with a publication event, and only with it", () => {
    expectRefused(
      "stream-server-message",
      { type: "event", id: 1, kind: "publication", jws: EXAMPLES["keys-response"][0]?.keyset },
      "/consent",
      ["required"],
    );
    const jws = EXAMPLES["keys-response"][0]?.keyset;
    expectRefused(
      "worker-commands-response",
      { events: [{ id: 1, kind: "command", jws, consent: jws }], last_event_id: 1 },
      "/events/0/consent",
      ["false schema"],
    );
    expectRefused("stream-server-message", { type: "ready", last_event_id: 1, id: 2 }, "/id", [
      "false schema",
    ]);
    expectRefused("stream-server-message", { type: "event", last_event_id: 1 }, "/id", [
      "required",
    ]);
  });

  it("takes a heartbeat's upstream only as a known state, a short error label and a consent's URL", () => {
    const hb = EXAMPLES.heartbeat[2] as unknown as { telemetry: Record<string, Json> };
    const up = hb.telemetry.upstream as Record<string, Json>;
    const withUp = (over: Record<string, Json>) => ({
      ...hb,
      telemetry: { ...hb.telemetry, upstream: { ...up, ...over } },
    });
    // "idle" is said by null: no upstream is wanted.
    expectRefused("heartbeat", withUp({ state: "idle" }), "/telemetry/upstream/state", ["enum"]);
    expectRefused("heartbeat", withUp({ last_error: "" }), "/telemetry/upstream/last_error", [
      "minLength",
    ]);
    expectRefused(
      "heartbeat",
      withUp({ last_error: "connect ECONNREFUSED 127.0.0.1:1" }),
      "/telemetry/upstream/last_error",
      ["pattern"],
    );
    expectRefused(
      "heartbeat",
      withUp({ url: "http://pool.example:80" }),
      "/telemetry/upstream/url",
      ["pattern"],
    );
    expectRefused("heartbeat", withUp({ since: 1.5 }), "/telemetry/upstream/since", ["type"]);
  });

  it("accepts only canonical base64url and exact forms", () => {
    const hb = EXAMPLES.heartbeat[0] as unknown as Record<string, Json>;
    // 43 characters whose last one has non-zero unused bits: another spelling of 32 bytes.
    expectRefused("heartbeat", { ...hb, worker: `${WORKER.slice(0, 42)}B` }, "/worker", [
      "pattern",
    ]);
    expectRefused("heartbeat", { ...hb, audit_head: HEX.toUpperCase() }, "/audit_head", [
      "pattern",
    ]);
    expectRefused("heartbeat", { ...hb, counter: 0 }, "/counter", ["minimum"]);
    expectRefused("heartbeat", { ...hb, counter: 1.5 }, "/counter", ["type"]);
    expectRefused("heartbeat-request", { heartbeat: "a.b.c" }, "/heartbeat", ["minLength"]);
    expectRefused(
      "owner-create-request",
      { jwk: { kty: "OKP", crv: "Ed25519", x: "AAAA" } },
      "/jwk/x",
      ["minLength"],
    );
    expectRefused(
      "enrollment-token",
      { ...EXAMPLES["enrollment-token"][0], url: "https://cp.example/path" },
      "/url",
      ["pattern"],
    );
    expectRefused(
      "attest-response",
      { ...EXAMPLES["attest-response"][0], token_type: "Bearer" },
      "/token_type",
      ["const"],
    );
  });
});
