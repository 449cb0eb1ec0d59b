import { isAgentdError } from "../lib/errors.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";

/**
 * The two pauses, persisted: a machine paused stays paused across restarts until resumed — a
 * restart that silently resumed mining would undo a decision someone made on purpose.
 *
 * - `local`: the operator's, on the machine (`agentd mining pause`, the local API); lifted only
 *   on the machine. A control plane, compromised or not, must never lift a hold set on the
 *   machine.
 * - `remote`: an owner-allowed `mining.pause` command's; lifted only by `mining.resume` (a
 *   resume on the machine says it remains: operator.ts).
 *
 * Format 2: `{"local": {"by", "at"} | null, "remote": {"by", "at"} | null}` (`at` in Unix ms).
 * Format 1 (one pause, `{"paused", "by", "at"}`) is migrated on reading: a pause by
 * `command <cmd_id>` is the remote one, any other the local one. A file that cannot be read as
 * either — corrupt, or not the shape expected — is a local pause (fail closed: paused, and
 * lifted only on the machine); a file that cannot be trusted or was written by a newer agentd
 * refuses the start, like every state file.
 */
export const PAUSE_FILE = "pause.json";
const FORMAT = 2;

export const PAUSE_SCOPES = ["local", "remote"] as const;
export type PauseScope = (typeof PAUSE_SCOPES)[number];

export interface PauseHold {
  /** Who asked: "local API" or "command <cmd_id>". */
  readonly by: string;
  /** Unix ms. */
  readonly at: number;
}

export type Pauses = Readonly<Record<PauseScope, PauseHold | null>>;

export const NO_PAUSE: Pauses = Object.freeze({ local: null, remote: null });
const UNREADABLE: Pauses = Object.freeze({
  local: { by: "unreadable pause file", at: 0 },
  remote: null,
});

export function readPauses(path: string): Pauses {
  let f: ReturnType<typeof readStateFile>;
  try {
    f = readStateFile(path, { format: FORMAT });
  } catch (err) {
    if (isAgentdError(err) && err.code === "AGENTD_E_FILE_CORRUPT") return UNREADABLE;
    throw err;
  }
  if (f === undefined) return NO_PAUSE;
  return (f.format === 1 ? fromFormat1(f.data) : fromFormat2(f.data)) ?? UNREADABLE;
}

export function writePauses(path: string, p: Pauses): void {
  writeStateFile(path, FORMAT, { local: p.local, remote: p.remote });
}

function hold(v: unknown): PauseHold | null | undefined {
  if (v === null) return null;
  const h = v as Partial<Record<keyof PauseHold, unknown>> | undefined;
  if (typeof h?.by !== "string" || typeof h.at !== "number" || !Number.isSafeInteger(h.at)) {
    return undefined;
  }
  return { by: h.by, at: h.at };
}

function fromFormat2(data: unknown): Pauses | null {
  const d = data as Partial<Record<PauseScope, unknown>> | null;
  if (d === null || typeof d !== "object") return null;
  const local = hold(d.local);
  const remote = hold(d.remote);
  return local === undefined || remote === undefined ? null : { local, remote };
}

function fromFormat1(data: unknown): Pauses | null {
  const d = data as { paused?: unknown; by?: unknown; at?: unknown } | null;
  if (typeof d?.paused !== "boolean") return null;
  const h = hold({ by: d.by, at: d.at });
  if (h === undefined || h === null) return null;
  if (!d.paused) return NO_PAUSE;
  return h.by.startsWith("command ") ? { local: null, remote: h } : { local: h, remote: null };
}

/**
 * The pause file as the agent keeps it: the pauses as read at start, and a pause that could
 * not be written yet (the disk was full) kept in memory and written as soon as it can be — the
 * hold itself never waits for the disk.
 */
export interface PauseFile {
  /** The pauses in force (those not saved yet included). */
  current(): Pauses;
  /** Records a pause; when the disk refuses, it is kept and written by `saveIfUnsaved`. */
  save(scope: PauseScope, by: string, at: number): void;
  /** Writes what is kept in memory, if anything (after the disk has room again). */
  saveIfUnsaved(): void;
  /** Records a resume of `scope` (throws when it cannot be written: the pause then stays). */
  clear(scope: PauseScope): void;
}

export function openPauseFile(path: string, onSaveFailed: (err: unknown) => void): PauseFile {
  let pauses = readPauses(path);
  let unsaved = false;
  const saveIfUnsaved = () => {
    if (!unsaved) return;
    try {
      writePauses(path, pauses);
      unsaved = false;
    } catch (err) {
      onSaveFailed(err);
    }
  };
  return {
    current: () => pauses,
    save(scope, by, at) {
      pauses = { ...pauses, [scope]: { by, at } };
      unsaved = true;
      saveIfUnsaved();
    },
    saveIfUnsaved,
    clear(scope) {
      const next = { ...pauses, [scope]: null };
      // Written first (with any pause still unsaved): a resume that cannot be saved does not
      // happen, so a restart cannot find a pause the running agent had lifted, or lose one.
      writePauses(path, next);
      pauses = next;
      unsaved = false;
    },
  };
}
