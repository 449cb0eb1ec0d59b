import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import { enrollMachine } from "../../agent/enrollment.ts";
import { collectHostFacts } from "../../agent/host-facts.ts";
import { readPublicKeyFile } from "../../lib/crypto/key-files.ts";
import { fail } from "../../lib/errors.ts";
import { globalsOf, loadCliConfig } from "../config-context.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import { type Run, VERSION } from "../program.ts";

const HELP = `
Registers this machine's key (made first if missing, as agentd init does) with the control
plane named in the owner's enrollment token, after checking that the server's CA and root key
are the ones the token pins. The machine is pinned to the owner key given with --owner-pub
(the owner's, never one the control plane sends): a control plane that registers it under
another owner is refused. Keeps the pins in STATE_DIR/enrollment.json (0600); --force
enrolls an enrolled machine again. --token - reads the token from stdin (keeps the secret out
of the process list). Prints the worker id, or with --json
{"worker_id", "owner_id", "url", "root_kid"}.
`;

export function registerEnroll(program: Command, io: CliIo, run: Run): void {
  program
    .command("enroll")
    .description("register this machine with a control plane, pinned to the owner's key")
    .addHelpText("after", HELP)
    .requiredOption("--token <token>", "the owner's enrollment token (agentd1.…), or - for stdin")
    .requiredOption("--owner-pub <file>", "the owner's public key (PEM), from the owner")
    .option("--state-dir <dir>", "state directory (config paths.state_dir)")
    .option("--force", "enroll again, replacing the pins", false)
    .option("--json", "machine-readable output", false)
    .action(
      (
        opts: { token: string; ownerPub: string; stateDir?: string; force: boolean; json: boolean },
        cmd: Command,
      ) =>
        run(opts.json, async () => {
          const dedicated =
            opts.stateDir === undefined
              ? []
              : [{ key: "paths.state_dir", value: resolve(opts.stateDir), flag: "--state-dir" }];
          const { config } = loadCliConfig(io, globalsOf(cmd), dedicated);
          const token = (opts.token === "-" ? readFileSync(0, "utf8") : opts.token).trim();
          if (token === "") throw fail("AGENTD_E_USAGE", "--token: the token is empty");
          const record = await enrollMachine({
            stateDir: config.paths.state_dir,
            token,
            ownerPub: readPublicKeyFile(resolve(opts.ownerPub)),
            facts: collectHostFacts({ agentVersion: VERSION }),
            clock: io.clock,
            force: opts.force,
          });
          printResult(
            io,
            opts.json,
            {
              worker_id: record.worker_id,
              owner_id: record.owner_id,
              url: record.url,
              root_kid: record.root_kid,
            },
            record.worker_id,
          );
          return 0;
        }),
    );
}
