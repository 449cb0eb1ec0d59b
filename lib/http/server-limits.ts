import type { ServerOptions } from "node:http";

/**
 * The limits every agentd HTTP server runs with (the control plane's API, the agent's local
 * API): how long a client may take to send its headers and its whole request, how long an idle
 * keep-alive connection stays, and how large the headers may be. Node's own defaults are far
 * more patient (a request may take 300 s): a local client holding a slow body kept a
 * connection of the local API for 304 s (issue 15).
 */

export interface ServerTimeouts {
  /** Time to receive the request headers (slowloris). Default 10 s. */
  readonly headersMs?: number;
  /** Time to receive the whole request; not the response, so long polls are unaffected. Default 30 s. */
  readonly requestMs?: number;
  /** Idle time before a keep-alive connection is closed. Default 5 s. */
  readonly keepAliveMs?: number;
  /** Time to finish the TLS handshake (HTTPS servers). Default 10 s. */
  readonly handshakeMs?: number;
  /**
   * How often Node looks for requests past their header or request timeout: a timeout is
   * enforced within this much of its limit (Node's default is 30 s). Default 1 s.
   */
  readonly checkMs?: number;
}

export const SERVER_TIMEOUTS: Readonly<Required<ServerTimeouts>> = Object.freeze({
  headersMs: 10_000,
  requestMs: 30_000,
  keepAliveMs: 5_000,
  handshakeMs: 10_000,
  checkMs: 1_000,
});

/** Largest request head (request line and headers) and most headers a request may carry. */
export const MAX_HEADER_BYTES = 16 * 1024;
export const MAX_HEADERS_COUNT = 64;

/**
 * The `node:http` / `node:https` server options for these limits, `timeouts` overriding the
 * defaults (tests shorten them). Duplicate headers are not joined: a server that needs exactly
 * one of a header counts them in `rawHeaders` (target.ts `singleHeader`). Set
 * `server.maxHeadersCount = MAX_HEADERS_COUNT` as well: Node takes it only as a property.
 */
export function httpServerOptions(timeouts: ServerTimeouts = {}): ServerOptions {
  const t = { ...SERVER_TIMEOUTS, ...timeouts };
  return {
    headersTimeout: t.headersMs,
    requestTimeout: t.requestMs,
    keepAliveTimeout: t.keepAliveMs,
    connectionsCheckingInterval: t.checkMs,
    keepAlive: true,
    noDelay: true,
    maxHeaderSize: MAX_HEADER_BYTES,
    joinDuplicateHeaders: false,
  };
}
