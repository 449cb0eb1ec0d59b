/**
 * Miner credentials (web UI passwords, API tokens). Each miner may have its own file, mode
 * 0600 and owned by the agent's user (lib/fs/trust.ts refuses anything looser), holding
 * `{"username": "...", "password": "..."}`; without one, the family's factory default applies
 * (stock Antminer: root/root). The agent reads the file and hands the values to the driver
 * host with each request; they are never logged (the logger redacts `password` by name) and
 * never put in an error.
 */
import { AgentdError } from "../lib/errors.ts";
import { readTrustedFile } from "../lib/fs/trust.ts";
import { parseJsonObjectStrict } from "../lib/json/strict-parse.ts";
import type { Credentials, Family } from "./driver.ts";

/** What each family ships with; null: the firmware asks for none (ESP-Miner has no login). */
export const DEFAULT_CREDENTIALS: Readonly<Record<Family, Credentials | null>> = Object.freeze({
  "antminer-s9": { username: "root", password: "root" },
  "antminer-s19": { username: "root", password: "root" },
  // pyasic's default for Braiins OS (settings `default_bosminer_web_password`, BOSerWebAPI):
  // root/root. Releases that ship with no password need a per-miner file with "".
  "braiins-os": { username: "root", password: "root" },
  // LuxOS web UI's default; its 4028 sessions take no password (plugins/luxos/io.ts).
  luxos: { username: "root", password: "root" },
  // VNish unlocks with a password alone ({"pw": …}); "admin" as pyasic's default
  // (`pyasic/web/vnish.py`). The username is not sent.
  vnish: { username: "admin", password: "admin" },
  bitaxe: null,
});

const MAX_BYTES = 4096;

export function loadCredentials(path: string): Credentials {
  const text = readTrustedFile(path, "secret").toString("utf8");
  if (text.length > MAX_BYTES) bad(path, `longer than ${MAX_BYTES} bytes`);
  let obj: Record<string, unknown>;
  try {
    obj = parseJsonObjectStrict(text);
  } catch {
    // the parser's message could quote the file, which holds a password
    bad(path, "not a JSON object");
  }
  const { username, password, ...rest } = obj;
  if (typeof username !== "string" || username.length === 0)
    bad(path, "`username` must be a non-empty string");
  if (typeof password !== "string") bad(path, "`password` must be a string");
  const unknown = Object.keys(rest);
  if (unknown.length > 0) bad(path, `unknown key ${JSON.stringify(unknown[0])}`);
  return { username, password };
}

/** The families that have a login: their default is never null. */
type WithLogin = Exclude<Family, "bitaxe">;

export function credentialsFor(family: WithLogin, given: Credentials | null): Credentials;
export function credentialsFor(family: Family, given: Credentials | null): Credentials | null;
export function credentialsFor(family: Family, given: Credentials | null): Credentials | null {
  return given ?? DEFAULT_CREDENTIALS[family];
}

function bad(path: string, why: string): never {
  throw new AgentdError("AGENTD_E_CONFIG_TYPE", `${path}: miner credentials: ${why}`, {
    context: { path },
  });
}
