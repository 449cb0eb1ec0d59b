import type { Command } from "commander";
import { type FlagValue, type LoadedConfig, loadConfig } from "../lib/config/load.ts";
import { fail } from "../lib/errors.ts";
import type { CliIo } from "./io.ts";

/** The global options every command accepts (see `agentd --help`). */
export interface GlobalOptions {
  readonly config?: string;
  readonly set?: readonly string[];
  readonly logLevel?: string;
}

/**
 * Loads the config for a command: flags (`--set`, `--log-level`, and the command's own
 * dedicated flags such as `--state-dir`) over env over file over defaults.
 */
export function loadCliConfig(
  io: CliIo,
  globals: GlobalOptions,
  dedicated: readonly FlagValue[] = [],
): LoadedConfig {
  const flags: FlagValue[] = [];
  for (const item of globals.set ?? []) {
    const eq = item.indexOf("=");
    if (eq <= 0) {
      throw fail("AGENTD_E_USAGE", `--set: expected key=value, found ${JSON.stringify(item)}`);
    }
    flags.push({ key: item.slice(0, eq), value: item.slice(eq + 1), flag: "--set" });
  }
  if (globals.logLevel !== undefined) {
    flags.push({ key: "log.level", value: globals.logLevel, flag: "--log-level" });
  }
  flags.push(...dedicated);
  return loadConfig({ configPath: globals.config, env: io.env, flags });
}

/**
 * The global options of a command, given before or after it (`agentd --set a=1 config show
 * --set b=2`): `--set` values accumulate root first, the others take the innermost value.
 */
export function globalsOf(cmd: Command): GlobalOptions {
  const chain: Command[] = [];
  for (let c: Command | null = cmd; c !== null; c = c.parent) chain.unshift(c);
  const set: string[] = [];
  let config: string | undefined;
  let logLevel: string | undefined;
  for (const c of chain) {
    const o = c.opts<GlobalOptions>();
    set.push(...(o.set ?? []));
    config = o.config ?? config;
    logLevel = o.logLevel ?? logLevel;
  }
  return {
    set,
    ...(config === undefined ? {} : { config }),
    ...(logLevel === undefined ? {} : { logLevel }),
  };
}
