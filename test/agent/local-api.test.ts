import { mkdtempSync, rmSync, statSync } from "node:fs";
import { request } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import {
  type LocalApi,
  type LocalApiHandlers,
  localApiRequest,
  startLocalApi,
} from "../../agent/local-api.ts";
import { fail } from "../../lib/errors.ts";
import { createLogger } from "../../lib/log/logger.ts";

/**
 * The local API's HTTP layer on real sockets (a unix socket and a loopback TCP port): routes,
 * errors with stable codes, and what keeps a browser page and other hosts out of the TCP
 * listener. The handlers here only record; the daemon's tests drive the real ones.
 */

const TOKEN = "t".repeat(43);
const open: LocalApi[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const a of open.splice(0)) await a.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function handlers(calls: string[]): LocalApiHandlers {
  const rec = (name: string, out: Record<string, unknown> = { ok: name }) => {
    calls.push(name);
    return out;
  };
  return {
    status: () => rec("status", { state: "MINING" }),
    policy: () => rec("policy"),
    miners: () => rec("miners"),
    shares: () => rec("shares"),
    services: () => rec("services"),
    eligibility: () => rec("eligibility"),
    maintenance: (w) => rec(`maintenance ${JSON.stringify(w)}`),
    audit: (n) => rec(`audit ${n}`),
    logs: (n) => rec(`logs ${n}`),
    revoke: async (jws) => {
      calls.push(`revoke ${jws}`);
      return { accepted: jws === "good", reasons: jws === "good" ? [] : ["consent.signature"] };
    },
    bundle: async (b) => {
      calls.push(`bundle ${b.consent} ${b.publication}`);
      return { accepted: true, reasons: [] };
    },
    rotateOwner: async (jws) => {
      calls.push(`rotate ${jws}`);
      return { accepted: jws === "good", reasons: jws === "good" ? [] : ["rotation.replayed"] };
    },
    pause: async () => rec("pause"),
    resume: async () => rec("resume"),
    serviceAction: async (kind, action) => rec(`${action} ${kind}`),
    serviceLogs: async (kind, n) => rec(`logs ${kind} ${n}`),
    fleet: () => rec("fleet"),
    fleetAdopt: async (b) => rec(`adopt ${JSON.stringify(b)}`),
    fleetForget: async (id) => rec(`forget ${id}`),
  };
}

async function start(
  calls: string[],
  over: Partial<Parameters<typeof startLocalApi>[0]> = {},
): Promise<LocalApi> {
  const dir = mkdtempSync(join(tmpdir(), "agentd-api-"));
  dirs.push(dir);
  const api = await startLocalApi({
    socket: join(dir, "agentd.sock"),
    handlers: handlers(calls),
    logger: createLogger({ level: "silent" }),
    tcp: { host: "127.0.0.1", port: 0, token: TOKEN },
    ...over,
  });
  open.push(api);
  return api;
}

