import { join, resolve } from "node:path";
import type { Command } from "commander";
import { readPublicKeyFile } from "../../lib/crypto/key-files.ts";
import { parseHostPort } from "../../lib/http/host-port.ts";
import { createLogger, type LogLevel } from "../../lib/log/logger.ts";
import { globalsOf, loadCliConfig } from "../config-context.ts";
import type { CliIo } from "../io.ts";
import { type Run, VERSION } from "../program.ts";
import { untilSignal } from "../signals.ts";
import { parseWorkerId } from "../time.ts";

const HELP = `
Runs the Stratum V1 proxy for ASICs under the policy guard on a local bundle file, with no
control plane (air-gapped farms, tests). Upstreams come from the policy; ASICs are accepted
only from its networks. The state dir keeps the persisted seq/version, the clock floor and the
audit log (audit.jsonl). The bundle file is watched: a newer bundle (for example one with
stop) is applied while running. The first stdout line is
{"ready": true, "host", "port", "worker", "decision"}; logs go to stderr. SIGTERM or SIGINT
stops it cleanly.
`;

export function registerStratum(program: Command, io: CliIo, run: Run): void {
  const stratum = program.command("stratum").description("the Stratum V1 proxy for ASICs");
  stratum
    .command("proxy")
    .description("run the proxy in local mode on a bundle file")
    .addHelpText("after", HELP)
    .requiredOption("--policy <bundle>", "bundle file {consent, publication}")
    .requiredOption("--owner-pub <file>", "the owner's public key (SPKI PEM)")
    .requiredOption("--cp-pub <file>", "the publication key (SPKI PEM)")
    .requiredOption("--worker <id>", "this machine's worker id")
    .option("--listen <host:port>", "where ASICs connect (config stratum.listen)")
    .option("--state-dir <dir>", "state directory (config paths.state_dir)")
    .action(
      (
        opts: {
          policy: string;
          ownerPub: string;
          cpPub: string;
          worker: string;
          listen?: string;
          stateDir?: string;
        },
        cmd: Command,
      ) =>
        run(false, async () => {
          const worker = parseWorkerId(opts.worker);
          // Checked as the flag it is (AGENTD_E_USAGE naming --listen), before the config is.
          if (opts.listen !== undefined) parseHostPort(opts.listen, "--listen");
          const dedicated = [
            ...(opts.listen === undefined
              ? []
              : [{ key: "stratum.listen", value: opts.listen, flag: "--listen" }]),
            ...(opts.stateDir === undefined
              ? []
              : [{ key: "paths.state_dir", value: resolve(opts.stateDir), flag: "--state-dir" }]),
          ];
          const { config } = loadCliConfig(io, globalsOf(cmd), dedicated);
          // Loaded only for this verb: every other command starts without the proxy's code.
          const { startLocalProxy } = await import("../../agent/local-proxy.ts");
          const { decisionToJson } = await import("../../policy-guard/decision.ts");
          const logger = createLogger({ level: config.log.level as LogLevel });
          const { host, port } = parseHostPort(config.stratum.listen, "stratum.listen");
          const local = await startLocalProxy({
            host,
            port,
            bundlePath: opts.policy,
            owner: readPublicKeyFile(opts.ownerPub),
            publication: readPublicKeyFile(opts.cpPub),
            worker,
            stateDir: config.paths.state_dir,
            config,
            clock: io.clock,
            logger,
            agentVersion: VERSION,
          });
          // Handlers first: a signal right after the ready line must still shut down cleanly.
          const stopped = untilSignal();
          io.stdout(
            `${JSON.stringify({
              ready: true,
              host: local.host,
              port: local.port,
              ...(local.metrics === null ? {} : { metrics: local.metrics }),
              worker,
              state_dir: config.paths.state_dir,
              audit_log: join(config.paths.state_dir, "audit.jsonl"),
              decision: decisionToJson(local.engine.current()),
            })}\n`,
          );
          await stopped;
          await local.close();
          return 0;
        }),
    );
}
