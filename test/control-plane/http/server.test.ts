import { Agent, request } from "node:https";
import { connect } from "node:tls";
import { describe, expect, it } from "vitest";
import type { CallerKind } from "../../../control-plane/http/auth.ts";
import {
  conditionalJson,
  etagOf,
  ifNoneMatchHits,
} from "../../../control-plane/http/conditional.ts";
import { longPoll, preferWait } from "../../../control-plane/http/long-poll.ts";
import { createHttpMetrics } from "../../../control-plane/http/metrics.ts";
import { KeyedNotifier } from "../../../control-plane/http/notifier.ts";
import { defineRoute, type Route } from "../../../control-plane/http/route.ts";
import type { ApiServerOptions } from "../../../control-plane/http/server.ts";
import { fixedClock } from "../../../lib/clock.ts";
import { fail } from "../../../lib/errors.ts";
import { Registry } from "../../../lib/metrics/registry.ts";
import {
  call,
  captureLogger,
  errorCode,
  fakeMachineAuth,
  machineHeaders,
  makeApiKeys,
  manualTimers,
  type Reply,
  until,
  useServers,
  useTestCert,
} from "./helpers.ts";

const cert = useTestCert();
const start = useServers();

/** A toy API: enough routes to exercise every step of the pipeline. */
function toyApi() {
  const ran: string[] = [];
  const notifier = new KeyedNotifier();
  const timers = manualTimers();
  let policy: { version: number } = { version: 1 };
  const ok = (name: string) => async () => {
    ran.push(name);
    return { status: 200, body: { ok: name } };
  };
  const routes: Route[] = [
    { method: "GET", path: "/healthz", auth: ["public"], handler: ok("healthz") },
    defineRoute({
      method: "POST",
      path: "/v1/owners",
      auth: ["admin"],
      body: {
        validate: (v: unknown) => {
          const o = v as { pub?: unknown };
          if (typeof o !== "object" || o === null || typeof o.pub !== "string") {
            throw fail("AGENTD_E_SCHEMA", "pub must be a string", {
              schema: "owner",
              pointer: "/pub",
            });
          }
          return { pub: o.pub };
        },
      },
      handler: async (ctx) => {
        ran.push(`owners ${ctx.body.pub}`);
        return { status: 201, body: { id: ctx.body.pub } };
      },
    }),
    {
      method: "POST",
      path: "/v1/commands",
      auth: ["operator"],
      body: { limit: 1024 },
      handler: ok("commands"),
    },
    {
      method: "GET",
      path: "/v1/audit/events",
      auth: ["admin", "auditor"],
      query: ["cursor", "limit"],
      handler: async (ctx) => {
        ran.push("audit");
        return { status: 200, body: { query: { ...ctx.query } } };
      },
    },
    {
      method: "POST",
      path: "/v1/machines/register",
      auth: ["token"],
      body: {},
      handler: ok("register"),
    },
    {
      method: "GET",
      path: "/v1/workers/{id}/policy",
      auth: ["machine", "owner", "admin"],
      machineParam: "id",
      handler: async (ctx) => {
        ran.push(`policy ${ctx.params.id}`);
        const known = ctx.req.headers["if-none-match"];
        const result = await longPoll({
          key: ctx.params.id as string,
          notifier,
          waitSeconds: preferWait(ctx.req.headers.prefer),
          signal: ctx.signal,
          timers: timers.timers,
          check: async () => (ifNoneMatchHits(known, etagOf(policy)) ? undefined : policy),
        });
        if (result === undefined) return { status: 304, headers: { etag: etagOf(policy) } };
        return conditionalJson(ctx.req, result);
      },
    },
    defineRoute({
      method: "POST",
      path: "/v1/workers/{id}/heartbeat",
      auth: ["machine", "owner"],
      machineParam: "id",
      authorize: async (ctx) => {
        ran.push(`authorize ${ctx.params.id}`);
        if (ctx.caller.kind === "owner" && ctx.params.id !== "w1") {
          throw fail("AGENTD_E_CP_FORBIDDEN", "not your worker");
        }
      },
      body: {
        validate: (v: unknown) => {
          ran.push("validate");
          const o = v as { counter?: unknown };
          if (typeof o?.counter !== "number") {
            throw fail("AGENTD_E_SCHEMA", "counter", { schema: "hb", pointer: "/counter" });
          }
          return { counter: o.counter };
        },
      },
      handler: async (ctx) => {
        ran.push(`heartbeat ${ctx.body.counter}`);
        return { status: 200, body: {} };
      },
    }),
    {
      method: "GET",
      path: "/v1/whoami",
      auth: ["admin", "operator", "owner", "auditor", "machine"],
      handler: async (ctx) => ({
        status: 200,
        body: { caller: ctx.caller, url: ctx.requestUrl },
        headers: { "Access-Control-Allow-Origin": "*" },
      }),
    },
    {
      method: "GET",
      path: "/boom",
      auth: ["public"],
      handler: async () => {
        throw new Error("SELECT secret FROM api_keys in /var/lib/agentd/cp.sqlite");
      },
    },
  ];
  return {
    routes,
    ran,
    notifier,
    timers,
    publish(version: number) {
      policy = { version };
      notifier.notify("w1");
    },
  };
}

