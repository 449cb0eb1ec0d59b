import { timingSafeEqual } from "node:crypto";
import { chmodSync, rmSync } from "node:fs";
import {
  createServer,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from "node:http";
import {
  type AgentdError,
  ERROR_CODES,
  type ErrorCode,
  fail,
  isAgentdError,
} from "../lib/errors.ts";
import { parseJsonStrict } from "../lib/json/strict-parse.ts";
import type { Logger } from "../lib/log/logger.ts";
import { SERVICE_KINDS, type ServiceKind } from "../supervisor/spec.ts";

/**
 * The agent's local API: HTTP on a unix socket (mode 0660: the agent's user and group) and,
 * when `api.listen` is set, on a localhost TCP port with a bearer token. For the owner and the
 * operator on the machine, and the CLI.
 *
 *   GET  /v1/status         what `agentd status` shows
 *   GET  /v1/policy         the documents in force, the decision and the local holds
 *   GET  /v1/miners         the ASICs connected to the Stratum proxy
 *   GET  /v1/shares         share counts, in total and per worker
 *   GET  /v1/services       the supervised services (none until the supervisor runs)
 *   GET  /v1/eligibility    the node-reward eligibility and its reasons
 *   POST /v1/eligibility/maintenance  {"windows": [{"start_ms", "end_ms"}]}: planned
 *                          maintenance, left out of the uptime ratio (docs/eligibility.md)
 *   GET  /v1/audit?n=N      the last N audit records (default 20, at most 1000)
 *   GET  /v1/logs?n=N       the agent's last N log lines (default 100, at most 1000)
 *   POST /v1/revocations    an owner-signed revocation or decommission ({"document": JWS})
 *   POST /v1/bundles        an owner-signed consent with its publication ({"consent", "publication"})
 *   POST /v1/services/{kind}/start|stop|restart   the operator's action on one service (a
 *                          stop holds until a start)
 *   GET  /v1/services/{kind}/logs?n=N   its last N output lines
 *   POST /v1/mining/pause   the operator's pause (persisted until resumed)
 *   POST /v1/mining/resume
 *
 * Documents go through the policy guard's checks like any other: the socket's permissions
 * and the token say who may talk to the agent, the owner's signature what a document may do.
 * Pause and resume need no signature: they can only stop mining, or lift the operator's own
 * stop (never allow what the decision denies).
 *
 * The TCP listener is for tools on the same host. No browser page can drive it: it sends no
 * CORS headers, refuses any request carrying an `Origin` (browsers send one on cross-origin
 * requests, and scripts cannot remove it), refuses a `Host` other than the loopback address
 * it listens on (DNS rebinding), and wants `Authorization: Bearer <token>`. Both listeners are
 * rate-limited (a token bucket per listener). Errors are `{"error": {"code", "message"}}`
 * with a stable code; bodies are at most 64 KiB of strict JSON.
 */

type Json = Record<string, unknown>;
export type ApplyResult = { readonly accepted: boolean; readonly reasons: readonly string[] };

export interface LocalApiHandlers {
  status(): Json;
  policy(): Json;
  miners(): Json;
  shares(): Json;
  services(): Json;
  eligibility(): Json;
  /** Replaces the maintenance windows to come (unix ms); past ones stay as they were. */
  maintenance(windows: readonly { start_ms: number; end_ms: number }[]): Json;
  audit(n: number): Json;
  logs(n: number): Json;
  /** Applies a revocation or decommission; what the policy guard answered. */
  revoke(jws: string): Promise<ApplyResult>;
  bundle(bundle: { readonly consent: string; readonly publication: string }): Promise<ApplyResult>;
  pause(): Promise<Json>;
  resume(): Promise<Json>;
  /** An operator's start, stop or restart of one supervised service. */
  serviceAction(kind: ServiceKind, action: "start" | "stop" | "restart"): Promise<Json>;
  serviceLogs(kind: ServiceKind, n: number): Promise<Json>;
}

export interface LocalApi {
  readonly socket: string;
  /** The TCP listener's address, when one was asked for. */
  readonly tcp: { readonly host: string; readonly port: number } | null;
  close(): Promise<void>;
}

export interface LocalApiOptions {
  readonly socket: string;
  readonly handlers: LocalApiHandlers;
  readonly logger: Logger;
  /** A loopback TCP listener (port 0 allowed) and the bearer token it wants. */
  readonly tcp?: { readonly host: string; readonly port: number; readonly token: string };
  /** Requests per second per listener, and the burst (default 50/s, 100). */
  readonly rate?: { readonly perSecond: number; readonly burst: number };
  readonly now?: () => number;
}

const MAX_BODY = 64 * 1024;
const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/** A route gets the request's JSON body (POST; `{}` when empty), read before routing. */
type Route = (body: Json, url: URL, h: LocalApiHandlers) => Promise<[number, Json]>;

const count = (url: URL, fallback: number) => {
  const raw = url.searchParams.get("n");
  if (raw === null) return fallback;
  if (!/^[0-9]{1,4}$/.test(raw) || Number(raw) < 1 || Number(raw) > 1000) {
    throw fail("AGENTD_E_USAGE", "n must be an integer from 1 to 1000", { n: raw });
  }
  return Number(raw);
};
const view =
  (f: (h: LocalApiHandlers, url: URL) => Json): Route =>
  async (_body, url, h) => [200, f(h, url)];

const ROUTES: Readonly<Record<string, Readonly<Record<string, Route>>>> = {
  "/v1/status": { GET: view((h) => h.status()) },
  "/v1/policy": { GET: view((h) => h.policy()) },
  "/v1/miners": { GET: view((h) => h.miners()) },
  "/v1/shares": { GET: view((h) => h.shares()) },
  "/v1/services": { GET: view((h) => h.services()) },
  "/v1/eligibility": { GET: view((h) => h.eligibility()) },
  "/v1/audit": { GET: view((h, url) => h.audit(count(url, 20))) },
  "/v1/logs": { GET: view((h, url) => h.logs(count(url, 100))) },
  "/v1/revocations": {
    POST: async (body, _url, h) => {
      const document = body.document;
      if (typeof document !== "string" || document === "") {
        throw fail("AGENTD_E_SCHEMA", 'the body must be {"document": "<JWS>"}');
      }
      return applied(await h.revoke(document));
    },
  },
  "/v1/bundles": {
    POST: async (body, _url, h) => {
      const { consent, publication } = body;
      if (typeof consent !== "string" || typeof publication !== "string") {
        throw fail("AGENTD_E_SCHEMA", 'the body must be {"consent": JWS, "publication": JWS}');
      }
      return applied(await h.bundle({ consent, publication }));
    },
  },
  "/v1/eligibility/maintenance": {
    POST: async (body, _url, h) => {
      const { windows } = body;
      const ok =
        Array.isArray(windows) &&
        windows.length <= 256 &&
        windows.every((w: unknown) => {
          const r = w as { start_ms?: unknown; end_ms?: unknown } | null;
          return (
            typeof r === "object" &&
            r !== null &&
            Object.keys(r).length === 2 &&
            Number.isSafeInteger(r.start_ms) &&
            Number.isSafeInteger(r.end_ms) &&
            (r.start_ms as number) >= 0 &&
            (r.start_ms as number) < (r.end_ms as number)
          );
        });
      if (!ok) {
        throw fail(
          "AGENTD_E_SCHEMA",
          'the body must be {"windows": [{"start_ms": int, "end_ms": int}, …]} with start < end, at most 256',
        );
      }
      return [200, h.maintenance(windows as { start_ms: number; end_ms: number }[])];
    },
  },
  "/v1/mining/pause": { POST: async (_body, _url, h) => [200, await h.pause()] },
  "/v1/mining/resume": { POST: async (_body, _url, h) => [200, await h.resume()] },
};

// One route per kind and action: the path names the kind, so no pattern matching is needed.
for (const kind of SERVICE_KINDS) {
  for (const action of ["start", "stop", "restart"] as const) {
    (ROUTES as Record<string, Record<string, Route>>)[`/v1/services/${kind}/${action}`] = {
      POST: async (_body, _url, h) => [200, await h.serviceAction(kind, action)],
    };
  }
  (ROUTES as Record<string, Record<string, Route>>)[`/v1/services/${kind}/logs`] = {
    GET: async (_body, url, h) => [200, await h.serviceLogs(kind, count(url, 100))],
  };
}

const applied = (r: ApplyResult): [number, Json] => [
  r.accepted ? 200 : 422,
  { accepted: r.accepted, reasons: r.reasons },
];

const STATUS_OF: Partial<Record<ErrorCode, number>> = {
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
  // the agent's disk (the audit log, a state file): try again once it can write
  AGENTD_E_IO: 503,
};

export async function startLocalApi(o: LocalApiOptions): Promise<LocalApi> {
  const now = o.now ?? Date.now;
  const rate = o.rate ?? { perSecond: 50, burst: 100 };
  const serve = (guard: (req: IncomingMessage) => void): Server => {
    const bucket = tokenBucket(rate.perSecond, rate.burst, now);
    return createServer((req, res) => {
      handle(req, res, () => {
        // Who may ask first, then how often: requests without the token must not use up the
        // bucket of those with it.
        guard(req);
        if (!bucket()) throw fail("AGENTD_E_API_RATE_LIMITED", "too many requests; slow down");
      }).catch((err: unknown) => {
        o.logger.error({ err }, "local API");
        reply(res, 500, { error: { code: "AGENTD_E_INTERNAL", message: "internal error" } });
      });
    });
  };
  const handle = async (req: IncomingMessage, res: ServerResponse, admit: () => void) => {
    try {
      admit();
      const url = new URL(req.url ?? "/", "http://local");
      const methods = ROUTES[url.pathname];
      if (methods === undefined) throw fail("AGENTD_E_API_NOT_FOUND", "no such endpoint");
      const route = methods[req.method ?? ""];
      if (route === undefined) {
        res.setHeader("allow", Object.keys(methods).join(", "));
        throw fail("AGENTD_E_API_METHOD_NOT_ALLOWED", `${req.method} is not allowed here`);
      }
      // The whole body is read before answering, also where a route needs none: answering
      // (and closing) while the client still writes would cut its request (EPIPE).
      const body = req.method === "POST" ? await readJson(req) : {};
      const [status, out] = await route(body, url, o.handlers);
      reply(res, status, out);
    } catch (err) {
      const status = isAgentdError(err) ? STATUS_OF[err.code] : undefined;
      if (status === undefined) throw err;
      const e = err as AgentdError;
      if (e.code === "AGENTD_E_API_TOO_LARGE") res.setHeader("connection", "close");
      reply(res, status, { error: { code: e.code, message: e.message } });
    }
  };

  const servers: Server[] = [];
  // A socket file left by a process that died: nothing listens on it any more.
  rmSync(o.socket, { force: true });
  const unix = serve(() => {});
  await listen(unix, (cb) => unix.listen(o.socket, cb));
  servers.push(unix);
  chmodSync(o.socket, 0o660);

  let tcp: { host: string; port: number } | null = null;
  try {
    if (o.tcp !== undefined) {
      const t = o.tcp;
      if (!LOOPBACK.has(t.host)) {
        throw fail("AGENTD_E_CONFIG_RANGE", "api.listen must be a loopback address", {
          host: t.host,
        });
      }
      if (t.token.length < 32) {
        throw fail("AGENTD_E_CONFIG_RANGE", "the local API token must be at least 32 characters");
      }
      let port = t.port;
      const server = serve((req) => checkTcpRequest(req, t.token, port));
      await listen(server, (cb) => server.listen(t.port, t.host, cb));
      servers.push(server);
      const a = server.address();
      port = typeof a === "object" && a !== null ? a.port : t.port;
      tcp = { host: t.host, port };
    }
  } catch (err) {
    for (const s of servers) s.close();
    rmSync(o.socket, { force: true });
    throw err;
  }

  let closed: Promise<void> | undefined;
  return {
    socket: o.socket,
    tcp,
    close: () => {
      closed ??= Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections();
            }),
        ),
      ).then(() => rmSync(o.socket, { force: true }));
      return closed;
    },
  };
}

