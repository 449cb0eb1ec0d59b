import { defineRoute } from "../http/route.ts";
import type { HealthResponse } from "../protocol/schemas/api-basics.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { syncKeys } from "./keys.ts";

/**
 * Probes and metrics (docs/protocol.md section 5, "Probes, metrics, keys"). `/healthz` says
 * the process serves requests; `/readyz` that it can also reach its database and signs with
 * the newest key set, the very one the database holds (keys.ts syncKeys, which also picks up a
 * rotation made elsewhere and flags two different sets under one seq), so a load
 * balancer sends traffic only to instances that can answer it. `/metrics` is the Prometheus
 * text of the control plane's registry, for admins, operators and auditors only: it shows
 * traffic by endpoint, which is not for anyone on the network.
 */

/** Prometheus text exposition format 0.0.4. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export function healthGroup(ctx: ApiContext): ApiGroup {
  const healthz = defineRoute({
    method: "GET",
    path: "/healthz",
    auth: ["public"],
    async handler() {
      const body: HealthResponse = { status: "ok" };
      return { status: 200, body };
    },
  });

  const readyz = defineRoute({
    method: "GET",
    path: "/readyz",
    auth: ["public"],
    async handler() {
      try {
        await ctx.store.ping();
      } catch (err) {
        // The reason stays in the log; the probe's answer is only ready or not.
        ctx.logger.warn({ err }, "readiness check: the store does not answer");
        const body: HealthResponse = { status: "not_ready" };
        return { status: 503, body, headers: { "retry-after": "1" } };
      }
      // Keys older than the database's newest set, or another set under the same seq, sign
      // what agents refuse: not ready.
      const keys = await syncKeys(ctx);
      if (keys === "stale" || keys === "conflict") {
        const body: HealthResponse = { status: "not_ready" };
        return { status: 503, body, headers: { "retry-after": "60" } };
      }
      const body: HealthResponse = { status: "ready" };
      return { status: 200, body };
    },
  });

  const metrics = defineRoute({
    method: "GET",
    path: "/metrics",
    auth: ["admin", "operator", "auditor"],
    async handler() {
      return {
        status: 200,
        text: ctx.metrics.render(),
        headers: { "content-type": METRICS_CONTENT_TYPE },
      };
    },
  });

  return { routes: [healthz, readyz, metrics] };
}