function setup(extra: Partial<ApiServerOptions> = {}) {
  const api = toyApi();
  const keys = makeApiKeys();
  const machine = fakeMachineAuth();
  const log = captureLogger();
  const registry = new Registry();
  const options: ApiServerOptions = {
    routes: api.routes,
    tls: cert(),
    findApiKey: keys.findApiKey,
    authenticateMachine: machine.authenticateMachine,
    logger: log.logger,
    metrics: createHttpMetrics(registry),
    ...extra,
  };
  return { api, keys, machine, log, registry, options };
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const json = { "content-type": "application/json" };

function expectNoCors(r: Reply): void {
  for (const name of Object.keys(r.headers)) expect(name).not.toMatch(/^access-control-/);
}

describe("routing, headers and CORS", () => {
  it("answers 404 for unknown paths and 405 with Allow for other methods", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    const missing = await call(port, c, { path: "/v1/nothing" });
    expect(missing.status).toBe(404);
    expect(errorCode(missing)).toBe("AGENTD_E_CP_NOT_FOUND");
    const wrong = await call(port, c, {
      method: "DELETE",
      path: "/v1/owners",
      headers: bearer(s.keys.keys.admin),
    });
    expect([wrong.status, errorCode(wrong)]).toEqual([405, "AGENTD_E_CP_METHOD_NOT_ALLOWED"]);
    expect(wrong.headers.allow).toBe("POST");
    expect(s.api.ran).toEqual([]);
  });

  it("never sends CORS headers and does not honour a preflight", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    const preflight = {
      origin: "https://evil.example",
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization",
    };
    const known = await call(port, c, {
      method: "OPTIONS",
      path: "/v1/owners",
      headers: preflight,
    });
    const unknown = await call(port, c, { method: "OPTIONS", path: "/v1/x", headers: preflight });
    expect(known.status).toBe(405);
    expect(unknown.status).toBe(404);
    // A handler that tries to add one does not get it through either.
    const who = await call(port, c, {
      path: "/v1/whoami",
      headers: { ...bearer(s.keys.keys.admin), origin: "https://evil.example" },
    });
    expect(who.status).toBe(200);
    for (const r of [known, unknown, who]) {
      expectNoCors(r);
      expect(r.headers["cache-control"]).toBe("no-store");
      expect(r.headers["x-content-type-options"]).toBe("nosniff");
      expect(r.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    }
    expect(known.headers["x-request-id"]).not.toBe(unknown.headers["x-request-id"]);
  });

  it("gives handlers the absolute https URL the client used", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const r = await call(port, cert().cert, {
      path: "/v1/whoami",
      headers: bearer(s.keys.keys.auditor),
    });
    expect(r.json).toEqual({
      caller: { kind: "auditor", keyId: "key-auditor" },
      url: `https://127.0.0.1:${port}/v1/whoami`,
    });
  });

  it("refuses TLS 1.2 clients and speaks TLS 1.3", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const old = await new Promise<string>((resolve) => {
      const sock = connect({ host: "127.0.0.1", port, ca: cert().cert, maxVersion: "TLSv1.2" });
      sock.once("secureConnect", () => {
        sock.destroy();
        resolve("connected");
      });
      sock.once("error", (e: NodeJS.ErrnoException) => resolve(`error ${e.code ?? e.message}`));
    });
    expect(old).toMatch(/^error /);
    const modern = await new Promise<string | null>((resolve, reject) => {
      const sock = connect({ host: "127.0.0.1", port, ca: cert().cert });
      sock.once("secureConnect", () => {
        const v = sock.getProtocol();
        sock.destroy();
        resolve(v);
      });
      sock.once("error", reject);
    });
    expect(modern).toBe("TLSv1.3");
  });
});

