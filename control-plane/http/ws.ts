import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { type WebSocket, WebSocketServer } from "ws";
import { fail } from "../../lib/errors.ts";
import { errorResponse } from "../../lib/http/errors.ts";
import { parseQuery } from "../../lib/http/query.ts";
import { enforce, ipKey } from "../../lib/http/rate-limit.ts";
import { rawResponse } from "../../lib/http/respond.ts";
import { decodeParams, Router, routeOrRefuse, splitTarget } from "../../lib/http/router.ts";
import { stopwatch, type Timers } from "../../lib/timers.ts";
import {
  authenticate,
  type Caller,
  type CallerKind,
  callerKey,
  callerLabel,
  checkAllowedCallers,
  WWW_AUTHENTICATE,
} from "./auth.ts";
import { CP_CODES, RATE_LIMITED } from "./codes.ts";
import { UNMATCHED } from "./metrics.ts";
import { requestUrl } from "./request-url.ts";
import type { AuthorizeContext } from "./route.ts";
import type { SharedDeps, UpgradeHandler } from "./server.ts";
import type { StreamHub } from "./stream-hub.ts";

/**
 * WebSocket endpoints (`ws`, `noServer`) on the API's HTTPS server.
 *
 * The upgrade request goes through the same steps as any request, before the 101: per-IP
 * limit, route match, authentication (a machine sends `Authorization: AgentD …` and an
 * `AgentD-Proof` for `GET https://host/…/stream` on the upgrade request), per-caller limit,
 * worker ownership, parameters and query. A refusal is a plain HTTP response written on the
 * raw socket, which is then closed.
 *
 * Once open: one timer pings every stream every `pingIntervalMs` and terminates a stream that
 * did not answer the previous ping (a dead peer behind a NAT would otherwise hold memory for
 * hours); incoming messages are bounded by `maxMessageBytes` (`ws` closes with 1009); outgoing
 * pushes go through the StreamHub's backpressure bound.
 */

export interface WsContext {
  readonly caller: Caller;
  readonly params: Readonly<Record<string, string>>;
  readonly query: Readonly<Record<string, string>>;
  readonly ws: WebSocket;
  readonly req: IncomingMessage;
  readonly requestId: string;
  readonly clientIp: string;
}

export interface WsRoute {
  /** A template, as for HTTP routes: `/v1/workers/{id}/stream`. */
  readonly path: string;
  readonly auth: readonly CallerKind[];
  /** A machine caller must be the worker this parameter names (else 403). */
  readonly machineParam?: string;
  /** When given, the stream is kept in the hub under this path parameter's value. */
  readonly hubKey?: string;
  readonly query?: readonly string[];
  /** Resource-level authorisation before the 101 (ownership, quarantine); throws to refuse. */
  authorize?(ctx: AuthorizeContext): Promise<void>;
  /**
   * Called once the stream is open (after it was added to the hub). If it throws, the stream
   * is closed with 1011 (the upgrade has already happened: no HTTP error can be sent).
   */
  onOpen(ctx: WsContext): void;
}

export interface WsEndpointOptions {
  readonly routes: readonly WsRoute[];
  readonly hub: StreamHub;
  /** Default 25 s (below common NAT and proxy idle timeouts of 30–60 s). */
  readonly pingIntervalMs?: number;
  /** Largest incoming message. Default 64 KiB. */
  readonly maxMessageBytes?: number;
  /** How long `close` waits for close handshakes before terminating. Default 1 s. */
  readonly closeGraceMs?: number;
  /** For the pings and the close grace. Default: the server's (unref'd by default). */
  readonly timers?: Timers;
}

export interface WsEndpoint extends UpgradeHandler {
  /** Open streams (server side). */
  readonly clients: ReadonlySet<WebSocket>;
  /** One ping round (what the interval timer runs): for tests with injected timers. */
  sweep(): void;
}

