import { describe, expect, it } from "vitest";
import { isAgentdError } from "../../../lib/errors.ts";
import { parseQuery } from "../../../lib/http/query.ts";
import {
  decodeParams,
  type Method,
  Router,
  routeOrRefuse,
  splitTarget,
} from "../../../lib/http/router.ts";

const r = (method: Method, path: string) => ({ method, path, name: `${method} ${path}` });

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return isAgentdError(e) ? e.code : "not an AgentdError";
  }
  return undefined;
}

describe("router", () => {
  const router = new Router([
    r("GET", "/v1/workers/{id}/policy"),
    r("POST", "/v1/workers/{id}/heartbeat"),
    r("POST", "/v1/commands"),
    r("POST", "/v1/commands/{id}/result"),
    r("GET", "/v1/keys"),
    r("POST", "/v1/owners"),
    r("GET", "/healthz"),
  ]);

  it("matches templates exactly and returns raw parameters", () => {
    const m = router.match("GET", "/v1/workers/abc_DEF-1/policy");
    expect(m.kind).toBe("found");
    if (m.kind !== "found") return;
    expect(m.route.name).toBe("GET /v1/workers/{id}/policy");
    expect(m.rawParams).toEqual({ id: "abc_DEF-1" });
  });

  it("is 404 for trailing slashes, empty segments, case changes and encoded literals", () => {
    for (const p of [
      "/v1/keys/",
      "/v1//keys",
      "/V1/keys",
      "/v1/k%65ys",
      "/v1/workers//policy",
      "v1/keys",
      "/v1",
      "",
      `/${"a".repeat(5000)}`,
    ]) {
      expect(router.match("GET", p).kind, p).toBe("not_found");
    }
  });

  it("is 405 with the allowed methods when only the method differs", () => {
    const m = router.match("DELETE", "/v1/commands");
    expect(m).toEqual({ kind: "method_not_allowed", allow: ["POST"] });
    expect(router.match("OPTIONS", "/v1/keys")).toEqual({
      kind: "method_not_allowed",
      allow: ["GET"],
    });
    expect(router.match("OPTIONS", "/nowhere").kind).toBe("not_found");
  });

  it("refuses overlapping templates, duplicates and bad templates when built", () => {
    expect(codeOf(() => new Router([r("GET", "/v1/c/{id}"), r("POST", "/v1/c/new")]))).toBe(
      "AGENTD_E_INTERNAL",
    );
    expect(codeOf(() => new Router([r("GET", "/v1/c"), r("GET", "/v1/c")]))).toBe(
      "AGENTD_E_INTERNAL",
    );
    expect(codeOf(() => new Router([r("GET", "/v1/{a}/{a}")]))).toBe("AGENTD_E_INTERNAL");
    expect(codeOf(() => new Router([r("GET", "/v1/../x")]))).toBe("AGENTD_E_INTERNAL");
    expect(codeOf(() => new Router([r("GET", "v1/x")]))).toBe("AGENTD_E_INTERNAL");
    // Same shape, different methods: one template, two routes.
    expect(codeOf(() => new Router([r("GET", "/v1/c/{id}"), r("POST", "/v1/c/{id}")]))).toBe(
      undefined,
    );
  });

  it("decodes parameters and refuses dot segments, separators, bad encoding and long values", () => {
    expect(decodeParams({ id: "a%2Db" })).toEqual({ id: "a-b" });
    for (const bad of [
      "..",
      ".",
      "%2E%2E",
      "a%2Fb",
      "a%5Cb",
      "a%00",
      "%zz",
      "a b",
      "é",
      "x".repeat(129),
    ]) {
      expect(
        codeOf(() => decodeParams({ id: bad })),
        bad,
      ).toBe("AGENTD_E_SCHEMA");
    }
    expect(decodeParams({ id: "x".repeat(128) }).id).toHaveLength(128);
  });
});

describe("routeOrRefuse", () => {
  const router = new Router([
    r("GET", "/v1/status"),
    r("POST", "/v1/status"),
    r("GET", "/v1/x/{id}"),
  ]);
  const codes = {
    notFound: "AGENTD_E_API_NOT_FOUND",
    methodNotAllowed: "AGENTD_E_API_METHOD_NOT_ALLOWED",
  } as const;

  function refusal(method: string, path: string) {
    try {
      routeOrRefuse(router, method, path, codes);
    } catch (e) {
      return isAgentdError(e) ? { code: e.code, message: e.message, ...e.context } : e;
    }
    return undefined;
  }

  it("gives the route and its raw parameters", () => {
    const m = routeOrRefuse(router, "GET", "/v1/x/a%2Db", codes);
    expect([m.route.name, m.rawParams]).toEqual(["GET /v1/x/{id}", { id: "a%2Db" }]);
  });

  it("refuses with the server's codes: 404, and 405 with the methods there are", () => {
    expect(refusal("GET", "/v1/nothing")).toEqual({
      code: "AGENTD_E_API_NOT_FOUND",
      message: "no such endpoint",
    });
    expect(refusal("DELETE", "/v1/status")).toEqual({
      code: "AGENTD_E_API_METHOD_NOT_ALLOWED",
      message: "method DELETE is not allowed here",
      allow: "GET, POST",
    });
    // what the client typed is cut short in the message
    expect(refusal("X".repeat(100), "/v1/x/1")).toMatchObject({
      message: `method ${"X".repeat(16)} is not allowed here`,
    });
  });
});

describe("splitTarget", () => {
  it("splits at the first ?, keeping both parts raw", () => {
    expect(splitTarget("/v1/audit?n=5&x=%20")).toEqual({ path: "/v1/audit", search: "n=5&x=%20" });
    expect(splitTarget("/v1/a?b?c")).toEqual({ path: "/v1/a", search: "b?c" });
    expect(splitTarget("/v1/status")).toEqual({ path: "/v1/status", search: "" });
    expect(splitTarget("")).toEqual({ path: "", search: "" });
  });
});

describe("query", () => {
  it("parses the allowed keys, with + as space and percent-decoding", () => {
    expect(parseQuery("?cursor=a%2Bb&limit=10+2", ["cursor", "limit"])).toEqual({
      cursor: "a+b",
      limit: "10 2",
    });
    expect(parseQuery("", [])).toEqual({});
  });

  it("refuses a key given twice, unknown keys, bad encoding and oversized strings", () => {
    expect(codeOf(() => parseQuery("limit=1&limit=2", ["limit"]))).toBe("AGENTD_E_SCHEMA");
    // Duplicates after decoding count too.
    expect(codeOf(() => parseQuery("limit=1&%6Cimit=2", ["limit"]))).toBe("AGENTD_E_SCHEMA");
    expect(codeOf(() => parseQuery("other=1", ["limit"]))).toBe("AGENTD_E_SCHEMA");
    expect(codeOf(() => parseQuery("limit=%E0%A4%A", ["limit"]))).toBe("AGENTD_E_SCHEMA");
    expect(codeOf(() => parseQuery(`limit=${"1".repeat(3000)}`, ["limit"]))).toBe(
      "AGENTD_E_SCHEMA",
    );
    expect(codeOf(() => parseQuery("a&".repeat(40), ["a"]))).toBe("AGENTD_E_SCHEMA");
  });
});
