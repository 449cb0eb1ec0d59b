import type { Command } from "commander";
import { stringify as toToml } from "smol-toml";
import { redactedConfig } from "../../lib/config/load.ts";
import { globalsOf, loadCliConfig } from "../config-context.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";

export function registerConfig(program: Command, io: CliIo, run: Run): void {
  const config = program.command("config").description("the agent's configuration");
  config
    .command("check")
    .description("validate the configuration (file, AGENTD_* variables, flags); exit 2 if invalid")
    .option("--json", "machine-readable output", false)
    .action((opts: { json: boolean }, cmd: Command) =>
      run(opts.json, () => {
        const loaded = loadCliConfig(io, globalsOf(cmd));
        printResult(io, opts.json, { valid: true, file: loaded.file }, "ok");
        return 0;
      }),
    );
  config
    .command("show")
    .description("print the effective configuration, secrets redacted")
    .option("--json", "machine-readable output (with each key's origin)", false)
    .action((opts: { json: boolean }, cmd: Command) =>
      run(opts.json, () => {
        const loaded = loadCliConfig(io, globalsOf(cmd));
        const shown = redactedConfig(loaded.config);
        printResult(
          io,
          opts.json,
          { file: loaded.file, config: shown, origins: loaded.origins },
          toToml(shown),
        );
        return 0;
      }),
    );
}
