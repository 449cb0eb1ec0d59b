import { rmSync } from "node:fs";
import { join } from "node:path";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";

/**
 * Where a running agent can be reached, kept in its state directory while it runs, so that the
 * CLI given only `--state-dir` finds the agent's local API wherever `api.socket` points (the
 * devnet's agent, a second agent on another directory, a packaged one under /run). Written
 * once the API listens, removed when the agent stops; one left by a crash names a socket
 * nothing answers on, which the CLI then says.
 */
export const LOCAL_API_FILE = "local-api.json";

export interface LocalApiRecord {
  readonly pid: number;
  /** The unix socket (absolute). */
  readonly socket: string;
  /** The loopback TCP listener, when api.listen is set. */
  readonly tcp: { readonly host: string; readonly port: number } | null;
  /** The metrics endpoint, when metrics.listen is set. */
  readonly metrics: { readonly host: string; readonly port: number } | null;
}

export function writeLocalApiRecord(stateDir: string, r: LocalApiRecord): () => void {
  const path = join(stateDir, LOCAL_API_FILE);
  writeStateFile(path, 1, r);
  return () => rmSync(path, { force: true });
}

/** The record in `stateDir`, or null when none is there or it cannot be read. */
export function readLocalApiRecord(stateDir: string): LocalApiRecord | null {
  try {
    const d = readStateFile(join(stateDir, LOCAL_API_FILE), { format: 1 })?.data as
      | Partial<LocalApiRecord>
      | undefined;
    if (d === undefined || typeof d.socket !== "string" || d.socket === "") return null;
    return {
      pid: typeof d.pid === "number" ? d.pid : 0,
      socket: d.socket,
      tcp: d.tcp ?? null,
      metrics: d.metrics ?? null,
    };
  } catch {
    return null;
  }
}