/** One raw TCP request with exactly the headers given (Host included). */
function tcp(
  api: LocalApi,
  path: string,
  headers: Record<string, string>,
  method = "GET",
): Promise<{
  status: number;
  headers: Record<string, unknown>;
  json: { error?: { code: string } };
}> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port: api.tcp?.port, path, method, headers, setHost: false },
      (res) => {
        let body = "";
        res.on("data", (c: Buffer) => {
          body += c.toString();
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, json: JSON.parse(body) }),
        );
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("the local API", () => {
  it("serves every view and action on the unix socket (mode 0660)", async () => {
    const calls: string[] = [];
    const api = await start(calls, { tcp: undefined } as never);
    expect(statSync(api.socket).mode & 0o777).toBe(0o660);
    expect(api.tcp).toBeNull();
    for (const p of [
      "/v1/status",
      "/v1/policy",
      "/v1/miners",
      "/v1/shares",
      "/v1/services",
      "/v1/eligibility",
    ]) {
      expect((await localApiRequest(api.socket, "GET", p)).status, p).toBe(200);
    }
    expect((await localApiRequest(api.socket, "GET", "/v1/audit?n=5")).status).toBe(200);
    expect((await localApiRequest(api.socket, "GET", "/v1/logs")).status).toBe(200);
    const bad = await localApiRequest(api.socket, "POST", "/v1/revocations", { document: "bad" });
    expect(bad).toEqual({ status: 422, json: { accepted: false, reasons: ["consent.signature"] } });
    const good = await localApiRequest(api.socket, "POST", "/v1/revocations", { document: "good" });
    expect(good.status).toBe(200);
    const b = await localApiRequest(api.socket, "POST", "/v1/bundles", {
      consent: "c",
      publication: "p",
    });
    expect(b.status).toBe(200);
    const windows = [{ start_ms: 1000, end_ms: 2000 }];
    const mw = await localApiRequest(api.socket, "POST", "/v1/eligibility/maintenance", {
      windows,
    });
    expect(mw.status).toBe(200);
    expect((await localApiRequest(api.socket, "POST", "/v1/mining/pause", {})).status).toBe(200);
    expect((await localApiRequest(api.socket, "POST", "/v1/mining/resume", {})).status).toBe(200);
    expect((await localApiRequest(api.socket, "POST", "/v1/services/lnd/restart", {})).status).toBe(
      200,
    );
    expect(
      (await localApiRequest(api.socket, "GET", "/v1/services/bitcoind/logs?n=7")).status,
    ).toBe(200);
    expect(
      (await localApiRequest(api.socket, "POST", "/v1/services/bitcoin/stop", {})).status,
    ).toBe(404);
    expect(calls).toEqual([
      "status",
      "policy",
      "miners",
      "shares",
      "services",
      "eligibility",
      "audit 5",
      "logs 100",
      "revoke bad",
      "revoke good",
      "bundle c p",
      `maintenance ${JSON.stringify([{ start_ms: 1000, end_ms: 2000 }])}`,
      "pause",
      "resume",
      "restart lnd",
      "logs bitcoind 7",
    ]);
  });

  it("answers bad requests with stable codes, touching no handler", async () => {
    const calls: string[] = [];
    const api = await start(calls);
    const code = async (method: "GET" | "POST", path: string, body?: unknown) => {
      const r = await localApiRequest(api.socket, method, path, body);
      return [r.status, (r.json.error as { code: string } | undefined)?.code];
    };
    expect(await code("GET", "/v1/nothing")).toEqual([404, "AGENTD_E_API_NOT_FOUND"]);
    expect(await code("POST", "/v1/status", {})).toEqual([405, "AGENTD_E_API_METHOD_NOT_ALLOWED"]);
    expect(await code("GET", "/v1/audit?n=0")).toEqual([400, "AGENTD_E_USAGE"]);
    expect(await code("GET", "/v1/audit?n=1001")).toEqual([400, "AGENTD_E_USAGE"]);
    expect(await code("POST", "/v1/revocations", { document: 5 })).toEqual([
      400,
      "AGENTD_E_SCHEMA",
    ]);
    expect(await code("POST", "/v1/revocations", [1])).toEqual([400, "AGENTD_E_SCHEMA"]);
    expect(await code("POST", "/v1/bundles", { consent: "c" })).toEqual([400, "AGENTD_E_SCHEMA"]);
    for (const windows of [
      [{ start_ms: 5, end_ms: 5 }],
      [{ start_ms: 5, end_ms: 6, extra: 1 }],
      [{ start_ms: -1, end_ms: 6 }],
      [{ start_ms: 1.5, end_ms: 6 }],
      "soon",
    ]) {
      expect(await code("POST", "/v1/eligibility/maintenance", { windows })).toEqual([
        400,
        "AGENTD_E_SCHEMA",
      ]);
    }
    expect(await code("POST", "/v1/revocations", { document: "x".repeat(70_000) })).toEqual([
      413,
      "AGENTD_E_API_TOO_LARGE",
    ]);
    expect(calls).toEqual([]);
  });

  it("TCP: wants the bearer token, the loopback Host, and no Origin", async () => {
    const calls: string[] = [];
    const api = await start(calls);
    const port = api.tcp?.port ?? 0;
    const host = `127.0.0.1:${port}`;
    const auth = { authorization: `Bearer ${TOKEN}` };
    const ok = await tcp(api, "/v1/status", { host, ...auth });
    expect(ok.status).toBe(200);
    expect(ok.headers["access-control-allow-origin"]).toBeUndefined();
    expect((await tcp(api, "/v1/status", { host: `localhost:${port}`, ...auth })).status).toBe(200);
    const refused = async (headers: Record<string, string>) => {
      const r = await tcp(api, "/v1/status", headers);
      return [r.status, r.json.error?.code];
    };
    expect(await refused({ host })).toEqual([401, "AGENTD_E_API_UNAUTHENTICATED"]);
    expect(await refused({ host, authorization: `Bearer ${"u".repeat(43)}` })).toEqual([
      401,
      "AGENTD_E_API_UNAUTHENTICATED",
    ]);
    expect(await refused({ host, authorization: `Bearer ${TOKEN}x` })).toEqual([
      401,
      "AGENTD_E_API_UNAUTHENTICATED",
    ]);
    // DNS rebinding: a page on evil.example resolved to 127.0.0.1
    expect(await refused({ host: `evil.example:${port}`, ...auth })).toEqual([
      403,
      "AGENTD_E_API_FORBIDDEN",
    ]);
    expect(await refused({ host: `127.0.0.1:${port + 1}`, ...auth })).toEqual([
      403,
      "AGENTD_E_API_FORBIDDEN",
    ]);
    // a browser's cross-origin request, even with the right token
    expect(await refused({ host, origin: "http://evil.example", ...auth })).toEqual([
      403,
      "AGENTD_E_API_FORBIDDEN",
    ]);
    expect(calls).toEqual(["status", "status"]);
  });

  it("TCP only on loopback, and only with a long token", async () => {
    await expect(
      start([], { tcp: { host: "0.0.0.0", port: 0, token: TOKEN } }),
    ).rejects.toMatchObject({ code: "AGENTD_E_CONFIG_RANGE" });
    await expect(
      start([], { tcp: { host: "127.0.0.1", port: 0, token: "short" } }),
    ).rejects.toMatchObject({ code: "AGENTD_E_CONFIG_RANGE" });
  });

  it("TCP: requests without the token do not use up the bucket of those with it", async () => {
    let now = 0;
    const api = await start([], { rate: { perSecond: 1, burst: 2 }, clock: { now: () => now } });
    const host = `127.0.0.1:${api.tcp?.port}`;
    for (let i = 0; i < 10; i++) {
      expect((await tcp(api, "/v1/status", { host })).status).toBe(401);
    }
    const auth = { host, authorization: `Bearer ${TOKEN}` };
    expect((await tcp(api, "/v1/status", auth)).status).toBe(200);
    expect((await tcp(api, "/v1/status", auth)).status).toBe(200);
    expect((await tcp(api, "/v1/status", auth)).status).toBe(429);
    now += 1000;
    expect((await tcp(api, "/v1/status", auth)).status).toBe(200);
  });

  it("rate-limits each listener with a token bucket", async () => {
    let now = 0;
    const calls: string[] = [];
    const api = await start(calls, { rate: { perSecond: 2, burst: 3 }, clock: { now: () => now } });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      statuses.push((await localApiRequest(api.socket, "GET", "/v1/status")).status);
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    now += 1000; // two more tokens
    statuses.length = 0;
    for (let i = 0; i < 3; i++) {
      statuses.push((await localApiRequest(api.socket, "GET", "/v1/status")).status);
    }
    expect(statuses).toEqual([200, 200, 429]);
    expect(calls).toHaveLength(5);
  });

  it("answers a failing disk with 503 and its code, a bug with 500, neither with its message", async () => {
    const lines: string[] = [];
    const logger = createLogger({
      level: "error",
      destination: new Writable({
        write(chunk, _enc, cb) {
          lines.push(String(chunk));
          cb();
        },
      }),
    });
    const calls: string[] = [];
    const api = await start(calls, {
      logger,
      handlers: {
        ...handlers(calls),
        pause: async () => {
          throw fail("AGENTD_E_IO", "/var/lib/agentd/audit.jsonl: cannot append: ENOSPC");
        },
        status: () => {
          throw new Error("SELECT secret FROM somewhere");
        },
      },
    });
    const disk = await localApiRequest(api.socket, "POST", "/v1/mining/pause", {});
    expect(disk.status).toBe(503);
    const diskError = disk.json.error as { code: string; message: string };
    expect(diskError.code).toBe("AGENTD_E_IO");
    expect(diskError.message).not.toContain("/var/lib");
    const bug = await localApiRequest(api.socket, "GET", "/v1/status");
    expect(bug.status).toBe(500);
    const bugError = bug.json.error as { code: string; message: string };
    expect(bugError.code).toBe("AGENTD_E_INTERNAL");
    expect(bugError.message).not.toContain("SELECT");
    // the log has what the answer hides, under the request id the answer names
    const id = /request ([0-9a-f-]{36})/.exec(bugError.message)?.[1];
    expect(id).toBeDefined();
    const logged = lines.map((l) => JSON.parse(l) as { request_id?: string; err?: unknown });
    expect(logged.find((l) => l.request_id === id)?.err).toMatchObject({
      message: "SELECT secret FROM somewhere",
    });
  });

  it("says which scheme a 401 wants, which methods a 405 allows, and closes after a 413", async () => {
    const api = await start([]);
    const host = `127.0.0.1:${api.tcp?.port}`;
    const unauth = await tcp(api, "/v1/status", { host });
    expect(unauth.headers["www-authenticate"]).toMatch(/^Bearer /);
    const auth = { host, authorization: `Bearer ${TOKEN}` };
    const wrong = await tcp(api, "/v1/status", auth, "DELETE");
    expect([wrong.status, wrong.headers.allow]).toEqual([405, "GET"]);
    const big = await tcp(api, "/v1/revocations", { ...auth, "content-length": "70000" }, "POST");
    expect([big.status, big.json.error?.code, big.headers.connection]).toEqual([
      413,
      "AGENTD_E_API_TOO_LARGE",
      "close",
    ]);
  });
});