/** What the TCP listener checks before anything else: no browser, the right host, the token. */
function checkTcpRequest(req: IncomingMessage, token: string, port: number): void {
  if (req.headers.origin !== undefined) {
    throw fail("AGENTD_E_API_FORBIDDEN", "requests from web pages are refused");
  }
  const host = req.headers.host ?? "";
  const m = /^(\[::1\]|127\.0\.0\.1|localhost):([0-9]+)$/.exec(host);
  if (m === null || Number(m[2]) !== port) {
    throw fail("AGENTD_E_API_FORBIDDEN", "the Host header must name this loopback listener");
  }
  const auth = req.headers.authorization ?? "";
  const given = Buffer.from(auth.startsWith("Bearer ") ? auth.slice(7) : "", "utf8");
  const want = Buffer.from(token, "utf8");
  if (given.length !== want.length || !timingSafeEqual(given, want)) {
    throw fail("AGENTD_E_API_UNAUTHENTICATED", "a valid bearer token is required");
  }
}

function tokenBucket(perSecond: number, burst: number, now: () => number): () => boolean {
  let tokens = burst;
  let last = now();
  return () => {
    const t = now();
    tokens = Math.min(burst, tokens + ((t - last) / 1000) * perSecond);
    last = t;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  };
}

function listen(server: Server, start: (cb: () => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    start(() => {
      server.off("error", reject);
      resolve();
    });
  });
}

