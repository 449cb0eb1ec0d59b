import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ErrorCode } from "../../lib/errors.ts";
import { fail } from "../../lib/errors.ts";
import { readJsonBody } from "../../lib/http/body.ts";
import { errorResponse, type StatusOverrides } from "../../lib/http/errors.ts";
import { parseQuery } from "../../lib/http/query.ts";
import { enforce, ipKey, type RateLimiter } from "../../lib/http/rate-limit.ts";
import { send, serialize } from "../../lib/http/respond.ts";
import { decodeParams, type Router, routeOrRefuse, splitTarget } from "../../lib/http/router.ts";
import type { Logger } from "../../lib/log/logger.ts";
import { stopwatch } from "../../lib/timers.ts";
import {
  type AuthDeps,
  authenticate,
  type Caller,
  callerKey,
  callerLabel,
  WWW_AUTHENTICATE,
} from "./auth.ts";
import { CP_CODES, RATE_LIMITED } from "./codes.ts";
import { type HttpMetrics, UNMATCHED } from "./metrics.ts";
import { requestUrl } from "./request-url.ts";
import type { Route } from "./route.ts";

/**
 * One request, start to end: the order of the steps is the security contract of the API
 * (route.ts). Every request gets a request id (`X-Request-Id`, never taken from the client),
 * exactly one access-log line when its response closes, and one metrics observation labelled
 * by route template. The log line names the caller by kind and key id or worker id; it never
 * holds the Authorization or AgentD-Proof headers, the query or the body.
 */

export interface PipelineDeps {
  readonly router: Router<Route>;
  readonly auth: AuthDeps;
  readonly ipLimiter: RateLimiter | undefined;
  readonly callerLimiter: RateLimiter | undefined;
  readonly bodyLimit: number;
  readonly logger: Logger;
  readonly metrics: HttpMetrics;
  /** True once the server is closing: responses then end their connection. */
  closing(): boolean;
}

const MAX_LOGGED_PATH = 256;

export async function handleRequest(
  deps: PipelineDeps,
  req: IncomingMessage,
  res: ServerResponse,
  signal: AbortSignal,
): Promise<void> {
  const requestId = randomUUID();
  const elapsed = stopwatch();
  const { path: rawPath, search } = splitTarget(req.url ?? "");
  const method = req.method ?? "";
  const clientIp = req.socket.remoteAddress ?? "";
  let routeLabel = UNMATCHED;
  let caller: Caller | undefined;
  let errorCode: ErrorCode | undefined;
  let overrides: StatusOverrides = {};

  res.once("close", () => {
    const seconds = elapsed();
    deps.metrics.request(routeLabel, method, res.statusCode, seconds);
    deps.logger.info(
      {
        request_id: requestId,
        method: method.slice(0, 16),
        route: routeLabel,
        path: rawPath.slice(0, MAX_LOGGED_PATH),
        status: res.statusCode,
        ms: Math.round(seconds * 1e6) / 1e3,
        client_ip: clientIp,
        caller: callerLabel(caller),
        ...(errorCode === undefined ? {} : { code: errorCode }),
        ...(res.writableFinished ? {} : { aborted: true }),
      },
      "http request",
    );
  });

  // An early answer (401 while a body is still coming) must not let Node drain an unbounded
  // body to keep the connection: such responses end the connection instead.
  const connectionHeader = (): Record<string, string> =>
    !req.complete || deps.closing() ? { connection: "close" } : {};

  try {
    enforce(deps.ipLimiter, ipKey(clientIp), CP_CODES.rateLimited, RATE_LIMITED.address);
    const url = requestUrl(req);
    const m = routeOrRefuse(deps.router, method, rawPath, CP_CODES);
    const route = m.route;
    routeLabel = route.path;
    overrides = route.errorStatus ?? {};

    caller = await authenticate(req, route.auth, url.href, deps.auth, {
      machineProofOnly: route.machineProofOnly,
      machineSignedBody: route.machineSignedBody,
    });
    const key = callerKey(caller);
    if (key !== undefined) {
      enforce(deps.callerLimiter, key, CP_CODES.rateLimited, RATE_LIMITED.caller);
    }

    const params = decodeParams(m.rawParams);
    if (route.machineParam !== undefined && caller.kind === "machine") {
      if (params[route.machineParam] !== caller.workerId) {
        throw fail("AGENTD_E_CP_FORBIDDEN", "a machine may only act on its own worker");
      }
    }
    await route.authorize?.({ caller, params, req });
    const query = parseQuery(search, route.query);
    const limit = route.body === undefined ? 0 : (route.body.limit ?? deps.bodyLimit);
    // 100-continue is answered only now, once the caller is known and the size acceptable.
    if (/100-continue/i.test(req.headers.expect ?? "")) {
      const declared = Number(req.headers["content-length"] ?? 0);
      if (declared <= limit) res.writeContinue();
    }
    const raw = await readJsonBody(req, {
      limit,
      codes: CP_CODES,
      ...(route.body?.optional === undefined ? {} : { optional: route.body.optional }),
    });
    const body = route.body?.validate === undefined ? raw : route.body.validate(raw);

    const result = await route.handler({
      caller,
      params,
      query,
      body,
      req,
      res,
      clientIp,
      requestUrl: url.href,
      requestId,
      signal,
    });
    send(res, serialize(result), { "x-request-id": requestId, ...connectionHeader() });
  } catch (e) {
    const r = errorResponse(e, requestId, { overrides, wwwAuthenticate: WWW_AUTHENTICATE });
    errorCode = r.code;
    if (r.status >= 500) {
      deps.logger.error({ request_id: requestId, route: routeLabel, err: e }, "request failed");
    }
    send(res, serialize({ status: r.status, body: r.body, headers: r.headers }), {
      "x-request-id": requestId,
      ...connectionHeader(),
    });
  }
}
