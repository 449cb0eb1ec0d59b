import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createGuardedProxy } from "../../agent/guarded-proxy.ts";
import { systemClock } from "../../lib/clock.ts";
import { loadConfig } from "../../lib/config/load.ts";
import { createLogger } from "../../lib/log/logger.ts";
import { Registry } from "../../lib/metrics/registry.ts";
import type { StratumProxy } from "../../stratum-client/proxy.ts";

/**
 * The proxy as the agent runs it, when its audit log cannot be written (disk full): a refused
 * connection must not throw out of the socket handler (that would end the process: any host
 * on the LAN could stop the agent), and the proxy goes on serving.
 */

const open: StratumProxy[] = [];
afterEach(async () => {
  for (const p of open.splice(0)) await p.close();
});

describe("the guarded proxy", () => {
  it("refuses a connection from outside the allowed networks even when the audit log fails", async () => {
    let attempts = 0;
    const proxy = createGuardedProxy({
      host: "127.0.0.1",
      port: 0,
      config: loadConfig({ env: {}, defaultPath: "/nonexistent/agentd.toml" }).config,
      clock: systemClock,
      logger: createLogger({ level: "silent" }),
      registry: new Registry(),
      audit: {
        append: () => {
          attempts++;
          throw new Error("ENOSPC: no space left on device");
        },
      },
      agentVersion: "0.1.0",
      engine: () => null,
    });
    open.push(proxy);
    const { port } = await proxy.listen();
    proxy.apply({
      allow: false,
      reasons: ["agent.audit_unwritable"],
      upstreams: [],
      networks: ["10.0.0.0/8"],
      maxWatts: null,
      maxTempC: null,
      jobClasses: null,
    });
    const closedBy = () =>
      new Promise<string>((resolve) => {
        const s = connect(port, "127.0.0.1");
        s.on("data", () => resolve("data"));
        s.on("error", () => resolve("closed"));
        s.on("close", () => resolve("closed"));
      });
    expect(await closedBy()).toBe("closed");
    expect(await closedBy()).toBe("closed");
    expect(attempts).toBe(2); // it tried to record each refusal
    expect(proxy.accounting.totals.accepted).toBe(0);
  });
});