async function readJson(req: IncomingMessage): Promise<Json> {
  const text = await readBody(req);
  if (text.trim() === "") return {};
  const v = parseJsonStrict(text);
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw fail("AGENTD_E_SCHEMA", "the body must be a JSON object");
  }
  return v as Json;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        // Answer 413 (and close): the rest is read and dropped, not kept.
        if (chunks.length > 0) chunks.length = 0;
        reject(fail("AGENTD_E_API_TOO_LARGE", `the body is larger than ${MAX_BODY} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function reply(res: ServerResponse, status: number, body: unknown) {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(text)),
    "cache-control": "no-store",
  });
  res.end(text);
}

/** A client of the local API (the CLI): one request over the unix socket, JSON both ways. */
export function localApiRequest(
  socket: string,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
): Promise<{ readonly status: number; readonly json: Json }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        socketPath: socket,
        path,
        method,
        // One request, one connection: a pooled keep-alive socket to an agent that has since
        // restarted would fail the next request (EPIPE) for nothing.
        agent: false,
        headers:
          payload === undefined
            ? {}
            : {
                "content-type": "application/json",
                "content-length": String(Buffer.byteLength(payload)),
              },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          try {
            resolve({
              status: res.statusCode ?? 0,
              json: JSON.parse(Buffer.concat(chunks).toString("utf8")) as Json,
            });
          } catch (err) {
            reject(
              fail("AGENTD_E_HTTP", "the local API answered something that is not JSON", {}, err),
            );
          }
        });
      },
    );
    req.on("error", (err) =>
      reject(
        fail(
          "AGENTD_E_IO",
          `cannot reach the local agent at ${socket}: ${(err as Error).message} (is agentd run running?)`,
          { path: socket },
          err,
        ),
      ),
    );
    req.end(payload);
  });
}

/**
 * The local API's answer, or its error as an AgentdError (its code when it is one of ours):
 * what every CLI verb reading through the API does.
 */
export async function localApiGet(socket: string, path: string): Promise<Json> {
  const r = await localApiRequest(socket, "GET", path);
  if (r.status === 200) return r.json;
  throw apiError(r);
}

export function apiError(r: { readonly status: number; readonly json: Json }): AgentdError {
  const e = (r.json.error ?? {}) as { code?: unknown; message?: unknown };
  const message = typeof e.message === "string" ? e.message : `the local API answered ${r.status}`;
  // The agent's own code when it is one of ours (so the CLI's exit class is the agent's).
  if (typeof e.code === "string" && Object.hasOwn(ERROR_CODES, e.code)) {
    return fail(e.code as ErrorCode, message, { status: r.status });
  }
  return fail("AGENTD_E_HTTP", message, {
    status: r.status,
    code: typeof e.code === "string" ? e.code : null,
  });
}
