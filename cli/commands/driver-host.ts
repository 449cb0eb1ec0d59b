import { isAbsolute } from "node:path";
import { pathToFileURL } from "node:url";
import { type Command, Option } from "commander";
import { fail } from "../../lib/errors.ts";
import { createLogger, type LogLevel } from "../../lib/log/logger.ts";
import { type DriverRegistry, runDriverHost } from "../../plugins/host/host.ts";
import { MAX_REQUEST_BYTES } from "../../plugins/host/limits.ts";
import type { CliIo } from "../io.ts";
import type { Run } from "../program.ts";

interface DriverHostOpts {
  registryModule?: string;
  logLevel?: LogLevel;
}

/**
 * `agentd driver-host` (hidden): the driver host process (plugins/host/README.md). Not for
 * people: the agent's launcher starts it under the drivers' OS user, so that the
 * single-executable binary can run itself as the host. Its stdin and stdout are the channel
 * to the agent (one JSON message per line); its logs go to stderr, which the agent reads.
 */
export function registerDriverHost(program: Command, io: CliIo, run: Run): void {
  program
    .command("driver-host", { hidden: true })
    .description("the driver host process (started by the agent; not for people)")
    // Test-only: the tests' hostile and misbehaving drivers. No configuration key reaches it;
    // only the launcher's `testOnly` option (which the agent never sets) passes it.
    .addOption(new Option("--registry-module <file>").hideHelp())
    .action(async (opts: DriverHostOpts) =>
      run(false, async () => {
        const logger = createLogger({
          level: opts.logLevel ?? "info",
          base: { pid: process.pid, component: "driver-host" },
        });
        await runDriverHost({
          input: process.stdin,
          output: process.stdout,
          registry: await loadRegistry(opts.registryModule),
          clock: io.clock,
          timers: io.timers,
          logger,
          maxRequestBytes: MAX_REQUEST_BYTES,
          pid: process.pid,
        });
        return 0;
      }),
    );
}

async function loadRegistry(file: string | undefined): Promise<DriverRegistry> {
  if (file === undefined) return import("../../plugins/registry.ts");
  if (!isAbsolute(file)) throw fail("AGENTD_E_USAGE", "--registry-module: an absolute path");
  const m = (await import(pathToFileURL(file).href)) as Partial<DriverRegistry>;
  if (typeof m.createDriver !== "function" || typeof m.detectFamily !== "function") {
    throw fail("AGENTD_E_USAGE", "--registry-module: exports no createDriver and detectFamily");
  }
  return m as DriverRegistry;
}
