import { AgentdError, fail } from "../errors.ts";
import { canonicalize } from "../json/canonical.ts";
import { parseJsonStrict } from "../json/strict-parse.ts";
import { writeFileAtomic } from "./atomic.ts";
import { readTrustedFile } from "./trust.ts";

/**
 * Versioned small state files: `{"format":<int>,"data":<json>}` and a newline.
 *
 * `format` is the version of the data's shape. A reader that finds a format it does not know
 * refuses the file instead of guessing (a downgraded agent must not misread, and then
 * overwrite, state written by a newer one). Older formats are returned as they are, with
 * their format, for the caller to migrate: only the caller knows its shapes.
 */
export interface StateFile {
  readonly format: number;
  readonly data: unknown;
}

export interface ReadStateOptions {
  /** The highest format this code understands. */
  readonly format: number;
  readonly kind?: "state";
}

/** Replaces the file atomically, mode 0600. */
export function writeStateFile(path: string, format: number, data: unknown): void {
  checkFormat(format, "format");
  // canonicalize refuses what JSON.stringify would silently change (undefined members, NaN,
  // Dates, class instances), so what is read back is exactly what was written.
  const text = `{"format":${format},"data":${canonicalize(data)}}\n`;
  writeFileAtomic(path, text, { mode: 0o600 });
}

/** Returns undefined if the file does not exist; throws if it cannot be trusted or read. */
export function readStateFile(path: string, options: ReadStateOptions): StateFile | undefined {
  checkFormat(options.format, "options.format");
  let raw: Buffer;
  try {
    raw = readTrustedFile(path, options.kind ?? "state");
  } catch (err) {
    if (
      err instanceof AgentdError &&
      err.code === "AGENTD_E_IO" &&
      err.context.errno === "ENOENT"
    ) {
      return undefined;
    }
    throw err;
  }
  const doc = parseEnvelope(raw, path);
  if (doc.format > options.format) {
    throw fail(
      "AGENTD_E_FILE_FORMAT_NEWER",
      `${path}: state format ${doc.format} is newer than this agentd understands (${options.format})`,
      { path, format: doc.format, supported: options.format },
    );
  }
  return doc;
}

function parseEnvelope(raw: Buffer, path: string): StateFile {
  const corrupt = (why: string, cause?: unknown) =>
    fail("AGENTD_E_FILE_CORRUPT", `${path}: not a whole state file: ${why}`, { path }, cause);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch (err) {
    throw corrupt("not UTF-8", err);
  }
  // Every state file ends with a newline; its absence means the file was cut short.
  if (!text.endsWith("\n")) throw corrupt("missing final newline");
  let doc: unknown;
  try {
    // Strict: a duplicated member would let two readers see two different states.
    doc = parseJsonStrict(text);
  } catch (err) {
    throw corrupt("not strict JSON", err);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw corrupt("not a JSON object");
  }
  const keys = Object.keys(doc).sort();
  if (keys.length !== 2 || keys[0] !== "data" || keys[1] !== "format") {
    throw corrupt(`members must be exactly "format" and "data" (found ${keys.join(", ")})`);
  }
  const { format, data } = doc as { format: unknown; data: unknown };
  if (typeof format !== "number" || !Number.isSafeInteger(format) || format < 1) {
    throw corrupt(`"format" must be a positive integer`);
  }
  return { format, data };
}

function checkFormat(format: number, name: string): void {
  if (!Number.isSafeInteger(format) || format < 1) {
    throw fail("AGENTD_E_INTERNAL", `${name} must be a positive integer, got ${format}`, {
      format,
    });
  }
}