describe("bodies", () => {
  it("refuses a declared oversized body with 413 before reading it; the handler never runs", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const reply = await new Promise<Reply>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port,
          method: "POST",
          path: "/v1/commands",
          ca: cert().cert,
          agent: false,
          headers: {
            ...bearer(s.keys.keys.operator),
            ...json,
            "content-length": String(10 * 1024 * 1024),
          },
        },
        (res) => {
          let text = "";
          res.on("data", (d: Buffer) => {
            text += d;
          });
          res.on("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              text,
              json: JSON.parse(text),
            }),
          );
        },
      );
      req.on("error", reject);
      req.write("{"); // and never the rest
    });
    expect(reply.status).toBe(413);
    expect(errorCode(reply)).toBe("AGENTD_E_CP_TOO_LARGE");
    expect(reply.headers.connection).toBe("close");
    expect(s.api.ran).toEqual([]);
  });

  it("stops a chunked body at the limit with 413", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const r = await call(port, cert().cert, {
      method: "POST",
      path: "/v1/commands",
      headers: { ...bearer(s.keys.keys.operator), ...json, "transfer-encoding": "chunked" },
      body: `{"a":"${"x".repeat(2000)}"}`,
    });
    expect(r.status).toBe(413);
    expect(s.api.ran).toEqual([]);
    // Exactly at the limit is fine.
    const atLimit = `{"a":"${"x".repeat(1024 - 8)}"}`;
    expect(Buffer.byteLength(atLimit)).toBe(1024);
    const ok = await call(port, cert().cert, {
      method: "POST",
      path: "/v1/commands",
      headers: { ...bearer(s.keys.keys.operator), ...json },
      body: atLimit,
    });
    expect(ok.status).toBe(200);
  });

  it("refuses a body on a route that takes none", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const r = await call(port, cert().cert, {
      path: "/v1/audit/events",
      // Node sends a GET body only with an explicit length.
      headers: { ...bearer(s.keys.keys.auditor), ...json, "content-length": "2" },
      body: "{}",
    });
    expect([r.status, errorCode(r)]).toEqual([413, "AGENTD_E_CP_TOO_LARGE"]);
    expect(s.api.ran).toEqual([]);
  });

  it("refuses bad JSON, duplicate members, other content types, empty and non-UTF-8 bodies", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const post = (body: string | Buffer, headers: Record<string, string> = json) =>
      call(port, cert().cert, {
        method: "POST",
        path: "/v1/owners",
        headers: { ...bearer(s.keys.keys.admin), ...headers },
        body,
      });
    const cases: [Reply, number, string][] = [
      [await post('{"pub":"a",}'), 400, "AGENTD_E_JSON_INVALID"],
      [await post('{"pub":"a","pub":"b"}'), 400, "AGENTD_E_JSON_DUPLICATE_KEY"],
      [await post('{"pub":1e400}'), 400, "AGENTD_E_JSON_INTEGER_RANGE"],
      [await post(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d])), 400, "AGENTD_E_JSON_INVALID"],
      [
        await post('{"pub":"a"}', { "content-type": "text/plain" }),
        415,
        "AGENTD_E_CP_UNSUPPORTED_MEDIA",
      ],
      [
        await post('{"pub":"a"}', { ...json, "content-encoding": "gzip" }),
        415,
        "AGENTD_E_CP_UNSUPPORTED_MEDIA",
      ],
      [await post(""), 400, "AGENTD_E_SCHEMA"],
      [await post('{"pub":7}'), 400, "AGENTD_E_SCHEMA"],
    ];
    for (const [r, status, code] of cases) {
      expect([r.status, errorCode(r)]).toEqual([status, code]);
    }
    expect(s.api.ran).toEqual([]);
    const good = await post('{"pub":"k1"}', { "content-type": "application/json; charset=UTF-8" });
    expect(good.status).toBe(201);
    expect(s.api.ran).toEqual(["owners k1"]);
  });
});

