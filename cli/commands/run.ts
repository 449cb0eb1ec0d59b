import { resolve } from "node:path";
import type { Command } from "commander";
import { startAgent } from "../../agent/daemon.ts";
import { collectHostFacts } from "../../agent/host-facts.ts";
import { splitHostPort } from "../../agent/local-proxy.ts";
import { createLogger, type LogLevel } from "../../lib/log/logger.ts";
import { globalsOf, loadCliConfig } from "../config-context.ts";
import type { CliIo } from "../io.ts";
import { type Run, VERSION } from "../program.ts";
import { untilSignal } from "../signals.ts";

const HELP = `
Runs the agent of an enrolled machine (agentd enroll first): attests, follows the owner's
policy (long poll and push), records every state change in the audit log, sends signed
heartbeats every heartbeat.interval_s and answers signed commands. The first stdout line is
{"ready": true, "worker_id", "url", "state", "api_socket", "stratum": {"host", "port"}}; logs
go to stderr. The Stratum proxy for ASICs listens on stratum.listen (port 0 allowed) and
forwards nothing while the owner's policy does not allow mining. The local API
listens on api.socket (0660): agentd status and agentd consent revoke --apply use it. SIGTERM or SIGINT stops it
cleanly (exit 0); a failed start exits non-zero with the reason.
`;

function parseHostPort(listen: string): { host: string; port: number } {
  const [host, port] = splitHostPort(listen);
  return { host, port };
}

export function registerRun(program: Command, io: CliIo, run: Run): void {
  program
    .command("run")
    .description("run the agent (an enrolled machine)")
    .addHelpText("after", HELP)
    .option("--state-dir <dir>", "state directory (config paths.state_dir)")
    .action((opts: { stateDir?: string }, cmd: Command) =>
      run(false, async () => {
        const dedicated =
          opts.stateDir === undefined
            ? []
            : [{ key: "paths.state_dir", value: resolve(opts.stateDir), flag: "--state-dir" }];
        const { config } = loadCliConfig(io, globalsOf(cmd), dedicated);
        const logger = createLogger({ level: config.log.level as LogLevel });
        const facts = collectHostFacts({ agentVersion: VERSION });
        const agent = await startAgent({
          stateDir: config.paths.state_dir,
          clock: io.clock,
          logger,
          agentVersion: VERSION,
          heartbeatIntervalS: config.heartbeat.interval_s,
          hostFacts: () => facts,
          apiSocket: config.api.socket,
          config,
          stratum: parseHostPort(config.stratum.listen),
        });
        // Handlers first: a signal right after the ready line must still shut down cleanly.
        const stopped = untilSignal();
        io.stdout(
          `${JSON.stringify({
            ready: true,
            worker_id: agent.workerId,
            url: agent.url,
            state: agent.state(),
            api_socket: agent.apiSocket,
            stratum: agent.stratum,
          })}\n`,
        );
        const why = await Promise.race([stopped, agent.terminated.then(() => "decommissioned")]);
        logger.info({ why }, "shutting down");
        await agent.close();
        return 0;
      }),
    );
}
