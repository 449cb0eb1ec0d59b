import { Buffer } from "node:buffer";
import type { IncomingHttpHeaders } from "node:http";
import { Agent, request } from "node:https";
import type { Clock } from "../../lib/clock.ts";
import { type AgentdError, fail, isAgentdError } from "../../lib/errors.ts";
import { parseJsonStrict } from "../../lib/json/strict-parse.ts";
import { backgroundTimers, type Timers } from "../../lib/timers.ts";
import { type Method, matchRoute } from "./roles.ts";
import type { SchemaName, SchemaTypes } from "./schemas/index.ts";
import { pinnedClientTlsOptions } from "./tls.ts";
import { matches, validate } from "./validate.ts";

/**
 * One HTTPS exchange with a control plane, as every caller of the protocol makes it: TLS 1.3
 * only, trusting exactly the control plane's CA (never the system's roots), a deadline on the
 * whole exchange, JSON in and out, and every body checked against the schema roles.ts names
 * for the route — the request before it is sent (our bug, found here rather than by the
 * server), the response before anyone reads it (a control plane that answers something the
 * protocol does not define is treated as broken, not trusted).
 *
 * Errors: an error body from the server becomes an AgentdError with the server's own code
 * (the message prefixed, the HTTP status in the context); anything else that goes wrong on
 * the way — no connection, a timeout, a TLS failure, a status or body the protocol does not
 * define — is AGENTD_E_HTTP.
 */

export interface TransportOptions {
  /** The control plane's origin, `https://host[:port]`. */
  readonly url: string;
  /** The control plane's CA certificate (PEM): the only certificate trusted. */
  readonly caPem: string;
  readonly clock: Clock;
  /** Deadline for one exchange (connect, send, receive). Default 30 s. */
  readonly timeoutMs?: number;
  /**
   * The exchanges' deadlines. `backgroundTimers` by default: a request's own socket keeps the
   * process alive while it is in flight, its deadline need not.
   */
  readonly timers?: Timers;
  /** Reuse connections between requests (default true). */
  readonly keepAlive?: boolean;
}

export interface Transport {
  readonly origin: string;
  readonly caPem: string;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly timeoutMs: number;
  send(r: RawRequest): Promise<RawReply>;
  /** Closes pooled connections. */
  close(): void;
}

export interface RawRequest {
  readonly method: Method;
  /** Path and query, e.g. `/v1/audit/events?after=3`. */
  readonly target: string;
  /** Built per attempt: a retried machine request needs a fresh proof. */
  readonly headers?: () => Record<string, string>;
  readonly body?: string;
  readonly timeoutMs?: number;
}

export interface RawReply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
/** Far above any page the protocol defines (1,000 audit events); bounds a hostile server. */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
/** Below the server's 5 s keep-alive, so we drop an idle socket before it does. */
const FREE_SOCKET_TIMEOUT_MS = 2_000;

/** `https://host:port` exactly as `new URL().origin` writes it; anything else is refused. */
export function originOf(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw fail("AGENTD_E_USAGE", "the control plane URL does not parse");
  }
  if (u.protocol !== "https:") throw fail("AGENTD_E_USAGE", "the control plane URL must be https");
  if (u.username !== "" || u.password !== "") {
    throw fail("AGENTD_E_USAGE", "the control plane URL must not carry credentials");
  }
  return u.origin;
}

export function createTransport(o: TransportOptions): Transport {
  const origin = originOf(o.url);
  const tls = pinnedClientTlsOptions(o.caPem);
  const keepAlive = o.keepAlive ?? true;
  const agent = new Agent({
    ...tls,
    keepAlive,
    timeout: keepAlive ? FREE_SOCKET_TIMEOUT_MS : undefined,
    maxSockets: 16,
  });
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const timers = o.timers ?? backgroundTimers;
  let closed = false;
  const isClosed = () =>
    fail("AGENTD_E_HTTP", `${origin}: the client is closed`, { errno: "ECLOSED" });
  return {
    origin,
    caPem: o.caPem,
    clock: o.clock,
    timers,
    timeoutMs,
    async send(r) {
      if (closed) throw isClosed();
      try {
        return await once(agent, timers, origin, r, timeoutMs);
      } catch (err) {
        // Closed meanwhile (its sockets destroyed): no retry, nothing new may start.
        if (closed) throw isClosed();
        // A pooled connection the server closed while idle: the request never reached it,
        // so one retry on a fresh connection is safe (with fresh headers and proof).
        if ((err as { retryable?: boolean }).retryable === true) {
          return once(agent, timers, origin, r, timeoutMs);
        }
        throw err;
      }
    },
    close() {
      closed = true;
      agent.destroy();
    },
  };
}