describe("authentication and roles", () => {
  it("checks credentials before the body: 401 and 403 come before 400 and 413", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    const bad = '{"pub":1,"pub":2';
    const none = await call(port, c, {
      method: "POST",
      path: "/v1/owners",
      headers: json,
      body: bad,
    });
    expect(none.status).toBe(401);
    expect(errorCode(none)).toBe("AGENTD_E_CP_UNAUTHENTICATED");
    expect(none.headers["www-authenticate"]).toMatch(/Bearer/);
    const wrongRole = await call(port, c, {
      method: "POST",
      path: "/v1/owners",
      headers: { ...json, ...bearer(s.keys.keys.operator) },
      body: bad,
    });
    expect(wrongRole.status).toBe(403);
    expect(errorCode(wrongRole)).toBe("AGENTD_E_CP_FORBIDDEN");
    const huge = await call(port, c, {
      method: "POST",
      path: "/v1/owners",
      headers: { ...json, "content-length": "99999999" },
      body: "",
    }).catch((e: Error) => e);
    // Refused as 401 without reading the body (the connection is then closed).
    expect(huge instanceof Error ? huge.message : (huge as Reply).status).toBe(401);
    const badQuery = await call(port, c, { path: "/v1/audit/events?x=1&x=2" });
    expect(badQuery.status).toBe(401);
    expect(s.api.ran).toEqual([]);
  });

  it("runs the route's authorize step before the body: another owner's worker is 403, not 400", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    const post = (worker: string, body: string) =>
      call(port, c, {
        method: "POST",
        path: `/v1/workers/${worker}/heartbeat`,
        headers: { ...bearer(s.keys.keys.owner), ...json },
        body,
      });
    const other = await post("w2", '{"counter":"not a number"');
    expect([other.status, errorCode(other)]).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
    expect(s.api.ran).toEqual(["authorize w2"]);
    const own = await post("w1", '{"counter":"x"}');
    expect([own.status, errorCode(own)]).toEqual([400, "AGENTD_E_SCHEMA"]);
    expect(s.api.ran).toEqual(["authorize w2", "authorize w1", "validate"]);
  });

  it("refuses unknown, malformed, mis-spelled and duplicated credentials with 401", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    const admin = s.keys.keys.admin;
    const forged = `agentd_admin_${"A".repeat(43)}`;
    const relabelled = admin.replace("agentd_admin_", "agentd_owner_");
    for (const authorization of [
      `Bearer ${forged}`,
      `Bearer ${relabelled}`,
      "Bearer",
      `Basic ${Buffer.from("a:b").toString("base64")}`,
      `Bearer ${admin} extra`,
      "AgentD not a token",
    ]) {
      const r = await call(port, c, { path: "/v1/audit/events", headers: { authorization } });
      expect([authorization, r.status]).toEqual([authorization, 401]);
    }
    // Two Authorization headers: refused rather than picking one.
    const twice = await call(port, c, {
      path: "/v1/audit/events",
      headers: { authorization: [`Bearer ${admin}`, `Bearer ${admin}`] } as unknown as Record<
        string,
        string
      >,
    });
    expect(twice.status).toBe(401);
    expect(s.api.ran).toEqual([]);
  });

  it("walks the role matrix of the toy API: allowed → handler, other role → 403, nobody → 401", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    const callers: Record<string, Record<string, string>> = {
      nobody: {},
      admin: bearer(s.keys.keys.admin),
      operator: bearer(s.keys.keys.operator),
      owner: bearer(s.keys.keys.owner),
      auditor: bearer(s.keys.keys.auditor),
      machine: machineHeaders("w1"),
    };
    const bodies: Record<string, string> = {
      "/v1/owners": '{"pub":"p"}',
      "/v1/workers/{id}/heartbeat": '{"counter":1}',
    };
    let cells = 0;
    for (const route of s.api.routes.filter((r) => r.path !== "/boom")) {
      const path = route.path.replace("{id}", "w1");
      for (const [who, headers] of Object.entries(callers)) {
        const body = route.method === "POST" ? (bodies[route.path] ?? "{}") : undefined;
        const r = await call(port, c, {
          method: route.method,
          path,
          headers: body === undefined ? headers : { ...headers, ...json },
          ...(body === undefined ? {} : { body }),
        });
        const open = route.auth.includes("public") || route.auth.includes("token");
        const expected =
          open || route.auth.includes(who as CallerKind) ? "ok" : who === "nobody" ? 401 : 403;
        const got = r.status < 300 ? "ok" : r.status;
        expect(`${route.method} ${route.path} as ${who}: ${got}`).toBe(
          `${route.method} ${route.path} as ${who}: ${expected}`,
        );
        cells++;
      }
    }
    expect(cells).toBe(8 * 6);
  });

  it("authenticates machines with token and proof over the URL used, and binds them to their worker", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    const own = await call(port, c, {
      path: "/v1/workers/w1/policy",
      headers: machineHeaders("w1"),
    });
    expect(own.status).toBe(200);
    // `req` too: the request itself, for what the authenticator reads to be reused.
    expect(s.machine.calls.at(-1)?.req.url).toBe("/v1/workers/w1/policy");
    expect({ ...s.machine.calls.at(-1), req: undefined }).toEqual({
      req: undefined,
      accessToken: "tok-w1",
      proof: "proof-ok",
      method: "GET",
      url: `https://127.0.0.1:${port}/v1/workers/w1/policy`,
    });
    const other = await call(port, c, {
      path: "/v1/workers/w2/policy",
      headers: machineHeaders("w1"),
    });
    expect([other.status, errorCode(other)]).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
    const noProof = await call(port, c, {
      path: "/v1/workers/w1/policy",
      headers: { authorization: "AgentD tok-w1" },
    });
    expect([noProof.status, errorCode(noProof)]).toEqual([401, "AGENTD_E_CP_PROOF_INVALID"]);
    const garbage = await call(port, c, {
      path: "/v1/workers/w1/policy",
      headers: { authorization: "AgentD tok-w1", "agentd-proof": "jws-garbage" },
    });
    expect([garbage.status, errorCode(garbage)]).toEqual([401, "AGENTD_E_CP_PROOF_INVALID"]);
    const machineOnAdmin = await call(port, c, {
      path: "/v1/audit/events",
      headers: machineHeaders("w1"),
    });
    expect(machineOnAdmin.status).toBe(403);
  });

  it("answers 100-continue only to an authenticated caller", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const attempt = (headers: Record<string, string>) =>
      new Promise<{ continued: boolean; status: number }>((resolve, reject) => {
        let continued = false;
        const req = request({
          host: "127.0.0.1",
          port,
          method: "POST",
          path: "/v1/owners",
          ca: cert().cert,
          agent: false,
          headers: { ...headers, ...json, expect: "100-continue", "content-length": "12" },
        });
        req.on("continue", () => {
          continued = true;
          req.end('{"pub":"k2"}');
        });
        req.on("response", (res) => {
          res.resume();
          res.on("end", () => resolve({ continued, status: res.statusCode ?? 0 }));
        });
        req.on("error", reject);
        req.flushHeaders();
      });
    expect(await attempt({})).toEqual({ continued: false, status: 401 });
    expect(await attempt(bearer(s.keys.keys.admin))).toEqual({ continued: true, status: 201 });
  });
});