export function createWsEndpoint(shared: SharedDeps, options: WsEndpointOptions): WsEndpoint {
  for (const r of options.routes) checkAllowedCallers(`WS ${r.path}`, r.auth);
  const router = new Router(
    options.routes.map((r) => ({ method: "GET" as const, path: r.path, ws: r })),
  );
  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    maxPayload: options.maxMessageBytes ?? 64 * 1024,
    perMessageDeflate: false,
  });
  const clients = new Set<WebSocket>();
  // Whether the stream answered the last ping; a WeakMap so a closed stream leaves nothing.
  const alive = new WeakMap<WebSocket, boolean>();
  const timers = options.timers ?? shared.timers;
  const { logger, metrics } = shared;

  const sweep = () => {
    for (const ws of clients) {
      if (alive.get(ws) !== true) {
        metrics.wsDropped("missed_pong");
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      ws.ping();
    }
  };
  const interval = timers.setInterval(sweep, options.pingIntervalMs ?? 25_000);

  const refuse = (
    socket: Duplex,
    err: unknown,
    requestId: string,
    route: string,
    elapsed: () => number,
  ) => {
    const r = errorResponse(err, requestId, { wwwAuthenticate: WWW_AUTHENTICATE });
    if (r.status >= 500) logger.error({ request_id: requestId, err }, "upgrade failed");
    metrics.request(route, "GET", r.status, elapsed());
    logger.info(
      { request_id: requestId, route, status: r.status, code: r.code },
      "ws upgrade refused",
    );
    if (!socket.writable) return void socket.destroy();
    socket.end(rawResponse(r.status, r.body, { ...r.headers, "x-request-id": requestId }), () =>
      socket.destroy(),
    );
  };

  const open = (
    ws: WebSocket,
    route: WsRoute,
    ctx: Omit<WsContext, "ws">,
    elapsed: () => number,
  ) => {
    clients.add(ws);
    alive.set(ws, true);
    metrics.wsConnections(1);
    metrics.request(route.path, "GET", 101, elapsed());
    const key = route.hubKey === undefined ? undefined : ctx.params[route.hubKey];
    const unregister = key === undefined ? () => {} : options.hub.add(key, ws);
    ws.on("pong", () => {
      alive.set(ws, true);
    });
    ws.on("error", (err: Error & { code?: string }) => {
      if (err.code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") metrics.wsDropped("too_large");
    });
    ws.once("close", (code: number) => {
      clients.delete(ws);
      unregister();
      metrics.wsConnections(-1);
      logger.info(
        { request_id: ctx.requestId, route: route.path, code, caller: callerLabel(ctx.caller) },
        "ws closed",
      );
    });
    logger.info(
      {
        request_id: ctx.requestId,
        route: route.path,
        status: 101,
        caller: callerLabel(ctx.caller),
        client_ip: ctx.clientIp,
      },
      "ws open",
    );
    try {
      route.onOpen({ ...ctx, ws });
    } catch (err) {
      logger.error({ request_id: ctx.requestId, route: route.path, err }, "stream open failed");
      ws.close(1011, "internal error");
    }
  };

  const upgradeSteps = async (
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    requestId: string,
    elapsed: () => number,
    setRoute: (p: string) => void,
  ) => {
    const clientIp = req.socket.remoteAddress ?? "";
    enforce(shared.ipLimiter, ipKey(clientIp), CP_CODES.rateLimited, RATE_LIMITED.address);
    const url = requestUrl(req);
    const { path, search } = splitTarget(req.url ?? "");
    const m = routeOrRefuse(router, req.method ?? "", path, CP_CODES);
    const route = m.route.ws;
    setRoute(route.path);
    const caller = await authenticate(req, route.auth, url.href, shared.auth);
    const key = callerKey(caller);
    if (key !== undefined) {
      enforce(shared.callerLimiter, key, CP_CODES.rateLimited, RATE_LIMITED.caller);
    }
    const params = decodeParams(m.rawParams);
    if (
      route.machineParam !== undefined &&
      caller.kind === "machine" &&
      params[route.machineParam] !== caller.workerId
    ) {
      throw fail("AGENTD_E_CP_FORBIDDEN", "a machine may only stream its own worker");
    }
    await route.authorize?.({ caller, params, req });
    const query = parseQuery(search, route.query);
    if ((req.headers.upgrade ?? "").toLowerCase() !== "websocket") {
      throw fail("AGENTD_E_SCHEMA", "this endpoint only accepts WebSocket upgrades", {
        schema: "request",
        pointer: "",
      });
    }
    wss.handleUpgrade(req, socket, head, (ws) =>
      open(ws, route, { caller, params, query, req, requestId, clientIp }, elapsed),
    );
  };

  return {
    clients,
    sweep,
    handle(req, socket, head) {
      socket.on("error", () => {});
      const requestId = randomUUID();
      const elapsed = stopwatch();
      let route = UNMATCHED;
      upgradeSteps(req, socket, head, requestId, elapsed, (p) => {
        route = p;
      }).catch((err: unknown) => refuse(socket, err, requestId, route, elapsed));
    },
    async close() {
      timers.clearInterval(interval);
      const all = [...clients];
      if (all.length > 0) {
        const closed = Promise.all(
          all.map((ws) => new Promise<void>((resolve) => ws.once("close", () => resolve()))),
        );
        for (const ws of all) ws.close(1001, "server closing");
        const timer = timers.setTimeout(() => {
          for (const ws of all) ws.terminate();
        }, options.closeGraceMs ?? 1000);
        await closed;
        timers.clearTimeout(timer);
      }
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
