import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { fail, isAgentdError } from "../lib/errors.ts";
import { writeFileAtomic } from "../lib/fs/atomic.ts";
import { readTrustedFile } from "../lib/fs/trust.ts";

/**
 * The bearer token of the local API's TCP listener: `api.token` when configured, else one
 * generated once into the state directory (mode 0600, refused if anyone else can read it) so
 * local tools with read access to the agent's files can use it and nobody else can.
 */
export const API_TOKEN_FILE = "api-token";

export function apiToken(stateDir: string, configured: string): string {
  if (configured !== "") return configured;
  const path = join(stateDir, API_TOKEN_FILE);
  try {
    const token = readTrustedFile(path, "private-key").toString("utf8").trim();
    if (!/^[A-Za-z0-9_-]{43}$/.test(token)) {
      throw fail("AGENTD_E_FILE_CORRUPT", `${path} does not hold a local API token`, { path });
    }
    return token;
  } catch (err) {
    if (!isAgentdError(err) || err.code !== "AGENTD_E_IO" || err.context.errno !== "ENOENT") {
      throw err;
    }
  }
  const token = randomBytes(32).toString("base64url");
  writeFileAtomic(path, `${token}\n`, { mode: 0o600 });
  return token;
}