describe("rate limits", () => {
  it("limits per caller with Retry-After; other callers are unaffected; the clock refills", async () => {
    const clock = fixedClock(1_700_000_000_000);
    const s = setup({ clock, rateLimits: { perCaller: { ratePerSecond: 0.5, burst: 2 } } });
    const { port } = await start(s.options);
    const c = cert().cert;
    const get = (key: string) => call(port, c, { path: "/v1/audit/events", headers: bearer(key) });
    expect((await get(s.keys.keys.admin)).status).toBe(200);
    expect((await get(s.keys.keys.admin)).status).toBe(200);
    const limited = await get(s.keys.keys.admin);
    expect([limited.status, errorCode(limited), limited.headers["retry-after"]]).toEqual([
      429,
      "AGENTD_E_CP_RATE_LIMITED",
      "2",
    ]);
    expect((await get(s.keys.keys.auditor)).status).toBe(200);
    clock.advance(2000);
    expect((await get(s.keys.keys.admin)).status).toBe(200);
  });

  it("limits per client address before authentication", async () => {
    const clock = fixedClock(1_700_000_000_000);
    const s = setup({ clock, rateLimits: { perIp: { ratePerSecond: 1, burst: 3 } } });
    const { port } = await start(s.options);
    const c = cert().cert;
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++)
      statuses.push((await call(port, c, { path: "/v1/audit/events" })).status);
    const limited = await call(port, c, {
      path: "/v1/audit/events",
      headers: bearer(s.keys.keys.admin),
    });
    statuses.push(limited.status);
    expect(statuses).toEqual([401, 401, 401, 429]);
    expect(limited.headers["retry-after"]).toBe("1");
    // The limited request never reached the key lookup.
    expect(s.keys.lookups).toEqual([]);
    clock.advance(1000);
    expect((await call(port, c, { path: "/healthz" })).status).toBe(200);
  });
});

