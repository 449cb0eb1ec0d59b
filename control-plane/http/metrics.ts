import { METHODS } from "../../lib/http/router.ts";
import type { Metric, Registry } from "../../lib/metrics/registry.ts";

/**
 * Request metrics with bounded labels: the route *template* (never the raw path, which holds
 * worker ids), the method (folded to `_other` outside the few this API uses: the method is
 * whatever the client typed) and the status code.
 */

/** The route label for requests no template matched. */
export const UNMATCHED = "_unmatched";

export type WsDropReason = "missed_pong" | "backpressure" | "too_large" | "stream_limit";

export interface HttpMetrics {
  request(route: string, method: string, status: number, seconds: number): void;
  wsConnections(delta: number): void;
  wsDropped(reason: WsDropReason): void;
}

const LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60,
];

export function createHttpMetrics(registry: Registry): HttpMetrics {
  const requests: Metric = registry.counter(
    "agentd_cp_http_requests_total",
    "HTTP requests by route template, method and status.",
    ["route", "method", "status"],
  );
  const latency: Metric = registry.histogram(
    "agentd_cp_http_request_duration_seconds",
    "Time from request headers to the end of the response, by route template.",
    LATENCY_BUCKETS,
    ["route"],
  );
  const open: Metric = registry.gauge("agentd_cp_ws_connections", "Open WebSocket streams.");
  const dropped: Metric = registry.counter(
    "agentd_cp_ws_dropped_total",
    "WebSocket streams closed by the server, by reason.",
    ["reason"],
  );
  let openCount = 0;
  return {
    request(route, method, status, seconds) {
      const m = (METHODS as readonly string[]).includes(method) ? method : "_other";
      requests.inc({ route, method: m, status: String(status) });
      latency.observe({ route }, seconds);
    },
    wsConnections(delta) {
      openCount += delta;
      open.set({}, openCount);
    },
    wsDropped(reason) {
      dropped.inc({ reason });
    },
  };
}

/** For servers built without a registry. */
export const noMetrics: HttpMetrics = {
  request: () => {},
  wsConnections: () => {},
  wsDropped: () => {},
};
