import { createServer, type Server } from "node:http";
import { fail } from "../lib/errors.ts";
import type { Registry } from "../lib/metrics/registry.ts";

/**
 * Prometheus `/metrics` on a loopback address (config metrics.listen): a scraper on the same
 * host (or a node exporter's textfile relay) reads it; nothing on the LAN can. `beforeRender`
 * refreshes the gauges that are computed from the time (heartbeat lag) just before a scrape.
 */
export interface MetricsServer {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

export async function startMetricsServer(o: {
  readonly host: string;
  readonly port: number;
  readonly registry: Registry;
  readonly beforeRender?: () => void;
}): Promise<MetricsServer> {
  if (!LOOPBACK.has(o.host)) {
    throw fail("AGENTD_E_CONFIG_RANGE", "metrics.listen must be a loopback address", {
      host: o.host,
    });
  }
  const server: Server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    o.beforeRender?.();
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end(o.registry.render());
  });
  const address = await new Promise<{ host: string; port: number }>((resolve, reject) => {
    server.once("error", reject).listen(o.port, o.host, () => {
      server.off("error", reject);
      const a = server.address();
      if (a === null || typeof a === "string") return reject(new Error("no address"));
      resolve({ host: a.address, port: a.port });
    });
  });
  let closed: Promise<void> | undefined;
  return {
    ...address,
    close: () => {
      closed ??= new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
