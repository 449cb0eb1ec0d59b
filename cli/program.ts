import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { registerAudit } from "./commands/audit.ts";
import { registerConfig } from "./commands/config.ts";
import { registerConsent } from "./commands/consent.ts";
import { registerCp } from "./commands/cp.ts";
import { registerDevnet } from "./commands/devnet.ts";
import { registerDoctor } from "./commands/doctor.ts";
import { registerEnroll } from "./commands/enroll.ts";
import { registerInit } from "./commands/init.ts";
import { registerLocalViews } from "./commands/local-views.ts";
import { registerLog } from "./commands/log.ts";
import { registerOwner } from "./commands/owner.ts";
import { registerPolicy } from "./commands/policy.ts";
import { registerRun } from "./commands/run.ts";
import { registerSimAsic } from "./commands/sim-asic.ts";
import { registerSimPool } from "./commands/sim-pool.ts";
import { registerStatus } from "./commands/status.ts";
import { registerStratum } from "./commands/stratum.ts";
import type { CliIo } from "./io.ts";
import { reportError } from "./output.ts";

/** Runs a command body, turning its result or error into the process exit code. */
export type Run = (json: boolean, body: () => number | Promise<number>) => Promise<void>;

export const VERSION: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  }
).version;

/**
 * Parses argv and runs one command; resolves to the exit code (DOCUMENTS.md section 7:
 * 0 ok, 1 failure, 2 usage or config error, 3 verification failed or denied).
 * Nothing here calls process.exit: the entry point does, once.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let exitCode = 0;
  const run: Run = async (json, body) => {
    try {
      exitCode = await body();
    } catch (err) {
      exitCode = reportError(io, json, err);
    }
  };

  const program = new Command("agentd")
    .description("agentd: the machine-side agent of a consent-first Bitcoin mining pool")
    .version(VERSION, "-V, --version", "print the version alone")
    // The root's options count only before the command, so that a command may have an option
    // of the same name (`agentd policy publish --version N`, DOCUMENTS.md section 7). The
    // global options are declared on every leaf command as well (below), so they are still
    // accepted after it.
    .enablePositionalOptions()
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout(s),
      writeErr: (s) => io.stderr(s),
      outputError: (s, write) => write(`agentd: AGENTD_E_USAGE: ${s.replace(/^error: /, "")}`),
    });
  for (const o of globalOptions()) program.addOption(o);

  registerInit(program, io, run);
  registerEnroll(program, io, run);
  registerRun(program, io, run);
  registerStatus(program, io, run);
  registerLocalViews(program, io, run);
  registerDoctor(program, io, run);
  registerOwner(program, io, run);
  registerConsent(program, io, run);
  registerPolicy(program, io, run);
  registerConfig(program, io, run);
  registerLog(program, io, run);
  registerAudit(program, io, run);
  registerSimPool(program, io, run);
  registerSimAsic(program, io, run);
  registerStratum(program, io, run);
  registerCp(program, io, run);
  registerDevnet(program, io, run);
  // Every subcommand reports usage errors like the root does and never exits by itself.
  for (const cmd of allCommands(program)) {
    cmd.exitOverride().configureOutput(program.configureOutput());
    if (cmd.commands.length === 0) for (const o of globalOptions()) cmd.addOption(o);
  }

  try {
    await program.parseAsync([...argv], { from: "user" });
  } catch (err) {
    if (err instanceof CommanderError) {
      // --version, --help: exit 0; anything commander refused is a usage error.
      return err.exitCode === 0 ? 0 : 2;
    }
    return reportError(io, false, err);
  }
  return exitCode;
}

/** Options every command accepts (GlobalOptions in config-context.ts); fresh objects per command. */
function globalOptions(): Option[] {
  return [
    new Option(
      "--config <file>",
      "config file (default /etc/agentd/agentd.toml; or AGENTD_CONFIG)",
    ),
    new Option(
      "--set <key=value>",
      "set a config key, e.g. --set stratum.listen=0.0.0.0:3333 (repeatable)",
    ).argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]),
    new Option("--log-level <level>", "log level (config log.level)"),
  ];
}

function allCommands(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allCommands(c)]);
}
