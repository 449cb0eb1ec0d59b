import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { type Clock, systemClock } from "../../lib/clock.ts";
import { DEFAULT_BODY_LIMIT } from "../../lib/http/body.ts";
import { listenTcp } from "../../lib/http/listen.ts";
import { type RateLimitConfig, RateLimiter } from "../../lib/http/rate-limit.ts";
import { Router } from "../../lib/http/router.ts";
import {
  httpServerOptions,
  MAX_HEADERS_COUNT,
  SERVER_TIMEOUTS,
  type ServerTimeouts,
} from "../../lib/http/server-limits.ts";
import type { Logger } from "../../lib/log/logger.ts";
import { backgroundTimers, type Timers } from "../../lib/timers.ts";
import {
  type AuthDeps,
  type AuthenticateMachine,
  checkAllowedCallers,
  type FindApiKey,
} from "./auth.ts";
import { type HttpMetrics, noMetrics } from "./metrics.ts";
import { handleRequest } from "./pipeline.ts";
import type { Route } from "./route.ts";

/**
 * The control plane's HTTPS server: TLS 1.3 only, the request pipeline (pipeline.ts), bounded
 * timeouts, and a `close` that lets in-flight requests answer (long polls are woken through
 * their abort signal) before connections are ended.
 *
 * There is no CORS support at all: no origin is ever allowed, OPTIONS is routed like any
 * other method (so a preflight gets 404 or 405) and no response has `Access-Control-*`.
 */

/** The timeouts, shared with the agent's local API (lib/http/server-limits.ts). */
export type { ServerTimeouts };

/** What a WebSocket (or other upgrade) endpoint gets from the server it is attached to. */
export interface SharedDeps {
  readonly auth: AuthDeps;
  readonly ipLimiter: RateLimiter | undefined;
  readonly callerLimiter: RateLimiter | undefined;
  readonly logger: Logger;
  readonly metrics: HttpMetrics;
  readonly clock: Clock;
  readonly timers: Timers;
}

export interface UpgradeHandler {
  handle(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): Promise<void>;
}

export interface ApiServerOptions {
  readonly routes: readonly Route[];
  readonly tls: { readonly key: string | Buffer; readonly cert: string | Buffer };
  readonly findApiKey: FindApiKey;
  readonly authenticateMachine: AuthenticateMachine;
  readonly rateLimits?: { readonly perIp?: RateLimitConfig; readonly perCaller?: RateLimitConfig };
  /** Default body limit for routes that take a body and name none. Default 64 KiB. */
  readonly bodyLimit?: number;
  readonly clock?: Clock;
  /** For the close grace and the streams' pings. Default: unref'd (backgroundTimers). */
  readonly timers?: Timers;
  readonly logger: Logger;
  readonly metrics?: HttpMetrics;
  readonly timeouts?: ServerTimeouts;
  /** Builds the upgrade handler (ws.ts `createWsEndpoint`) with the server's auth and limits. */
  readonly onUpgrade?: (shared: SharedDeps) => UpgradeHandler;
}

export interface ApiServer {
  readonly server: Server;
  /** Listens; resolves with the bound address (port 0 picks one). */
  listen(port: number, host: string): Promise<{ host: string; port: number }>;
  /**
   * Stops accepting, wakes long polls, closes idle keep-alive connections and upgraded
   * streams, and after `graceMs` (default 5 s) ends whatever connection is left.
   */
  close(graceMs?: number): Promise<void>;
}

export function createApiServer(options: ApiServerOptions): ApiServer {
  for (const r of options.routes) checkAllowedCallers(`${r.method} ${r.path}`, r.auth);
  const router = new Router<Route>(options.routes);
  const clock = options.clock ?? systemClock;
  const metrics = options.metrics ?? noMetrics;
  const limits = options.rateLimits ?? {};
  const shared: SharedDeps = {
    auth: { findApiKey: options.findApiKey, authenticateMachine: options.authenticateMachine },
    ipLimiter: limits.perIp === undefined ? undefined : new RateLimiter(limits.perIp, clock),
    callerLimiter:
      limits.perCaller === undefined ? undefined : new RateLimiter(limits.perCaller, clock),
    logger: options.logger,
    metrics,
    clock,
    timers: options.timers ?? backgroundTimers,
  };
  const t = options.timeouts ?? {};
  const server = createServer({
    key: options.tls.key,
    cert: options.tls.cert,
    minVersion: "TLSv1.3",
    maxVersion: "TLSv1.3",
    handshakeTimeout: t.handshakeMs ?? SERVER_TIMEOUTS.handshakeMs,
    ...httpServerOptions(t),
  });
  server.maxHeadersCount = MAX_HEADERS_COUNT;

  let closing = false;
  const inflight = new Set<AbortController>();
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.on("tlsClientError", (err: Error) => {
    options.logger.debug({ err: { message: err.message } }, "TLS handshake refused");
  });

  const deps = {
    router,
    auth: shared.auth,
    ipLimiter: shared.ipLimiter,
    callerLimiter: shared.callerLimiter,
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    logger: options.logger,
    metrics,
    closing: () => closing,
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const controller = new AbortController();
    inflight.add(controller);
    res.once("close", () => {
      inflight.delete(controller);
      controller.abort();
    });
    if (closing) controller.abort();
    handleRequest(deps, req, res, controller.signal).catch((err: unknown) => {
      options.logger.error({ err }, "request pipeline failed");
      res.destroy();
    });
  };
  server.on("request", onRequest);
  // With this listener Node no longer sends "100 Continue" by itself: the pipeline sends it
  // once the caller is authenticated and the declared size fits.
  server.on("checkContinue", onRequest);

  const upgrade = options.onUpgrade?.(shared);
  if (upgrade !== undefined) {
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (closing) {
        socket.destroy();
        return;
      }
      upgrade.handle(req, socket, head);
    });
  }

  return {
    server,
    listen: (port, host) => listenTcp(server, port, host),
    async close(graceMs = 5_000) {
      if (closing) return;
      closing = true;
      const closed = new Promise<void>((resolve) => {
        if (!server.listening) resolve();
        else server.close(() => resolve());
      });
      for (const c of inflight) c.abort();
      server.closeIdleConnections();
      await upgrade?.close();
      const timer = shared.timers.setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, graceMs);
      await closed;
      shared.timers.clearTimeout(timer);
    },
  };
}
