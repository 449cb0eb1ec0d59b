import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  fchmodSync,
  fsyncSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { ioError } from "./trust.ts";

/**
 * Crash-safe replacement of small files (state, keys, enrollment): after a crash at any
 * instant, the path holds either the whole old content or the whole new content, never a mix.
 *
 * Synchronous on purpose: these files are a few KB to a few hundred KB, written rarely, and
 * the steps must run strictly in order (write, fsync, rename, fsync directory). Doing it
 * synchronously keeps every step's failure in one try block and guarantees no other code of
 * this process runs between "decided to write" and "durably written" (e.g. a second write of
 * the same file racing the first's rename). The cost is blocking the event loop for one
 * fsync, acceptable at the rate agentd changes state.
 */
export interface AtomicWriteOptions {
  /** Permission bits of the new file, applied exactly (umask does not narrow them). */
  readonly mode?: number;
}

export function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): void {
  const mode = options.mode ?? 0o600;
  const dir = dirname(path);
  // Same directory, so the rename cannot cross file systems; dot-prefixed so globbing for the
  // target does not pick it up; pid + random so two writers never share a temp file.
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  let fd: number | undefined;
  let created = false;
  let step = "create a temporary file for";
  try {
    fd = openSync(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, mode);
    created = true;
    step = "set the mode of";
    fchmodSync(fd, mode); // open's mode is filtered by the umask; the caller's mode is exact
    step = "write";
    writeAll(fd, bytes);
    step = "fsync";
    fsyncSync(fd); // the data must be on disk before the rename makes it visible
    step = "close";
    const f = fd;
    fd = undefined;
    closeSync(f);
    step = "rename into place";
    renameSync(tmp, path);
    created = false; // the temp name no longer exists: nothing to clean up
    step = `fsync the directory ${dir} after writing`;
    fsyncDirectoryRaw(dir); // makes the rename itself durable
  } catch (err) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // already failing; the original error is the one to report
      }
    }
    if (created) {
      try {
        unlinkSync(tmp); // never unlink a name we did not create (EEXIST above)
      } catch {
        // best effort: a leftover dot-file is harmless and named after its writer's pid
      }
    }
    // If only the directory fsync failed, the new content is in place but may not survive a
    // power loss; the caller is told the write failed, which is the truthful answer.
    throw ioError(path, step, err);
  }
}

/** Makes creations, renames and deletions of entries in `dir` durable. */
export function fsyncDirectory(dir: string): void {
  try {
    fsyncDirectoryRaw(dir);
  } catch (err) {
    throw ioError(dir, "fsync directory", err);
  }
}

function fsyncDirectoryRaw(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes every byte; a short write of a regular file is retried from where it stopped. */
export function writeAll(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) {
    const n = writeSync(fd, bytes, off, bytes.length - off);
    if (n <= 0) throw new Error(`write returned ${n}`);
    off += n;
  }
}
