import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";

/**
 * The operator's pause, persisted: a machine paused by its operator (or by an owner-allowed
 * `mining.pause` command) stays paused across restarts until resumed. A restart that silently
 * resumed mining would undo a decision someone made on purpose.
 */
export const PAUSE_FILE = "pause.json";

export interface PauseRecord {
  readonly paused: boolean;
  /** Who asked: "local API" or "command <cmd_id>". */
  readonly by: string;
  /** Unix ms. */
  readonly at: number;
}

export function readPause(path: string): PauseRecord | null {
  const f = readStateFile(path, { format: 1 });
  if (f === undefined) return null;
  const d = f.data as Partial<PauseRecord> | null;
  if (typeof d?.paused !== "boolean" || typeof d.by !== "string" || typeof d.at !== "number") {
    // Unreadable intent: paused is the side that cannot start anything the operator stopped.
    return { paused: true, by: "unreadable pause file", at: 0 };
  }
  return { paused: d.paused, by: d.by, at: d.at };
}

export function writePause(path: string, r: PauseRecord): void {
  writeStateFile(path, 1, r);
}
