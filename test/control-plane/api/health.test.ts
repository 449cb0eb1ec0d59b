import { describe, expect, it } from "vitest";
import type { ApiContext } from "../../../control-plane/api/context.ts";
import { healthGroup, METRICS_CONTENT_TYPE } from "../../../control-plane/api/health.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import type { Store } from "../../../control-plane/store/store.ts";
import { fail } from "../../../lib/errors.ts";
import { until } from "../http/helpers.ts";
import { useTestCp } from "./harness.ts";

describe.each(["sqlite", "postgres"] as const)("probes and metrics (%s)", (backend) => {
  const start = useTestCp();

  it("answers /healthz and /readyz to anyone while the store answers", async () => {
    const t = await start({ backend, groups: (ctx) => [healthGroup(ctx)] });
    for (const [path, status] of [
      ["/healthz", "ok"],
      ["/readyz", "ready"],
    ] as const) {
      const r = await t.call("GET", path, { headers: { authorization: "Bearer whatever" } });
      expect([path, r.status]).toEqual([path, 200]);
      expect(validate("health-response", r.json)).toEqual({ status });
    }
  });

  it("answers /readyz 503 not_ready when the store does not, while /healthz stays ok", async () => {
    let down = false;
    const t = await start({
      backend,
      groups: (ctx: ApiContext) => {
        // Only ping is replaced; everything else is the real store (its methods called on
        // the store itself: they use private fields).
        const store = new Proxy(ctx.store, {
          get(target, prop) {
            if (prop === "ping") {
              return () =>
                down ? Promise.reject(fail("AGENTD_E_STORE", "connection refused")) : target.ping();
            }
            const v = Reflect.get(target, prop, target);
            return typeof v === "function" ? v.bind(target) : v;
          },
        }) as Store;
        return [healthGroup({ ...ctx, store })];
      },
    });
    expect((await t.call("GET", "/readyz")).status).toBe(200);
    down = true;
    const r = await t.call("GET", "/readyz");
    expect(r.status).toBe(503);
    expect(validate("health-response", r.json)).toEqual({ status: "not_ready" });
    expect(r.text).not.toContain("connection refused");
    expect((await t.call("GET", "/healthz")).json).toEqual({ status: "ok" });
  });

  it("serves the registry as Prometheus text to admins, operators and auditors only", async () => {
    const t = await start({ backend, groups: (ctx) => [healthGroup(ctx)] });
    t.ctx.metrics.counter("agentd_test_things_total", "Things.").inc({}, 3);
    await t.call("GET", "/healthz");
    await until(
      () => t.ctx.metrics.render().includes('route="/healthz"'),
      "the /healthz request counted",
    );
    for (const role of ["admin", "operator", "auditor"] as const) {
      const r = await t.call("GET", "/metrics", { apiKey: await t.apiKey(role) });
      expect([role, r.status]).toEqual([role, 200]);
      expect(r.headers["content-type"]).toBe(METRICS_CONTENT_TYPE);
      expect(r.text).toContain(
        "# TYPE agentd_test_things_total counter\nagentd_test_things_total 3\n",
      );
      expect(r.text).toContain(
        'agentd_cp_http_requests_total{route="/healthz",method="GET",status="200"} 1',
      );
    }
    const none = await t.call("GET", "/metrics");
    expect([none.status, none.json.error.code]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    const owner = await t.owner();
    const asOwner = await t.call("GET", "/metrics", { apiKey: owner.apiKey });
    expect([asOwner.status, asOwner.json.error.code]).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
    const asMachine = await t.call("GET", "/metrics", { machine: await t.machine(owner) });
    expect(asMachine.status).toBe(403);
  });
});
