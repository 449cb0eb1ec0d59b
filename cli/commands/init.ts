import { resolve } from "node:path";
import type { Command } from "commander";
import { initMachineIdentity } from "../../agent/identity.ts";
import { globalsOf, loadCliConfig } from "../config-context.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";

export function registerInit(program: Command, io: CliIo, run: Run): void {
  program
    .command("init")
    .description(
      "create the machine key (machine.key.pem 0600, machine.pub.pem); print the worker id",
    )
    .option("--state-dir <dir>", "state directory (config paths.state_dir)")
    .option("--force", "replace an existing machine key", false)
    .option("--json", "machine-readable output", false)
    .action((opts: { stateDir?: string; force: boolean; json: boolean }, cmd: Command) =>
      run(opts.json, () => {
        const globals = globalsOf(cmd);
        const dedicated =
          opts.stateDir === undefined
            ? []
            : [{ key: "paths.state_dir", value: resolve(opts.stateDir), flag: "--state-dir" }];
        const { config } = loadCliConfig(io, globals, dedicated);
        const id = initMachineIdentity(config.paths.state_dir, { force: opts.force });
        printResult(
          io,
          opts.json,
          {
            worker_id: id.workerId,
            created: id.created,
            key_file: id.keyFile,
            pub_file: id.pubFile,
          },
          id.workerId,
        );
        return 0;
      }),
    );
}
