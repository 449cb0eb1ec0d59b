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

/**
 * The pause file as the agent keeps it: `paused` as read at start, and a pause that could
 * not be written yet (the disk was full) kept in memory and written as soon as it can be — the
 * hold itself never waits for the disk.
 */
export interface PauseFile {
  /** Whether the file said paused when the agent started. */
  readonly pausedAtStart: boolean;
  /** Records a pause; when the disk refuses, it is kept and written by `saveIfUnsaved`. */
  save(by: string, at: number): void;
  /** Writes a pause kept in memory, if any (after the disk has room again). */
  saveIfUnsaved(): void;
  /** Records a resume (throws when it cannot be written: the pause then stays). */
  clear(by: string, at: number): void;
}

export function openPauseFile(path: string, onSaveFailed: (err: unknown) => void): PauseFile {
  let unsaved: { by: string; at: number } | null = null;
  const saveIfUnsaved = () => {
    if (unsaved === null) return;
    try {
      writePause(path, { paused: true, ...unsaved });
      unsaved = null;
    } catch (err) {
      onSaveFailed(err);
    }
  };
  return {
    pausedAtStart: readPause(path)?.paused === true,
    save(by, at) {
      unsaved = { by, at };
      saveIfUnsaved();
    },
    saveIfUnsaved,
    clear(by, at) {
      writePause(path, { paused: false, by, at });
      unsaved = null;
    },
  };
}
