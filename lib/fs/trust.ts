import { closeSync, fstatSync, openSync, readFileSync, type Stats, statSync } from "node:fs";
import { AgentdError, fail } from "../errors.ts";

/**
 * "Files you can trust": agentd refuses key, config and state files that someone other than
 * root or its own user could have written, and private keys that others could read. A file is
 * never trusted merely because it is on disk.
 *
 * The checks run on the open descriptor (fstat), so the file checked is the file read.
 */
export type TrustedFileKind = "private-key" | "secret" | "public-key" | "config" | "state";

export interface TrustOptions {
  /** The uid agentd runs as; defaults to the process's. Injected for tests. */
  readonly uid?: number;
}

const currentUid = (): number => (typeof process.getuid === "function" ? process.getuid() : 0);

export function checkTrustedStats(
  st: Stats,
  path: string,
  kind: TrustedFileKind | "directory",
  options: TrustOptions = {},
): void {
  const uid = options.uid ?? currentUid();
  if (kind === "directory" ? !st.isDirectory() : !st.isFile()) {
    throw fail(
      "AGENTD_E_FILE_NOT_REGULAR",
      `${path}: expected a ${kind === "directory" ? "directory" : "regular file"}`,
      { path, kind },
    );
  }
  const mode = st.mode & 0o777;
  const octal = `0${mode.toString(8).padStart(3, "0")}`;
  if ((kind === "private-key" || kind === "secret") && (mode & 0o077) !== 0) {
    throw fail(
      "AGENTD_E_FILE_INSECURE_MODE",
      `${path}: ${kind === "secret" ? "a file holding a secret" : "private key"} has mode ${octal}; group and others must have no access (expected 0600)`,
      { path, kind, mode: octal },
    );
  }
  if ((mode & 0o022) !== 0) {
    throw fail(
      "AGENTD_E_FILE_INSECURE_MODE",
      `${path}: mode ${octal} lets group or others write it (expected no group/other write bit)`,
      { path, kind, mode: octal },
    );
  }
  if (st.uid !== 0 && st.uid !== uid) {
    throw fail(
      "AGENTD_E_FILE_FOREIGN_OWNER",
      `${path}: owned by uid ${st.uid}, which is neither root nor the agent's uid ${uid}`,
      { path, kind, owner_uid: st.uid, uid },
    );
  }
}

/** Opens, checks and reads a file that must be trustworthy. */
export function readTrustedFile(
  path: string,
  kind: TrustedFileKind,
  options: TrustOptions = {},
): Buffer {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    throw ioError(path, "open", err);
  }
  try {
    checkTrustedStats(fstatSync(fd), path, kind, options);
    return readFileSync(fd);
  } catch (err) {
    if (err instanceof AgentdError) throw err;
    throw ioError(path, "read", err);
  } finally {
    closeSync(fd);
  }
}

export function checkTrustedDirectory(path: string, options: TrustOptions = {}): void {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    throw ioError(path, "stat", err);
  }
  checkTrustedStats(st, path, "directory", options);
}

export function ioError(path: string, op: string, err: unknown): AgentdError<"AGENTD_E_IO"> {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? "unknown";
  const msg = err instanceof Error ? err.message : String(err);
  return fail("AGENTD_E_IO", `${path}: cannot ${op}: ${msg}`, { path, op, errno: code }, err);
}
