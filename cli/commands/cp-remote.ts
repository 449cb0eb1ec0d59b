import { resolve } from "node:path";
import type { Command } from "commander";
import type { ApiClient } from "../../control-plane/protocol/client-api.ts";
import type { FlagValue } from "../../lib/config/load.ts";
import { certificateDer } from "../../lib/crypto/x509.ts";
import { fail } from "../../lib/errors.ts";
import { readTrustedFile } from "../../lib/fs/trust.ts";
import { globalsOf, loadCliConfig } from "../config-context.ts";
import type { CliIo } from "../io.ts";

/**
 * What every `agentd cp` verb that talks to a running control plane shares: where it is
 * (`--url`, config `control_plane.url`), the CA to trust (`--ca`, config
 * `control_plane.ca_file`; never the system's roots), and the API key (`--api-key`, else
 * `AGENTD_CP_API_KEY`, config `cp_api_key`). All three go through the config loader, so the
 * usual precedence and validation apply (flags > environment > file) and the key stays a
 * redacted secret in `agentd config show`. The environment is the better place for the key:
 * a flag is visible to every user in the process list.
 */

export interface RemoteOpts {
  readonly url?: string;
  readonly ca?: string;
  readonly apiKey?: string;
  readonly json: boolean;
}

export function withRemoteOptions(cmd: Command): Command {
  return cmd
    .option("--url <url>", "the control plane's https URL (config control_plane.url)")
    .option("--ca <file>", "its CA certificate, PEM (config control_plane.ca_file)")
    .option("--api-key <key>", "API key (default: AGENTD_CP_API_KEY, config cp_api_key)")
    .option("--json", "machine-readable output", false);
}

export async function remoteClient(io: CliIo, cmd: Command, opts: RemoteOpts): Promise<ApiClient> {
  const dedicated: FlagValue[] = [];
  if (opts.url !== undefined) {
    dedicated.push({ key: "control_plane.url", value: opts.url, flag: "--url" });
  }
  if (opts.ca !== undefined) {
    dedicated.push({ key: "control_plane.ca_file", value: resolve(opts.ca), flag: "--ca" });
  }
  if (opts.apiKey !== undefined) {
    dedicated.push({ key: "cp_api_key", value: opts.apiKey, flag: "--api-key" });
  }
  const { config } = loadCliConfig(io, globalsOf(cmd), dedicated);
  const url = config.control_plane.url;
  const caFile = config.control_plane.ca_file;
  if (url === "") throw fail("AGENTD_E_USAGE", "--url (or config control_plane.url) is required");
  if (caFile === "")
    throw fail("AGENTD_E_USAGE", "--ca (or config control_plane.ca_file) is required");
  const caPem = readTrustedFile(caFile, "public-key").toString("utf8");
  try {
    certificateDer(caPem);
  } catch (cause) {
    throw fail(
      "AGENTD_E_USAGE",
      `--ca: ${caFile} is not a PEM certificate`,
      { path: caFile },
      cause,
    );
  }
  const { createApiClient } = await import("../../control-plane/protocol/client-api.ts");
  return createApiClient({
    url,
    caPem,
    clock: io.clock,
    keepAlive: false,
    ...(config.cp_api_key === "" ? {} : { apiKey: config.cp_api_key }),
  });
}

/** Runs `body` with a client and closes it whatever happens. */
export async function withClient<T>(
  io: CliIo,
  cmd: Command,
  opts: RemoteOpts,
  body: (client: ApiClient) => Promise<T>,
): Promise<T> {
  const client = await remoteClient(io, cmd, opts);
  try {
    return await body(client);
  } finally {
    client.close();
  }
}
