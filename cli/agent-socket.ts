import { resolve } from "node:path";
import type { Command } from "commander";
import { readLocalApiRecord } from "../agent/local-api-record.ts";
import type { LoadedConfig } from "../lib/config/load.ts";
import { globalsOf, loadCliConfig } from "./config-context.ts";
import type { CliIo } from "./io.ts";

/**
 * How every verb that talks to the running agent finds it (`status`, `doctor`, `miners`,
 * `logs`, `services`, `mining`, `consent revoke --apply`…): `--state-dir D` names the agent's
 * state directory, and the agent keeps the address of its local API there while it runs
 * (agent/local-api-record.ts) — so the devnet's agent, or a second agent on another directory,
 * is found without knowing where its socket is. An `api.socket` given explicitly (--set, env,
 * config file) wins; without a record, the configured socket is tried.
 */
export const STATE_DIR_HELP =
  "the running agent's state directory: its local API is found through it (config paths.state_dir)";

export function withStateDir(c: Command): Command {
  return c.option("--state-dir <dir>", STATE_DIR_HELP);
}

export interface AgentAddress {
  readonly socket: string;
  /** Where the socket came from, for messages: "api.socket", or the record's path. */
  readonly from: string;
  readonly loaded: LoadedConfig;
}

export function agentAddress(io: CliIo, cmd: Command): AgentAddress {
  const stateDir = (cmd.opts() as { stateDir?: string }).stateDir;
  const loaded = loadCliConfig(
    io,
    globalsOf(cmd),
    stateDir === undefined
      ? []
      : [{ key: "paths.state_dir", value: resolve(stateDir), flag: "--state-dir" }],
  );
  const configured = loaded.config.api.socket;
  if (loaded.origins["api.socket"] !== undefined && loaded.origins["api.socket"] !== "default") {
    return { socket: configured, from: "api.socket", loaded };
  }
  const record = readLocalApiRecord(loaded.config.paths.state_dir);
  if (record !== null) {
    return { socket: record.socket, from: `${loaded.config.paths.state_dir}`, loaded };
  }
  return { socket: configured, from: "api.socket", loaded };
}

/** The socket only. */
export function agentSocket(io: CliIo, cmd: Command): string {
  return agentAddress(io, cmd).socket;
}
