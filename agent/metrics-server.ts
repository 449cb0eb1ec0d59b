import { createServer } from "node:http";
import { fail } from "../lib/errors.ts";
import { isLoopbackHost } from "../lib/http/host-port.ts";
import { closeNow, listenTcp } from "../lib/http/listen.ts";
import type { Registry } from "../lib/metrics/registry.ts";

/**
 * Prometheus `/metrics` on a loopback address (config metrics.listen), for `agentd run` and
 * local mode alike: a scraper on the same host (or a node exporter's textfile relay) reads
 * it; nothing on the LAN can. `beforeRender` refreshes the gauges that are computed from the
 * time (heartbeat lag) just before a scrape.
 */
export interface MetricsServer {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(o: {
  readonly host: string;
  readonly port: number;
  readonly registry: Registry;
  readonly beforeRender?: () => void;
}): Promise<MetricsServer> {
  if (!isLoopbackHost(o.host)) {
    throw fail("AGENTD_E_CONFIG_RANGE", "metrics.listen must be a loopback address", {
      host: o.host,
    });
  }
  const server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    o.beforeRender?.();
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end(o.registry.render());
  });
  const address = await listenTcp(server, o.port, o.host);
  let closed: Promise<void> | undefined;
  return {
    ...address,
    close: () => {
      closed ??= closeNow(server);
      return closed;
    },
  };
}
