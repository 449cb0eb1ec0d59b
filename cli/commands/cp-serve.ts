import { resolve } from "node:path";
import type { Command } from "commander";
import { fail } from "../../lib/errors.ts";
import { parseHostPort } from "../../lib/http/host-port.ts";
import { createLogger, type LogLevel } from "../../lib/log/logger.ts";
import { globalsOf, loadCliConfig } from "../config-context.ts";
import type { CliIo } from "../io.ts";
import type { Run } from "../program.ts";
import { untilSignal } from "../signals.ts";

const HELP = `
Serves the control plane of DIR (made by agentd cp init) on HOST:PORT over HTTPS, TLS 1.3
only; port 0 picks a free port. The database is the one recorded at init unless --database
names another (several agentd cp serve processes may share one PostgreSQL, each with a copy
of DIR). The first stdout line is
{"ready": true, "host", "port", "url", "ca_sha256", "root_kid"}; logs go to stderr. SIGTERM
or SIGINT stops it cleanly (exit 0): in-flight requests answer, streams close, the database
is closed.
`;

/** `host:port`, `[v6]:port`; the port may be 0. */
export function parseListen(value: string): { host: string; port: number } {
  return parseHostPort(value, "--listen");
}

/** `RATE` or `RATE:BURST` (burst defaults to twice the rate); `0` switches the limit off. */
export function parseRate(
  flag: string,
  value: string,
): { ratePerSecond: number; burst: number } | null {
  const m = /^(\d+(?:\.\d+)?)(?::(\d+))?$/.exec(value);
  if (m === null) {
    throw fail(
      "AGENTD_E_USAGE",
      `${flag}: expected RATE or RATE:BURST, found ${JSON.stringify(value)}`,
    );
  }
  const rate = Number(m[1]);
  if (rate === 0) return null;
  const burst = m[2] === undefined ? Math.max(1, Math.ceil(2 * rate)) : Number(m[2]);
  if (burst < 1) throw fail("AGENTD_E_USAGE", `${flag}: the burst must be at least 1`);
  return { ratePerSecond: rate, burst };
}

export function registerCpServe(cp: Command, io: CliIo, run: Run): void {
  cp.command("serve")
    .description("run the control plane (HTTPS API, push streams)")
    .addHelpText("after", HELP)
    .requiredOption("--dir <dir>", "the control plane directory")
    .requiredOption("--listen <host:port>", "where to listen (port 0: any free port)")
    .option("--database <url>", "sqlite:FILE or postgres://… (default: the one of agentd cp init)")
    .option("--public-url <url>", "the https origin agents use (default https://HOST:PORT)")
    .option(
      "--rate-ip <rate[:burst]>",
      "requests per second per client address, 0: no limit (default 1000:2000)",
    )
    .option(
      "--rate-caller <rate[:burst]>",
      "requests per second per API key or machine, 0: no limit (default 20:100)",
    )
    .action(
      (
        opts: {
          dir: string;
          listen: string;
          database?: string;
          publicUrl?: string;
          rateIp?: string;
          rateCaller?: string;
        },
        cmd: Command,
      ) =>
        run(false, async () => {
          const listen = parseListen(opts.listen);
          const rateLimits = {
            ...(opts.rateIp === undefined ? {} : { perIp: parseRate("--rate-ip", opts.rateIp) }),
            ...(opts.rateCaller === undefined
              ? {}
              : { perCaller: parseRate("--rate-caller", opts.rateCaller) }),
          };
          const { config } = loadCliConfig(io, globalsOf(cmd));
          const logger = createLogger({ level: config.log.level as LogLevel });
          // Loaded here: every other agentd command starts without the control plane's code.
          const { serveControlPlane } = await import("../../control-plane/serve.ts");
          const { originOf } = await import("../../control-plane/protocol/client-http.ts");
          const serving = await serveControlPlane({
            dir: resolve(opts.dir),
            listen,
            ...(opts.database === undefined ? {} : { database: opts.database }),
            ...(opts.publicUrl === undefined ? {} : { publicUrl: originOf(opts.publicUrl) }),
            clock: io.clock,
            logger,
            rateLimits,
          });
          // Handlers first: a signal right after the ready line must still shut down cleanly.
          const stopped = untilSignal();
          io.stdout(
            `${JSON.stringify({
              ready: true,
              host: serving.host,
              port: serving.port,
              url: serving.url,
              ca_sha256: serving.caSha256,
              root_kid: serving.rootKid,
            })}\n`,
          );
          const signal = await stopped;
          logger.info({ signal }, "shutting down");
          await serving.close();
          return 0;
        }),
    );
}