function once(
  agent: Agent,
  timers: Timers,
  origin: string,
  r: RawRequest,
  defaultMs: number,
): Promise<RawReply> {
  const ms = r.timeoutMs ?? defaultMs;
  return new Promise<RawReply>((resolve, reject) => {
    let settled = false;
    const done = (err: unknown, reply?: RawReply) => {
      if (settled) return;
      settled = true;
      timers.clearTimeout(timer);
      if (err === undefined && reply !== undefined) resolve(reply);
      else reject(err);
    };
    const headers: Record<string, string> = { accept: "application/json", ...r.headers?.() };
    if (r.body !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = String(Buffer.byteLength(r.body));
    }
    const req = request(`${origin}${r.target}`, { method: r.method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_RESPONSE_BYTES) {
          req.destroy();
          done(fail("AGENTD_E_HTTP", `response larger than ${MAX_RESPONSE_BYTES} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on("end", () =>
        done(undefined, {
          status: res.statusCode ?? 0,
          headers: res.headers,
          text: Buffer.concat(chunks).toString("utf8"),
        }),
      );
      res.on("error", (err) => done(transportError(r, err)));
    });
    const timer = timers.setTimeout(() => {
      req.destroy();
      done(fail("AGENTD_E_HTTP", `${r.method} ${pathOf(r.target)}: no answer within ${ms} ms`));
    }, ms);
    req.on("error", (err: NodeJS.ErrnoException) => {
      const e = transportError(r, err);
      if (req.reusedSocket && ["ECONNRESET", "EPIPE"].includes(err.code ?? "")) {
        Object.defineProperty(e, "retryable", { value: true });
      }
      done(e);
    });
    req.end(r.body);
  });
}

function transportError(r: RawRequest, err: Error & { code?: string | undefined }): AgentdError {
  if (isAgentdError(err)) return err;
  return fail(
    "AGENTD_E_HTTP",
    `${r.method} ${pathOf(r.target)}: ${err.code ?? "transport error"}: ${err.message}`,
    { errno: err.code ?? null },
    err,
  );
}

function pathOf(target: string): string {
  const q = target.indexOf("?");
  return q === -1 ? target : target.slice(0, q);
}

// ---- typed calls ----------------------------------------------------------------------------

export interface CallOptions {
  readonly body?: unknown;
  readonly query?: Readonly<Record<string, string | number | undefined>>;
  readonly headers?: () => Record<string, string>;
  readonly timeoutMs?: number;
  /** Statuses other than 200 to hand back instead of failing (e.g. 304 for the policy). */
  readonly allow?: readonly number[];
}

export interface CallReply<T> {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** The validated response body; undefined for an allowed non-200 status without body. */
  readonly body: T;
}

type ResponseOf<N extends SchemaName | undefined> = N extends SchemaName
  ? SchemaTypes[N]
  : undefined;

/**
 * Calls an endpoint of roles.ts: the request body is checked against its request schema
 * (and the query against its query schema) before anything is sent, the 200 body against its
 * response schema.
 */
export async function call<N extends SchemaName | undefined = undefined>(
  t: Transport,
  method: Method,
  path: string,
  o: CallOptions = {},
): Promise<CallReply<ResponseOf<N>>> {
  if (method !== "GET" && method !== "POST" && method !== "DELETE") {
    throw fail("AGENTD_E_INTERNAL", `the protocol has no ${method} endpoints`);
  }
  const m = matchRoute(method, path);
  if (m === undefined) throw fail("AGENTD_E_INTERNAL", `no endpoint ${method} ${path}`);
  const { route } = m;
  if (route.request !== undefined) validate(route.request, o.body ?? {});
  else if (o.body !== undefined) throw fail("AGENTD_E_INTERNAL", `${route.path} takes no body`);
  const query = queryString(o.query);
  if (route.query !== undefined) validate(route.query, query.values);
  else if (query.text !== "") throw fail("AGENTD_E_INTERNAL", `${route.path} takes no query`);
  const reply = await t.send({
    method,
    target: `${path}${query.text}`,
    ...(route.request === undefined ? {} : { body: JSON.stringify(o.body ?? {}) }),
    ...(o.headers === undefined ? {} : { headers: o.headers }),
    ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }),
  });
  const where = `${method} ${route.path}`;
  if (reply.status === 200) {
    if (route.response === undefined) {
      return { status: 200, headers: reply.headers, body: reply.text as unknown as ResponseOf<N> };
    }
    const json = parseBody(reply, where);
    return { status: 200, headers: reply.headers, body: validate(route.response, json) as never };
  }
  if (o.allow?.includes(reply.status) === true) {
    return { status: reply.status, headers: reply.headers, body: undefined as ResponseOf<N> };
  }
  throw errorFromReply(reply, where);
}

function queryString(q: CallOptions["query"]): {
  text: string;
  values: Record<string, string>;
} {
  const values: Record<string, string> = {};
  for (const [k, v] of Object.entries(q ?? {})) if (v !== undefined) values[k] = String(v);
  const text = new URLSearchParams(values).toString();
  return { text: text === "" ? "" : `?${text}`, values };
}

function parseBody(reply: RawReply, where: string): unknown {
  const type = String(reply.headers["content-type"] ?? "");
  if (!/^application\/json\b/i.test(type)) {
    throw fail("AGENTD_E_HTTP", `${where}: HTTP ${reply.status} with content type "${type}"`, {
      status: reply.status,
    });
  }
  try {
    return parseJsonStrict(reply.text);
  } catch (cause) {
    throw fail(
      "AGENTD_E_HTTP",
      `${where}: HTTP ${reply.status} with a body that is not strict JSON`,
      { status: reply.status },
      cause,
    );
  }
}

/**
 * The error a non-200 answer means: the server's own code when the body is a protocol error
 * body, else AGENTD_E_HTTP (a proxy's HTML page, an empty 502, a status the protocol does not
 * use).
 */
export function errorFromReply(reply: RawReply, where: string): AgentdError {
  let body: unknown;
  try {
    body = parseJsonStrict(reply.text);
  } catch {
    body = undefined;
  }
  const retry = Number(reply.headers["retry-after"]);
  const context = {
    status: reply.status,
    ...(Number.isSafeInteger(retry) && retry >= 0 ? { retry_after_s: retry } : {}),
  };
  if (reply.status >= 400 && matches("error", body)) {
    const { code, message } = (body as SchemaTypes["error"]).error;
    return fail(code, `control plane: ${message}`, context);
  }
  return fail("AGENTD_E_HTTP", `${where}: HTTP ${reply.status} is not a protocol answer`, context);
}
