import { resolve } from "node:path";
import type { Command } from "commander";
import { startAgent } from "../../agent/daemon.ts";
import { readEnrollment } from "../../agent/enrollment.ts";
import { agentBinarySha256, collectHostFacts } from "../../agent/host-facts.ts";
import { parseHostPort } from "../../lib/http/host-port.ts";
import { createLogger, type LogLevel } from "../../lib/log/logger.ts";
import { logRing } from "../../lib/log/ring.ts";
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
forwards nothing while the owner's policy does not allow mining. The local API listens on
api.socket (0660) — agentd status, miners, policy show, eligibility, logs, mining
pause|resume and consent revoke --apply use it — and, with api.listen, on a loopback TCP port
with a bearer token (api.token, or the generated STATE_DIR/api-token, 0600); the ready line
then has "api": {"host", "port"}. With metrics.listen, Prometheus metrics are on
http://HOST:PORT/metrics ("metrics" in the ready line). SIGTERM or SIGINT stops it cleanly
(exit 0); a failed start exits non-zero with the reason.
`;

export function registerRun(program: Command, io: CliIo, run: Run): void {
  program
    .command("run")
    .description("run the agent (an enrolled machine)")
    .addHelpText("after", HELP)
    .option("--state-dir <dir>", "state directory (config paths.state_dir)")
    .option("--listen <host:port>", "where the Stratum proxy listens (config stratum.listen)")
    .action((opts: { stateDir?: string; listen?: string }, cmd: Command) =>
      run(false, async () => {
        const dedicated = [
          ...(opts.stateDir === undefined
            ? []
            : [{ key: "paths.state_dir", value: resolve(opts.stateDir), flag: "--state-dir" }]),
          ...(opts.listen === undefined
            ? []
            : [{ key: "stratum.listen", value: opts.listen, flag: "--listen" }]),
        ];
        const { config } = loadCliConfig(io, globalsOf(cmd), dedicated);
        const ring = logRing(1000);
        const logger = createLogger({ level: config.log.level as LogLevel, tee: ring });
        // The running binary is hashed once; everything else is collected at each attestation.
        const binarySha256 = agentBinarySha256();
        // MACs are reported HMAC'd under the worker id (agent/host-facts.ts says why).
        const macKey = readEnrollment(config.paths.state_dir)?.record.worker_id;
        const agent = await startAgent({
          stateDir: config.paths.state_dir,
          clock: io.clock,
          logger,
          agentVersion: VERSION,
          heartbeatIntervalS: config.heartbeat.interval_s,
          hostFacts: () =>
            collectHostFacts({
              agentVersion: VERSION,
              binarySha256,
              ...(macKey === undefined ? {} : { macKey }),
            }),
          apiSocket: config.api.socket,
          config,
          stratum: parseHostPort(config.stratum.listen),
          recentLogs: (n) => ring.lines(n),
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
            ...(agent.apiTcp === null ? {} : { api: agent.apiTcp }),
            ...(agent.metrics === null ? {} : { metrics: agent.metrics }),
          })}\n`,
        );
        const why = await Promise.race([stopped, agent.terminated.then(() => "decommissioned")]);
        logger.info({ why }, "shutting down");
        await agent.close();
        return 0;
      }),
    );
}
