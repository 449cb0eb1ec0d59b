import { randomUUID, timingSafeEqual } from "node:crypto";
import { chmodSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { type Clock, systemClock } from "../lib/clock.ts";
import { fail } from "../lib/errors.ts";
import { readJsonBody } from "../lib/http/body.ts";
import { errorResponse, type HttpErrorCodes, TRANSIENT_IO_STATUS } from "../lib/http/errors.ts";
import { formatHostPort, isLoopbackHost } from "../lib/http/host-port.ts";
import { closeNow, listenTcp, listenUnix } from "../lib/http/listen.ts";
import { enforce, RateLimiter } from "../lib/http/rate-limit.ts";
import { send, serialize } from "../lib/http/respond.ts";
import { Router, routeOrRefuse, splitTarget } from "../lib/http/router.ts";
import {
  httpServerOptions,
  MAX_HEADERS_COUNT,
  type ServerTimeouts,
} from "../lib/http/server-limits.ts";
import { isOriginForm, singleHeader } from "../lib/http/target.ts";
import type { Logger } from "../lib/log/logger.ts";
import { type LocalApiHandlers, type LocalRoute, localApiRoutes } from "./local-api-routes.ts";

export { apiError, localApiGet, localApiRequest } from "./local-api-client.ts";
export type { ApplyResult, LocalApiHandlers } from "./local-api-routes.ts";

/**
 * The agent's local API: HTTP on a unix socket (mode 0660: the agent's user and group) and,
 * when `api.listen` is set, on a localhost TCP port with a bearer token. For the owner and the
 * operator on the machine, and the CLI. Built on lib/http (routing, bounded strict-JSON
 * bodies, token buckets, the error → status table); the endpoints are in local-api-routes.ts,
 * the client the CLI uses in local-api-client.ts.
 *
 *   GET  /v1/status         what `agentd status` shows (docs/local-api.md: every answer's fields)
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
 *   POST /v1/owner-rotations  an owner-key rotation signed by the key in force ({"document": JWS})
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
 * requests, and scripts cannot remove it), refuses a `Host` other than exactly the loopback
 * address it listens on or `localhost`, with its port as written by us (DNS rebinding; no
 * other spelling of the same listener), and wants `Authorization: Bearer <token>`. Both
 * listeners are rate-limited (a token bucket per listener) and take only a request whose
 * target is a path (origin-form) and that carries one `Host` (else 400
 * AGENTD_E_API_BAD_REQUEST, before anything parses it), within the control plane's time
 * limits (lib/http/server-limits.ts: 10 s for the headers, 30 s for the whole request, 5 s
 * idle keep-alive). Errors are `{"error": {"code", "message"}}` with a stable code; bodies
 * are at most 64 KiB of strict JSON. A failure of the agent's disk (AGENTD_E_IO: the audit
 * log, a state file) is 503: retry once it can write.
 */

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
  /** What the token buckets refill by. */
  readonly clock?: Clock;
  /** The listeners' time limits; the control plane's by default (tests shorten them). */
  readonly timeouts?: ServerTimeouts;
}

const MAX_BODY = 64 * 1024;

/** The local API's codes for the refusals lib/http makes; it does not look at Content-Type. */
const API_CODES = Object.freeze({
  badRequest: "AGENTD_E_API_BAD_REQUEST",
  notFound: "AGENTD_E_API_NOT_FOUND",
  methodNotAllowed: "AGENTD_E_API_METHOD_NOT_ALLOWED",
  tooLarge: "AGENTD_E_API_TOO_LARGE",
  rateLimited: "AGENTD_E_API_RATE_LIMITED",
}) satisfies HttpErrorCodes & { readonly badRequest: "AGENTD_E_API_BAD_REQUEST" };

type Json = Record<string, unknown>;

