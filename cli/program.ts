import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import type { CliIo } from "./io.ts";
import { reportError } from "./output.ts";

type Register = (program: Command, io: CliIo, run: Run) => void;

/**
 * The verbs and the modules that define them, in help order. Only the module of the verb
 * given is imported (a command module imports what its verb needs: the control plane, the
 * simulators, PostgreSQL's client…, and `agentd run` should not pay for all of them at start,
 * bench/agent.ts); help, or a verb not listed, imports all.
 */
const VERBS: readonly {
  readonly names: readonly string[];
  readonly load: () => Promise<Register[]>;
}[] = [
  { names: ["init"], load: async () => [(await import("./commands/init.ts")).registerInit] },
  { names: ["enroll"], load: async () => [(await import("./commands/enroll.ts")).registerEnroll] },
  { names: ["run"], load: async () => [(await import("./commands/run.ts")).registerRun] },
  { names: ["status"], load: async () => [(await import("./commands/status.ts")).registerStatus] },
  {
    names: ["miners", "eligibility", "logs", "maintenance", "mining", "services"],
    load: async () => [(await import("./commands/local-views.ts")).registerLocalViews],
  },
  { names: ["doctor"], load: async () => [(await import("./commands/doctor.ts")).registerDoctor] },
  { names: ["owner"], load: async () => [(await import("./commands/owner.ts")).registerOwner] },
  {
    names: ["consent"],
    load: async () => [(await import("./commands/consent.ts")).registerConsent],
  },
  { names: ["policy"], load: async () => [(await import("./commands/policy.ts")).registerPolicy] },
  { names: ["config"], load: async () => [(await import("./commands/config.ts")).registerConfig] },
  { names: ["log"], load: async () => [(await import("./commands/log.ts")).registerLog] },
  { names: ["audit"], load: async () => [(await import("./commands/audit.ts")).registerAudit] },
  {
    names: ["sim"],
    load: async () => [
      (await import("./commands/sim-pool.ts")).registerSimPool,
      (await import("./commands/sim-asic.ts")).registerSimAsic,
      (await import("./commands/sim-meter.ts")).registerSimMeter,
    ],
  },
  {
    names: ["stratum"],
    load: async () => [(await import("./commands/stratum.ts")).registerStratum],
  },
  { names: ["cp"], load: async () => [(await import("./commands/cp.ts")).registerCp] },
  { names: ["devnet"], load: async () => [(await import("./commands/devnet.ts")).registerDevnet] },
  {
    names: ["driver-host"],
    load: async () => [(await import("./commands/driver-host.ts")).registerDriverHost],
  },
];

/** The root options that take a value: their value is not the verb. */
const VALUED_ROOT_OPTIONS = new Set(["--config", "--set", "--log-level"]);

/** The verb of argv (the first word that is neither an option nor an option's value). */
function verbOf(argv: readonly string[]): string | null {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (VALUED_ROOT_OPTIONS.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith("-")) continue;
    return a;
  }
  return null;
}

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

  const verb = verbOf(argv);
  const wanted = VERBS.filter((v) => verb !== null && v.names.includes(verb));
  const help = argv.includes("--help") || argv.includes("-h");
  for (const v of wanted.length > 0 && !(help && verb === null) ? wanted : VERBS) {
    for (const register of await v.load()) register(program, io, run);
  }
  // Every subcommand reports usage errors like the root does and never exits by itself.
  for (const cmd of allCommands(program)) {
    cmd.exitOverride().configureOutput(program.configureOutput());
    if (cmd.commands.length === 0 || hasOwnAction(cmd)) {
      for (const o of globalOptions()) cmd.addOption(o);
    }
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

/**
 * Every verb registered, for documentation checks (test/readmes.test.ts): the command tree as
 * `agentd --help` builds it. Nothing runs.
 */
export async function commandTree(io: CliIo): Promise<Command> {
  const program = new Command("agentd");
  const run: Run = async () => {};
  for (const v of VERBS) for (const register of await v.load()) register(program, io, run);
  return program;
}

/**
 * A verb that runs by itself and also has subverbs (`agentd miners`, `agentd miners probe`):
 * it takes the global options too. Commander keeps the handler in a field of its own.
 */
function hasOwnAction(cmd: Command): boolean {
  return (cmd as unknown as { _actionHandler?: unknown })._actionHandler != null;
}

function allCommands(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allCommands(c)]);
}
