import {
  closeSync,
  constants,
  fchmodSync,
  fdatasyncSync,
  fstatSync,
  ftruncateSync,
  openSync,
  readSync,
} from "node:fs";
import { dirname } from "node:path";
import { AgentdError, fail } from "../errors.ts";
import { fsyncDirectory, writeAll } from "./atomic.ts";
import { checkTrustedStats, ioError } from "./trust.ts";

/**
 * Append-only JSON-lines files: one single-line JSON text per record, each ending in "\n".
 *
 * Crash model. Records are appended with one write(2) per record or batch on an O_APPEND
 * descriptor, so a crash can only leave the file with a prefix of what was written: the last
 * line possibly incomplete (a "torn tail"). Opening for writing truncates a torn tail (it was
 * never acknowledged: the write that produced it did not return) and reports it. Any other
 * damaged line is corruption, reported and never silently dropped.
 *
 * Durability when a call returns:
 * - fsync "record" (default): `append` and `appendBatch` return after fdatasync, so their
 *   records survive a power loss or kernel crash.
 * - fsync "batch": `append` and `appendBatch` return once the records are in the kernel's page
 *   cache: they survive a crash of this process (even SIGKILL) but not a power loss until
 *   `flush()` or `close()` returns. Nothing is buffered in this process in either mode.
 * - A batch is not atomic: after a crash any prefix of its records may be present (the last
 *   possibly torn, then repaired on open).
 *
 * One writer per file: nothing here stops two processes from appending at once.
 */
export type FsyncPolicy = "record" | "batch";

export interface JsonlOpenOptions {
  readonly fsync?: FsyncPolicy;
  /** Mode of the file if it is created; default 0600. An existing file keeps its mode. */
  readonly mode?: number;
}

export interface JsonlRecovery {
  /** True if a torn tail was truncated on open. */
  readonly recovered: boolean;
  /** How many bytes were cut (0 if none). */
  readonly tornBytes: number;
}

export interface JsonlContents {
  /** The complete lines (without "\n"); line n of the file is `lines[n - 1]`. */
  readonly lines: readonly string[];
  /** `JSON.parse` of each line, same indices. */
  readonly values: readonly unknown[];
  /** Bytes after the last complete line: what a writer would truncate on open. */
  readonly tornBytes: number;
}

export class JsonlWriter {
  readonly path: string;
  #fd: number | undefined;
  #size: number;
  readonly #fsync: FsyncPolicy;
  #dirty = false;
  /** Set when a failure left the file or the page cache in an unknown state. */
  #broken: unknown;

  private constructor(path: string, fd: number, size: number, fsync: FsyncPolicy) {
    this.path = path;
    this.#fd = fd;
    this.#size = size;
    this.#fsync = fsync;
  }

  /**
   * Opens (creating it if absent) and repairs a torn tail. The file must be trustworthy like
   * a state file (regular, not writable by group or others, owned by root or us): anyone
   * who can write a log can forge what it says. Symlinks are refused.
   */
  static open(
    path: string,
    options: JsonlOpenOptions = {},
  ): { writer: JsonlWriter; recovery: JsonlRecovery } {
    const mode = options.mode ?? 0o600;
    const flags = constants.O_RDWR | constants.O_APPEND | constants.O_NOFOLLOW;
    let fd: number;
    let created = false;
    try {
      try {
        fd = openSync(path, flags);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        fd = openSync(path, flags | constants.O_CREAT | constants.O_EXCL, mode);
        created = true;
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ELOOP") {
        throw fail("AGENTD_E_FILE_NOT_REGULAR", `${path}: is a symlink; logs must not be`, {
          path,
        });
      }
      throw ioError(path, "open", err);
    }
    try {
      if (created) {
        fchmodSync(fd, mode);
        fsyncDirectory(dirname(path)); // the new file's name must survive a crash too
      }
      const st = fstatSync(fd);
      checkTrustedStats(st, path, "state");
      const buf = readAll(fd, st.size);
      const contents = parseJsonl(buf);
      throwIfCorrupt(contents, path);
      const keep = buf.length - contents.tornBytes;
      let recovery: JsonlRecovery = { recovered: false, tornBytes: 0 };
      if (contents.tornBytes > 0) {
        ftruncateSync(fd, keep);
        fdatasyncSync(fd);
        recovery = { recovered: true, tornBytes: contents.tornBytes };
      }
      const writer = new JsonlWriter(path, fd, keep, options.fsync ?? "record");
      return { writer, recovery };
    } catch (err) {
      closeSync(fd);
      if (err instanceof AgentdError) throw err;
      throw ioError(path, "open", err);
    }
  }

  /** Current size in bytes (what has been written, durable or not). */
  get size(): number {
    return this.#size;
  }

  append(record: object): void {
    this.appendBatch([record]);
  }

  appendBatch(records: readonly object[]): void {
    this.appendLines(
      records.map((r) => {
        const line = JSON.stringify(r) as string | undefined;
        if (typeof line !== "string" || !line.startsWith("{")) {
          throw fail("AGENTD_E_INTERNAL", `${this.path}: a JSONL record must be a JSON object`, {
            path: this.path,
          });
        }
        return line;
      }),
    );
  }

