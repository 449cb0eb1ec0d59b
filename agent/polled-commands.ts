import { createHash } from "node:crypto";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";

/**
 * The commands fetched by polling, remembered across restarts (`commands-polled.json`). The
 * executor's ledger holds only commands that verified; one refused before verification has no
 * trusted id, and the control plane keeps listing it as pending in every heartbeat reply until
 * it expires. Without this, every restart fetched it and refused (and recorded) it again, and
 * every heartbeat polled for it.
 *
 * Each entry is the command id as the document claims it with a digest of the whole document:
 * a document seen before is skipped, while a different document claiming the same id (a
 * legitimate command whose id a forged one borrowed) is still fetched. The id alone is what
 * heartbeat replies name: "seen" means no poll is needed for it. Bounded: the newest
 * `MAX_POLLED` entries are kept (an id forgotten is at worst fetched and refused once more).
 *
 * Format 1: `{"entries": [[cmd_id, sha256 hex of the JWS], …]}`, oldest first. A file that
 * cannot be read is started over (it only saves work; the executor decides what runs).
 */
export const POLLED_FILE = "commands-polled.json";
const FORMAT = 1;
export const MAX_POLLED = 1000;

export interface PolledCommands {
  /** Whether a command with this id was fetched before (heartbeat replies name ids). */
  hasId(cmdId: string): boolean;
  /** Whether this very document was fetched before. */
  has(cmdId: string, jws: string): boolean;
  /** Remembers it (written at once; a write that fails is retried with the next one). */
  add(cmdId: string, jws: string): void;
}

const digest = (jws: string) => createHash("sha256").update(jws).digest("hex");

export function openPolledCommands(
  path: string,
  onWriteFailed: (err: unknown) => void,
  /** The bound (tests make it small). */
  max = MAX_POLLED,
): PolledCommands {
  const entries = new Map<string, Set<string>>();
  let order: [string, string][] = [];
  for (const e of read(path).slice(-max)) {
    order.push(e);
    const s = entries.get(e[0]) ?? new Set<string>();
    s.add(e[1]);
    entries.set(e[0], s);
  }
  return {
    hasId: (id) => entries.has(id),
    has: (id, jws) => entries.get(id)?.has(digest(jws)) === true,
    add(id, jws) {
      const d = digest(jws);
      if (entries.get(id)?.has(d) === true) return;
      order.push([id, d]);
      entries.set(id, (entries.get(id) ?? new Set<string>()).add(d));
      if (order.length > max) {
        const dropped = order.slice(0, order.length - max);
        order = order.slice(-max);
        for (const [oid, od] of dropped) {
          const s = entries.get(oid);
          s?.delete(od);
          if (s?.size === 0) entries.delete(oid);
        }
      }
      try {
        writeStateFile(path, FORMAT, { entries: order });
      } catch (err) {
        onWriteFailed(err);
      }
    },
  };
}

function read(path: string): [string, string][] {
  let data: unknown;
  try {
    data = readStateFile(path, { format: FORMAT })?.data;
  } catch {
    return [];
  }
  const list = (data as { entries?: unknown } | undefined)?.entries;
  if (!Array.isArray(list)) return [];
  return list
    .filter(
      (e): e is [string, string] =>
        Array.isArray(e) && e.length === 2 && typeof e[0] === "string" && typeof e[1] === "string",
    )
    .slice(-MAX_POLLED);
}