describe("errors, logs and metrics", () => {
  it("answers a failing handler with 500 AGENTD_E_INTERNAL and no internals; the log has them", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const r = await call(port, cert().cert, { path: "/boom" });
    expect(r.status).toBe(500);
    expect(errorCode(r)).toBe("AGENTD_E_INTERNAL");
    expect(r.text).not.toMatch(/SELECT|api_keys|var\/lib|at .*\.ts/);
    expect(r.text).toContain(String(r.headers["x-request-id"]));
    expect(s.log.lines.join("")).toContain("SELECT secret");
  });

  it("logs one line per request, without credentials, proofs, queries or bodies", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    await call(port, c, {
      method: "POST",
      path: "/v1/owners",
      headers: { ...bearer(s.keys.keys.admin), ...json },
      body: '{"pub":"BODY-MARKER"}',
    });
    await call(port, c, { path: "/v1/workers/w1/policy", headers: machineHeaders("w1") });
    await call(port, c, {
      path: "/v1/audit/events?cursor=QUERY-MARKER",
      headers: bearer(s.keys.keys.auditor),
    });
    await until(
      () => s.log.lines.filter((l) => l.includes('"http request"')).length === 3,
      "3 log lines",
    );
    const lines = s.log.lines.filter((l) => l.includes('"http request"')).map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.route, l.status, l.caller])).toEqual([
      ["/v1/owners", 201, "admin:key-admin"],
      ["/v1/workers/{id}/policy", 200, "machine:w1"],
      ["/v1/audit/events", 200, "auditor:key-auditor"],
    ]);
    const all = s.log.lines.join("\n");
    for (const secret of [
      s.keys.keys.admin,
      s.keys.keys.auditor,
      "tok-w1",
      "proof-ok",
      "BODY-MARKER",
      "QUERY-MARKER",
    ]) {
      expect(all).not.toContain(secret);
    }
  });

  it("counts requests by route template, never by raw path or arbitrary method", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    await call(port, c, { path: "/v1/workers/w1/policy", headers: machineHeaders("w1") });
    await call(port, c, { path: "/v1/workers/w9/policy", headers: machineHeaders("w9") });
    await call(port, c, { path: "/random/path/abc" });
    await call(port, c, { method: "PROPFIND", path: "/v1/keys" });
    await until(() => s.registry.render().includes('status="404"'), "404 counted");
    const text = s.registry.render();
    expect(text).toContain(
      'agentd_cp_http_requests_total{route="/v1/workers/{id}/policy",method="GET",status="200"} 2',
    );
    expect(text).toContain('route="_unmatched",method="_other"');
    expect(text).not.toContain("w9");
    expect(text).not.toContain("random");
    expect(text).toContain("agentd_cp_http_request_duration_seconds_bucket");
  });
});