/** What a hand-written request got: the status, the error code, and the time to the close. */
interface RawAnswer {
  readonly status: number;
  readonly code: string | undefined;
  readonly ms: number;
}

/**
 * Writes `chunks` as they are (the last one is left unfinished when the test wants a slow
 * client) on a fresh connection, and reads until the server closes it.
 */
function raw(
  to: { readonly path: string } | { readonly port: number },
  ...chunks: string[]
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const s = "path" in to ? connect(to.path) : connect(to.port, "127.0.0.1");
    let text = "";
    s.setEncoding("utf8");
    s.on("data", (c: string) => {
      text += c;
    });
    s.on("error", reject);
    s.on("close", () =>
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0),
        code: /"code":"([A-Z_]+)"/.exec(text)?.[1],
        ms: Date.now() - started,
      }),
    );
    for (const c of chunks) s.write(c);
  });
}

/** A port from 1024 to 9999 free on 127.0.0.1: four digits, so a leading zero still parses. */
async function startOnShortPort(calls: string[]): Promise<LocalApi> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 1024 + Math.floor(Math.random() * 8976);
    try {
      return await start(calls, { tcp: { host: "127.0.0.1", port, token: TOKEN } });
    } catch (err) {
      if ((err as { code?: string }).code !== "EADDRINUSE") throw err;
    }
  }
  throw new Error("no free four-digit port");
}