export async function startLocalApi(o: LocalApiOptions): Promise<LocalApi> {
  const clock = o.clock ?? systemClock;
  const rate = o.rate ?? { perSecond: 50, burst: 100 };
  const router = new Router<LocalRoute>(localApiRoutes(o.handlers));

  const handle = async (req: IncomingMessage, res: ServerResponse, admit: () => void) => {
    const requestId = randomUUID();
    try {
      checkFraming(req);
      admit();
      const { path, search } = splitTarget(req.url ?? "");
      const { route } = routeOrRefuse(router, req.method ?? "", path, API_CODES);
      // The whole body is read before answering, also where a route needs none: answering
      // (and closing) while the client still writes would cut its request (EPIPE).
      const body = route.method === "POST" ? await readObject(req) : {};
      send(res, serialize(await route.run({ body, query: new URLSearchParams(search) })));
    } catch (err) {
      const r = errorResponse(err, requestId, { overrides: TRANSIENT_IO_STATUS });
      if (r.status >= 500) o.logger.error({ request_id: requestId, err }, "local API");
      // A refusal before the whole body arrived (413, 401) ends the connection rather than
      // letting Node read the rest of it to keep the connection alive.
      send(res, serialize(r), req.complete ? {} : { connection: "close" });
    }
  };
  const serve = (guard: (req: IncomingMessage) => void): Server => {
    // One bucket per listener (one key, so at most one bucket).
    const bucket = new RateLimiter(
      { ratePerSecond: rate.perSecond, burst: rate.burst, maxBuckets: 1 },
      clock,
    );
    const server = createServer(httpServerOptions(o.timeouts), (req, res) => {
      void handle(req, res, () => {
        // Who may ask first, then how often: requests without the token must not use up the
        // bucket of those with it.
        guard(req);
        enforce(bucket, "listener", API_CODES.rateLimited, "too many requests; slow down");
      });
    });
    server.maxHeadersCount = MAX_HEADERS_COUNT;
    return server;
  };

  const servers: Server[] = [];
  // A socket file left by a process that died: nothing listens on it any more.
  rmSync(o.socket, { force: true });
  const unix = serve(() => {});
  await listenUnix(unix, o.socket);
  servers.push(unix);
  chmodSync(o.socket, 0o660);

  let tcp: { host: string; port: number } | null = null;
  try {
    if (o.tcp !== undefined) {
      const t = o.tcp;
      if (!isLoopbackHost(t.host)) {
        throw fail("AGENTD_E_CONFIG_RANGE", "api.listen must be a loopback address", {
          host: t.host,
        });
      }
      if (t.token.length < 32) {
        throw fail("AGENTD_E_CONFIG_RANGE", "the local API token must be at least 32 characters");
      }
      // The Host values this listener answers to, known once it is bound (port 0 picks one).
      const hosts = new Set<string>();
      const server = serve((req) => checkTcpRequest(req, t.token, hosts));
      servers.push(server);
      const bound = await listenTcp(server, t.port, t.host);
      hosts.add(formatHostPort(bound));
      hosts.add(formatHostPort({ host: "localhost", port: bound.port }));
      tcp = { host: t.host, port: bound.port };
    }
  } catch (err) {
    await Promise.all(servers.map(closeNow));
    rmSync(o.socket, { force: true });
    throw err;
  }

  let closed: Promise<void> | undefined;
  return {
    socket: o.socket,
    tcp,
    close: () => {
      closed ??= Promise.all(servers.map(closeNow)).then(() => rmSync(o.socket, { force: true }));
      return closed;
    },
  };
}

/** A POST's body: a JSON object, or `{}` when there is none. */
async function readObject(req: IncomingMessage): Promise<Json> {
  const v = await readJsonBody(req, { limit: MAX_BODY, optional: true, codes: API_CODES });
  if (v === undefined) return {};
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw fail("AGENTD_E_SCHEMA", "the body must be a JSON object");
  }
  return v as Json;
}

/**
 * What both listeners check before anything reads the request: a target that is a path
 * (origin-form: no `http://…`, `//…` or `*`, well-formed percent-encoding), and one `Host`
 * (RFC 9112 section 3.2: more than one is 400; Node answers 400 itself when there is none).
 */
function checkFraming(req: IncomingMessage): void {
  if (!isOriginForm(req.url ?? "")) {
    throw fail(API_CODES.badRequest, "the request target must be a path such as /v1/status");
  }
  if (singleHeader(req, "host") === null) {
    throw fail(API_CODES.badRequest, "the request must carry exactly one Host header");
  }
}

/**
 * What the TCP listener checks next: no browser, the right host, the token. The Host must be
 * exactly one of `hosts` (the bound address and `localhost`, with the port as we write it):
 * any other spelling of the same listener (a leading zero, other case, a trailing dot) is
 * refused like another host, so that nothing between us and a browser can disagree on it.
 */
function checkTcpRequest(req: IncomingMessage, token: string, hosts: ReadonlySet<string>): void {
  if (req.headers.origin !== undefined) {
    throw fail("AGENTD_E_API_FORBIDDEN", "requests from web pages are refused");
  }
  if (!hosts.has(singleHeader(req, "host") ?? "")) {
    throw fail("AGENTD_E_API_FORBIDDEN", "the Host header must name this loopback listener");
  }
  const auth = req.headers.authorization ?? "";
  const given = Buffer.from(auth.startsWith("Bearer ") ? auth.slice(7) : "", "utf8");
  const want = Buffer.from(token, "utf8");
  if (given.length !== want.length || !timingSafeEqual(given, want)) {
    throw fail("AGENTD_E_API_UNAUTHENTICATED", "a valid bearer token is required");
  }
}
