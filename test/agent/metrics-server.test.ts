import { request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { type MetricsServer, startMetricsServer } from "../../agent/metrics-server.ts";
import { Registry } from "../../lib/metrics/registry.ts";

/** `/metrics` on a real loopback socket, and what keeps it off the LAN. */

const open: MetricsServer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((m) => m.close()));
});

function call(m: MetricsServer, method: string, path: string) {
  return new Promise<{ status: number; type: unknown; text: string }>((resolve, reject) => {
    const req = request({ host: m.host, port: m.port, method, path }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => {
        text += c.toString();
      });
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, type: res.headers["content-type"], text }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

describe("the metrics server", () => {
  it("serves the registry on GET /metrics, refreshed just before", async () => {
    const registry = new Registry();
    const scrapes = registry.counter("agentd_test_scrapes_total", "Scrapes.");
    const m = await startMetricsServer({
      host: "127.0.0.1",
      port: 0,
      registry,
      beforeRender: () => scrapes.inc({}),
    });
    open.push(m);
    expect(m.port).toBeGreaterThan(0);
    const first = await call(m, "GET", "/metrics?x=1");
    expect([first.status, first.type]).toEqual([200, "text/plain; version=0.0.4"]);
    expect(first.text).toContain("agentd_test_scrapes_total 1");
    expect((await call(m, "GET", "/metrics")).text).toContain("agentd_test_scrapes_total 2");
    expect((await call(m, "GET", "/")).status).toBe(404);
    expect((await call(m, "POST", "/metrics")).status).toBe(404);
  });

  it("listens on loopback only", async () => {
    for (const host of ["0.0.0.0", "::", "192.0.2.1"]) {
      await expect(
        startMetricsServer({ host, port: 0, registry: new Registry() }),
      ).rejects.toMatchObject({ code: "AGENTD_E_CONFIG_RANGE" });
    }
  });

  it("closes once, however often asked", async () => {
    const m = await startMetricsServer({ host: "127.0.0.1", port: 0, registry: new Registry() });
    const a = m.close();
    expect(m.close()).toBe(a);
    await a;
    await expect(call(m, "GET", "/metrics")).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });
});