  /**
   * Appends lines that are already single-line JSON texts (for callers that must control the
   * exact bytes, such as the hash-chained log). One write for all of them.
   */
  appendLines(lines: readonly string[]): void {
    const fd = this.#usable();
    if (lines.length === 0) return;
    for (const line of lines) {
      if (line.includes("\n") || line.length === 0) {
        throw fail("AGENTD_E_INTERNAL", `${this.path}: a JSONL line must be one non-empty line`, {
          path: this.path,
        });
      }
    }
    const bytes = Buffer.from(`${lines.join("\n")}\n`, "utf8");
    try {
      writeAll(fd, bytes);
    } catch (err) {
      // Undo a partial write so the next record does not land after half a line (which would
      // turn a torn tail into corruption in the middle). If even that fails, stop writing:
      // the next open repairs the tail.
      try {
        ftruncateSync(fd, this.#size);
      } catch {
        this.#broken = err;
      }
      throw ioError(this.path, "append to", err);
    }
    this.#size += bytes.length;
    this.#dirty = true;
    if (this.#fsync === "record") this.#sync(fd);
  }

  /** Makes everything appended so far durable. */
  flush(): void {
    const fd = this.#usable();
    if (this.#dirty) this.#sync(fd);
  }

  /** Flushes (unless a failure made that meaningless) and closes. Idempotent. */
  close(): void {
    const fd = this.#fd;
    if (fd === undefined) return;
    this.#fd = undefined;
    try {
      if (this.#dirty && this.#broken === undefined) this.#sync(fd);
    } finally {
      closeSync(fd);
    }
  }

  #sync(fd: number): void {
    try {
      fdatasyncSync(fd);
    } catch (err) {
      // After a failed fsync the kernel may have dropped the dirty pages and cleared the
      // error: a retry could "succeed" without the data. Only reopening is honest.
      this.#broken = err;
      throw ioError(this.path, "fsync", err);
    }
    this.#dirty = false;
  }

  #usable(): number {
    if (this.#fd === undefined) {
      throw fail("AGENTD_E_INTERNAL", `${this.path}: writer is closed`, { path: this.path });
    }
    if (this.#broken !== undefined) {
      throw ioError(
        this.path,
        "append to (an earlier write or fsync failed; reopen)",
        this.#broken,
      );
    }
    return this.#fd;
  }
}

/** Reads a JSONL file for a reader (no repair). Undefined if it does not exist. */
export function readJsonlLines(path: string): JsonlContents | undefined {
  const scan = scanJsonl(path);
  if (scan !== undefined) throwIfCorrupt(scan, path);
  return scan;
}

/** Like readJsonlLines, but a damaged line ends the lines instead of throwing. */
export function scanJsonl(path: string): JsonlScan | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw ioError(path, "open", err);
  }
  try {
    return parseJsonl(readAll(fd, fstatSync(fd).size));
  } catch (err) {
    throw ioError(path, "read", err);
  } finally {
    closeSync(fd);
  }
}

export interface JsonlScan extends JsonlContents {
  /**
   * The first line that is not valid UTF-8 JSON although complete lines follow it
   * (corruption, never a crash artefact); `lines` stop before it. Null if none.
   */
  readonly corruptLine: number | null;
}

/**
 * Splits into complete lines and a torn tail. The tail is what follows the last "\n", and
 * also the last newline-terminated line if it is not valid JSON (a crash can leave garbage
 * that happens to end in "\n", e.g. zeroed blocks after a power loss). An earlier line that
 * is not valid UTF-8 JSON is corruption (`corruptLine`).
 */
export function parseJsonl(buf: Buffer): JsonlScan {
  const end = buf.lastIndexOf(0x0a) + 1; // 0 if there is no complete line
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const lines: string[] = [];
  const values: unknown[] = [];
  for (let start = 0; start < end; ) {
    const nl = buf.indexOf(0x0a, start);
    try {
      const text = decoder.decode(buf.subarray(start, nl));
      values.push(JSON.parse(text));
      lines.push(text);
    } catch {
      if (nl + 1 < end) return { lines, values, tornBytes: 0, corruptLine: lines.length + 1 };
      return { lines, values, tornBytes: buf.length - start, corruptLine: null };
    }
    start = nl + 1;
  }
  return { lines, values, tornBytes: buf.length - end, corruptLine: null };
}

function throwIfCorrupt(scan: JsonlScan, path: string): void {
  if (scan.corruptLine !== null) {
    throw fail("AGENTD_E_FILE_CORRUPT", `${path}:${scan.corruptLine}: not a JSON line`, {
      path,
      line: scan.corruptLine,
    });
  }
}

function readAll(fd: number, size: number): Buffer {
  const buf = Buffer.alloc(size);
  let off = 0;
  while (off < size) {
    const n = readSync(fd, buf, off, size - off, off);
    if (n === 0) break; // shrank under us; parse what is there
    off += n;
  }
  return buf.subarray(0, off);
}