describe("conditional requests and long polls", () => {
  it("returns an ETag and 304 when If-None-Match has it", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    const first = await call(port, c, {
      path: "/v1/workers/w1/policy",
      headers: machineHeaders("w1"),
    });
    expect(first.status).toBe(200);
    expect(first.json).toEqual({ version: 1 });
    const etag = String(first.headers.etag);
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    const again = await call(port, c, {
      path: "/v1/workers/w1/policy",
      headers: { ...machineHeaders("w1"), "if-none-match": etag },
    });
    expect([again.status, again.text, again.headers.etag]).toEqual([304, "", etag]);
    expect(again.headers["cache-control"]).toBe("no-store");
    s.api.publish(2);
    const changed = await call(port, c, {
      path: "/v1/workers/w1/policy",
      headers: { ...machineHeaders("w1"), "if-none-match": etag },
    });
    expect(changed.status).toBe(200);
    expect(changed.headers.etag).not.toBe(etag);
  });

  it("holds a Prefer: wait request until the notifier fires with something new", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    const etag = etagOf({ version: 1 });
    const order: string[] = [];
    const pending = call(port, c, {
      path: "/v1/workers/w1/policy",
      headers: { ...machineHeaders("w1"), "if-none-match": etag, prefer: "wait=30" },
    }).then((r) => {
      order.push(`response ${r.status}`);
      return r;
    });
    await until(() => s.api.notifier.listenerCount("w1") === 1, "long poll waiting");
    expect([...s.api.timers.pending.values()].map((t) => t.ms)).toEqual([30_000]);
    order.push("publish");
    s.api.publish(2);
    const r = await pending;
    expect(order).toEqual(["publish", "response 200"]);
    expect(r.json).toEqual({ version: 2 });
    expect(s.api.notifier.listenerCount()).toBe(0);
  });

  it("answers 304 when the wait runs out, and cleans up when the client goes away", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    const etag = etagOf({ version: 1 });
    const headers = { ...machineHeaders("w1"), "if-none-match": etag, prefer: "wait=5" };
    const pending = call(port, c, { path: "/v1/workers/w1/policy", headers });
    await until(() => s.api.notifier.listenerCount("w1") === 1, "long poll waiting");
    s.api.timers.fireAll();
    expect((await pending).status).toBe(304);

    const req = request({
      host: "127.0.0.1",
      port,
      path: "/v1/workers/w1/policy",
      headers,
      ca: c,
      agent: false,
    });
    req.on("error", () => {});
    req.end();
    await until(() => s.api.notifier.listenerCount("w1") === 1, "second long poll waiting");
    req.destroy();
    await until(() => s.api.notifier.listenerCount("w1") === 0, "listener removed");
    expect(s.api.timers.pending.size).toBe(0);
  });
});

describe("close", () => {
  it("ends idle keep-alive connections and wakes long polls instead of waiting for them", async () => {
    const s = setup();
    const { api, port } = await start(s.options);
    const c = cert().cert;
    const agent = new Agent({ keepAlive: true, ca: c, maxSockets: 1 });
    try {
      const first = await call(port, c, { path: "/healthz", agent });
      expect(first.headers.connection).toBe("keep-alive");
      const headers = {
        ...machineHeaders("w1"),
        "if-none-match": etagOf({ version: 1 }),
        prefer: "wait=60",
      };
      const poll = call(port, c, { path: "/v1/workers/w1/policy", headers });
      await until(() => s.api.notifier.listenerCount("w1") === 1, "long poll waiting");
      // A grace far above the test timeout: close must not need it.
      await api.close(600_000);
      const r = await poll;
      expect(r.status).toBe(304);
      expect(r.headers.connection).toBe("close");
      expect(s.api.notifier.listenerCount()).toBe(0);
    } finally {
      agent.destroy();
    }
  });
});