describe("the local API as hostile clients meet it (issue 15)", () => {
  const auth = `Authorization: Bearer ${TOKEN}\r\n`;

  it("answers a malformed request target with 400 AGENTD_E_API_BAD_REQUEST, on the socket and on TCP", async () => {
    const calls: string[] = [];
    const api = await start(calls);
    const port = api.tcp?.port ?? 0;
    const targets = [
      "http://[",
      "//",
      "//v1/status",
      "http://127.0.0.1/v1/status",
      `http://127.0.0.1:${port}/v1/status`,
      "*",
      "/v1/%zz",
      "/v1/status?n=%",
      "/v1/status#x",
    ];
    for (const target of targets) {
      const line = `GET ${target} HTTP/1.1\r\n`;
      const onSocket = await raw(
        { path: api.socket },
        `${line}Host: localhost\r\nConnection: close\r\n\r\n`,
      );
      expect([target, onSocket.status, onSocket.code]).toEqual([
        target,
        400,
        "AGENTD_E_API_BAD_REQUEST",
      ]);
      const onTcp = await raw(
        { port },
        `${line}Host: 127.0.0.1:${port}\r\n${auth}Connection: close\r\n\r\n`,
      );
      expect([target, onTcp.status, onTcp.code]).toEqual([target, 400, "AGENTD_E_API_BAD_REQUEST"]);
    }
    // A good target still works, with a query and percent-encoding.
    const good = await raw(
      { port },
      `GET /v1/audit?n=%35 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${auth}Connection: close\r\n\r\n`,
    );
    expect(good.status).toBe(200);
    expect(calls).toEqual(["audit 5"]);
  });

  it("TCP: takes exactly one Host header, spelled exactly as the listener's address", async () => {
    const calls: string[] = [];
    const api = await startOnShortPort(calls);
    const port = api.tcp?.port ?? 0;
    const ask = (hostLines: string) =>
      raw({ port }, `GET /v1/status HTTP/1.1\r\n${hostLines}${auth}Connection: close\r\n\r\n`);
    const host = (v: string) => `Host: ${v}\r\n`;
    expect((await ask(host(`127.0.0.1:${port}`))).status).toBe(200);
    expect((await ask(host(`localhost:${port}`))).status).toBe(200);
    // The same listener, spelled otherwise: refused as another host.
    for (const other of [
      `127.0.0.1:0${port}`,
      `localhost:00${port}`,
      `LOCALHOST:${port}`,
      `localhost.:${port}`,
      `[::1]:${port}`, // loopback, but not the address this listener is on
      `127.1:${port}`,
      `127.0.0.1:${port} x`,
    ]) {
      const r = await ask(host(other));
      expect([other, r.status, r.code]).toEqual([other, 403, "AGENTD_E_API_FORBIDDEN"]);
    }
    // Two Host headers, equal or not: 400 (RFC 9112 section 3.2).
    for (const twice of [
      host(`127.0.0.1:${port}`) + host(`127.0.0.1:${port}`),
      host(`127.0.0.1:${port}`) + host(`evil.example:${port}`),
      host(`evil.example:${port}`) + host(`127.0.0.1:${port}`),
    ]) {
      const r = await ask(twice);
      expect([r.status, r.code]).toEqual([400, "AGENTD_E_API_BAD_REQUEST"]);
    }
    expect(calls).toEqual(["status", "status"]);
  });

  it("on the socket too, more than one Host header is refused", async () => {
    const calls: string[] = [];
    const api = await start(calls, { tcp: undefined } as never);
    const r = await raw(
      { path: api.socket },
      "GET /v1/status HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    expect([r.status, r.code]).toEqual([400, "AGENTD_E_API_BAD_REQUEST"]);
    expect(calls).toEqual([]);
  });

  it("ends a client that is slow with its headers or its body (the control plane's limits, shortened)", async () => {
    const calls: string[] = [];
    const api = await start(calls, { timeouts: { headersMs: 300, requestMs: 600, checkMs: 50 } });
    const port = api.tcp?.port ?? 0;
    // Headers never finished (slowloris), on both listeners.
    for (const to of [{ port }, { path: api.socket }]) {
      const r = await raw(to, "GET /v1/status HTTP/1.1\r\nHost: localhost\r\n");
      expect(r.status).toBe(408);
      expect(r.ms).toBeLessThan(5_000);
    }
    // A body announced and never sent: ended at the request timeout, the handler never run.
    const body = await raw(
      { port },
      "POST /v1/mining/pause HTTP/1.1\r\n" +
        `Host: 127.0.0.1:${port}\r\n${auth}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":`,
    );
    expect(body.status).toBe(408);
    expect(body.ms).toBeLessThan(5_000);
    expect(calls).toEqual([]);
  });
});
