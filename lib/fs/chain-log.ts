import { existsSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { basename, dirname, extname, join } from "node:path";
import { type AgentdError, fail } from "../errors.ts";
import { canonicalize, canonicalSha256Hex } from "../json/canonical.ts";
import { fsyncDirectory } from "./atomic.ts";
import {
  type FsyncPolicy,
  type JsonlContents,
  type JsonlRecovery,
  JsonlWriter,
  scanJsonl,
} from "./jsonl.ts";
import { ioError } from "./trust.ts";

/**
 * Hash-chained, append-only log (the agent's and the control plane's audit logs).
 *
 * Each line is the RFC 8785 canonical JSON of the caller's body plus `seq` (1, 2, …), `prev`
 * (the previous record's `hash`, 64 zeros for seq 1) and `hash` = sha256 hex of the canonical
 * JSON of the record without `hash`. The line must be exactly that canonical text: a line
 * with the same meaning but other bytes (spacing, key order, a duplicate key whose last copy
 * carries the hashed value) is refused, so that every reader sees the document that was
 * hashed.
 *
 * Rotation: once the active file (`audit.jsonl`) has reached `rotateBytes`, the next append
 * first renames it to `audit.<first seq, 12 digits>.jsonl` and starts a new active file that
 * continues the same chain. The verifier walks the segments in seq order, then the active file.
 *
 * The chain proves that nothing was edited, inserted, dropped or reordered *inside* what is
 * present. Records cut off the end leave a shorter chain that is perfectly self-consistent:
 * only comparing the head with one recorded elsewhere (`expectHead`) detects that.
 */
export const GENESIS_PREV = "0".repeat(64);

/** Default rotation size: bounds what `open` reads (it verifies the whole active file). */
export const DEFAULT_ROTATE_BYTES = 16 * 1024 * 1024;

export interface ChainHead {
  readonly seq: number;
  readonly hash: string;
}

export interface ChainLogOptions {
  readonly fsync?: FsyncPolicy;
  readonly rotateBytes?: number;
}

export type ChainErrorCode =
  | "AGENTD_E_LOG_RECORD_INVALID"
  | "AGENTD_E_LOG_CHAIN_BROKEN"
  | "AGENTD_E_LOG_SEQ_GAP"
  | "AGENTD_E_LOG_TORN_TAIL"
  | "AGENTD_E_LOG_HEAD_MISMATCH";

export interface ChainVerifyError {
  readonly code: ChainErrorCode;
  readonly message: string;
  /** The file holding the problem (for a head mismatch: the last file). */
  readonly file: string;
  /** 1-based line in `file`; null when there is no line to point at (empty log). */
  readonly line: number | null;
  /** The seq the offending record carries, or null if it has none readable. */
  readonly seq: number | null;
  /** The seq a record at that place should have had. */
  readonly expectedSeq: number;
}

export type ChainVerifyResult =
  | {
      readonly ok: true;
      readonly records: number;
      readonly head: ChainHead | null;
      readonly files: readonly string[];
    }
  | { readonly ok: false; readonly records: number; readonly error: ChainVerifyError };

export interface VerifyOptions {
  /** The head recorded elsewhere; `seq` may be omitted to compare the hash only. */
  readonly expectHead?: { readonly seq?: number; readonly hash: string };
}

const RESERVED = ["seq", "prev", "hash"] as const;
const HEX64 = /^[0-9a-f]{64}$/;

export class ChainLog {
  readonly path: string;
  #writer: JsonlWriter | undefined;
  #head: ChainHead | null;
  /** The seq of the first record in the active file (or of the next one, if it is empty). */
  #activeFirstSeq: number;
  readonly #fsync: FsyncPolicy;
  readonly #rotateBytes: number;
  /** Set when a rotation failed half-way: the active file may be gone. Reopen. */
  #broken: unknown;

  private constructor(
    path: string,
    writer: JsonlWriter,
    head: ChainHead | null,
    activeFirstSeq: number,
    options: ChainLogOptions,
  ) {
    this.path = path;
    this.#writer = writer;
    this.#head = head;
    this.#activeFirstSeq = activeFirstSeq;
    this.#fsync = options.fsync ?? "record";
    this.#rotateBytes = options.rotateBytes ?? DEFAULT_ROTATE_BYTES;
  }

  /**
   * Opens the log to continue its chain. The active file is verified completely (it is
   * bounded by rotation, and extending a chain that is already broken would only bury the
   * break) and linked to the last record of the newest segment, whose own hash is checked.
   * Older segments are `verifyChainLog`'s job. A broken active file throws its LOG_* code;
   * a torn tail is truncated and reported.
   */
  static open(
    path: string,
    options: ChainLogOptions = {},
  ): { log: ChainLog; recovery: JsonlRecovery } {
    if (options.rotateBytes !== undefined && !(options.rotateBytes > 0)) {
      throw fail("AGENTD_E_INTERNAL", "rotateBytes must be positive", { path });
    }
    const segments = listSegments(path);
    let cursor: Cursor = { seq: 0, hash: GENESIS_PREV };
    const last = segments.at(-1);
    if (last !== undefined) cursor = lastRecordOf(last.path);
    const active = readLog(path);
    let activeFirstSeq = cursor.seq + 1;
    if (active !== undefined) {
      const walked = walkFile(active, path, cursor, null);
      if (!walked.ok) throw toAgentdError(walked.error);
      cursor = walked.cursor;
    }
    const { writer, recovery } = JsonlWriter.open(path, {
      mode: 0o600,
      ...(options.fsync === undefined ? {} : { fsync: options.fsync }),
    });
    const head = cursor.seq === 0 ? null : cursor;
    if (active !== undefined && active.lines.length > 0) {
      activeFirstSeq = (active.values[0] as { seq: number }).seq;
    }
    return { log: new ChainLog(path, writer, head, activeFirstSeq, options), recovery };
  }

  head(): ChainHead | null {
    return this.#head;
  }

  append(body: Readonly<Record<string, unknown>>): ChainHead {
    const [h] = this.appendBatch([body]);
    if (h === undefined) throw fail("AGENTD_E_INTERNAL", "append produced no record");
    return h;
  }

  /** One write (and, with fsync "record", one fsync) for all; see jsonl.ts on durability. */
  appendBatch(bodies: readonly Readonly<Record<string, unknown>>[]): ChainHead[] {
    let writer = this.#usable();
    if (bodies.length === 0) return [];
    let cursor: Cursor = this.#head ?? { seq: 0, hash: GENESIS_PREV };
    const lines: string[] = [];
    const heads: ChainHead[] = [];
    for (const body of bodies) {
      for (const k of RESERVED) {
        if (Object.hasOwn(body, k)) {
          throw fail("AGENTD_E_INTERNAL", `${this.path}: a log record body must not set "${k}"`, {
            path: this.path,
            key: k,
          });
        }
      }
      const record = { ...body, seq: cursor.seq + 1, prev: cursor.hash };
      const hash = canonicalSha256Hex(record);
      lines.push(canonicalize({ ...record, hash }));
      cursor = { seq: record.seq, hash };
      heads.push(cursor);
    }
    if (writer.size >= this.#rotateBytes) writer = this.#rotate(writer);
    writer.appendLines(lines);
    // Only now: if the write failed, the head (and the next prev) stays where the file is.
    this.#head = cursor;
    return heads;
  }

  flush(): void {
    this.#usable().flush();
  }

  close(): void {
    const w = this.#writer;
    this.#writer = undefined;
    w?.close();
  }

  #rotate(writer: JsonlWriter): JsonlWriter {
    // No writer while rotating: if anything below fails, this log stays unusable (#broken).
    this.#writer = undefined;
    const segment = segmentPath(this.path, this.#activeFirstSeq);
    try {
      writer.close(); // fsyncs what "batch" mode had not yet
      if (existsSync(segment)) {
        throw fail("AGENTD_E_FILE_EXISTS", `${segment}: log segment already exists`, {
          path: segment,
        });
      }
      try {
        renameSync(this.path, segment);
      } catch (err) {
        throw ioError(this.path, `rotate to ${segment}`, err);
      }
      fsyncDirectory(dirname(this.path));
      // A crash here leaves no active file: open() then continues from the newest segment.
      const next = JsonlWriter.open(this.path, { mode: 0o600, fsync: this.#fsync }).writer;
      this.#writer = next;
      this.#activeFirstSeq = (this.#head?.seq ?? 0) + 1;
      return next;
    } catch (err) {
      this.#broken = err;
      throw err;
    }
  }

  #usable(): JsonlWriter {
    if (this.#broken !== undefined) {
      throw ioError(this.path, "append to (a rotation failed; reopen the log)", this.#broken);
    }
    if (this.#writer === undefined) {
      throw fail("AGENTD_E_INTERNAL", `${this.path}: log is closed`, { path: this.path });
    }
    return this.#writer;
  }
}

/** The name a rotated segment whose first record has `firstSeq` gets. */
export function segmentPath(path: string, firstSeq: number): string {
  const ext = extname(path);
  const stem = path.slice(0, path.length - ext.length);
  return `${stem}.${String(firstSeq).padStart(12, "0")}${ext}`;
}

/** Rotated segments of the log at `path`, oldest first. */
export function listSegments(path: string): { path: string; firstSeq: number }[] {
  const dir = dirname(path);
  const ext = extname(path);
  const stem = basename(path, ext);
  const re = new RegExp(`^${escapeRegExp(stem)}\\.(\\d{12,})${escapeRegExp(ext)}$`);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw ioError(dir, "list", err);
  }
  const out: { path: string; firstSeq: number }[] = [];
  for (const name of names) {
    const m = re.exec(name);
    if (m?.[1] !== undefined) out.push({ path: join(dir, name), firstSeq: Number(m[1]) });
  }
  return out.sort((a, b) => a.firstSeq - b.firstSeq);
}

/**
 * Verifies every segment, then the active file: read-only, never repairs. Reports the first
 * problem found with the number of records verified before it. I/O failures throw.
 */
export function verifyChainLog(path: string, options: VerifyOptions = {}): ChainVerifyResult {
  let cursor: Cursor = { seq: 0, hash: GENESIS_PREV };
  const files: string[] = [];
  let lastLine: number | null = null;
  const sources: { path: string; firstSeq: number | null }[] = listSegments(path);
  sources.push({ path, firstSeq: null });
  for (const src of sources) {
    const contents = scanJsonl(src.path);
    if (contents === undefined) continue; // no active file: a crash right after rotation
    const empty = contents.lines.length === 0 && contents.tornBytes === 0;
    if (src.firstSeq !== null && empty && contents.corruptLine === null) {
      const why = `${src.path}: segment holds no record`;
      return fault(cursor, "AGENTD_E_LOG_SEQ_GAP", why, src.path, null, null);
    }
    const walked = walkFile(contents, src.path, cursor, src.firstSeq);
    if (!walked.ok) return { ok: false, records: walked.records, error: walked.error };
    cursor = walked.cursor;
    if (contents.corruptLine !== null) {
      const line = contents.corruptLine;
      const why = `${src.path}:${line}: not a JSON line`;
      return fault(cursor, "AGENTD_E_LOG_RECORD_INVALID", why, src.path, line, null);
    }
    files.push(src.path);
    if (contents.lines.length > 0) lastLine = contents.lines.length;
    if (contents.tornBytes > 0) {
      return fault(
        cursor,
        "AGENTD_E_LOG_TORN_TAIL",
        `${src.path}: last line is incomplete (${contents.tornBytes} bytes)`,
        src.path,
        contents.lines.length + 1,
        null,
      );
    }
  }
  const head = cursor.seq === 0 ? null : { seq: cursor.seq, hash: cursor.hash };
  const want = options.expectHead;
  if (
    want !== undefined &&
    (head === null || head.hash !== want.hash || (want.seq !== undefined && head.seq !== want.seq))
  ) {
    const found = head === null ? "no record" : `seq ${head.seq} hash ${head.hash}`;
    return fault(
      cursor,
      "AGENTD_E_LOG_HEAD_MISMATCH",
      `head is ${found}, expected ${want.seq === undefined ? "" : `seq ${want.seq} `}hash ${want.hash}`,
      files.at(-1) ?? path,
      lastLine,
      head?.seq ?? null,
    );
  }
  return { ok: true, records: cursor.seq, head, files };
}

/** seq and hash of the last verified record; seq 0 = before the genesis record. */
interface Cursor {
  readonly seq: number;
  readonly hash: string;
}

type Walked =
  | { ok: true; cursor: Cursor }
  | { ok: false; records: number; error: ChainVerifyError };

/**
 * Checks the records of one file in order, continuing from `cursor`. Order of checks per
 * record: well-formed (RECORD_INVALID), own hash (CHAIN_BROKEN: edited), then the link. At
 * the start of a file a discontinuity most likely means a missing file, so seq is checked
 * first (SEQ_GAP); inside a file `prev` is checked first, so a dropped, inserted or swapped
 * record is CHAIN_BROKEN, and SEQ_GAP there means a well-linked record with a wrong seq.
 */
function walkFile(
  contents: JsonlContents,
  file: string,
  start: Cursor,
  nameSeq: number | null,
): Walked {
  let cursor = start;
  for (let i = 0; i < contents.lines.length; i++) {
    const line = i + 1;
    const bad = (code: ChainErrorCode, why: string, seq: number | null): Walked =>
      fault(cursor, code, `${file}:${line}: ${why}`, file, line, seq);
    const rec = checkRecord(contents.lines[i] ?? "", contents.values[i]);
    if (typeof rec === "string") return bad("AGENTD_E_LOG_RECORD_INVALID", rec, null);
    const expected = cursor.seq + 1;
    if (rec.ownHash !== rec.hash) {
      return bad("AGENTD_E_LOG_CHAIN_BROKEN", "hash does not match the record's contents", rec.seq);
    }
    const seqOk = rec.seq === expected;
    const prevOk = rec.prev === cursor.hash;
    if (i === 0) {
      if (nameSeq !== null && rec.seq !== nameSeq) {
        return bad(
          "AGENTD_E_LOG_SEQ_GAP",
          `segment named for seq ${nameSeq} starts at seq ${rec.seq}`,
          rec.seq,
        );
      }
      if (cursor.seq === 0 && !(seqOk && prevOk)) {
        return bad(
          "AGENTD_E_LOG_SEQ_GAP",
          `first record of the log is seq ${rec.seq}, not the genesis record`,
          rec.seq,
        );
      }
      if (!seqOk) {
        return bad(
          "AGENTD_E_LOG_SEQ_GAP",
          `seq ${rec.seq} follows seq ${cursor.seq} (missing records or segment)`,
          rec.seq,
        );
      }
    }
    if (!prevOk) {
      return bad("AGENTD_E_LOG_CHAIN_BROKEN", `prev is not the hash of seq ${cursor.seq}`, rec.seq);
    }
    if (!seqOk) {
      return bad("AGENTD_E_LOG_SEQ_GAP", `seq ${rec.seq} follows seq ${cursor.seq}`, rec.seq);
    }
    cursor = { seq: rec.seq, hash: rec.hash };
  }
  return { ok: true, cursor };
}

interface ParsedRecord {
  readonly seq: number;
  readonly prev: string;
  readonly hash: string;
  /** The hash the record should carry, computed from its contents. */
  readonly ownHash: string;
}

/** A well-formed record, or why it is not one. */
function checkRecord(text: string, value: unknown): ParsedRecord | string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return "not a JSON object";
  }
  const { seq, prev, hash, ...rest } = value as Record<string, unknown>;
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 1) {
    return '"seq" is not a positive integer';
  }
  if (typeof prev !== "string" || !HEX64.test(prev)) return '"prev" is not 64 hex digits';
  if (typeof hash !== "string" || !HEX64.test(hash)) return '"hash" is not 64 hex digits';
  let canonical: string;
  let ownHash: string;
  try {
    canonical = canonicalize(value);
    ownHash = canonicalSha256Hex({ ...rest, seq, prev });
  } catch {
    return "not representable as canonical JSON";
  }
  if (canonical !== text) return "not in canonical form (RFC 8785)";
  return { seq, prev, hash, ownHash };
}

/** The newest segment's last record: checked on its own (well-formed, own hash). */
function lastRecordOf(segment: string): Cursor {
  const contents = readLog(segment);
  const n = contents?.lines.length ?? 0;
  const text = contents?.lines[n - 1];
  if (contents === undefined || text === undefined || contents.tornBytes > 0) {
    throw fail("AGENTD_E_LOG_TORN_TAIL", `${segment}: segment has no complete last record`, {
      path: segment,
    });
  }
  const rec = checkRecord(text, contents.values[n - 1]);
  if (typeof rec === "string") {
    throw fail("AGENTD_E_LOG_RECORD_INVALID", `${segment}:${n}: ${rec}`, {
      path: segment,
      line: n,
    });
  }
  if (rec.ownHash !== rec.hash) {
    throw fail("AGENTD_E_LOG_CHAIN_BROKEN", `${segment}:${n}: hash does not match the record`, {
      path: segment,
      line: n,
      seq: rec.seq,
    });
  }
  return { seq: rec.seq, hash: rec.hash };
}

/** scanJsonl, with a line that is not JSON thrown as the log error it is. */
function readLog(file: string): JsonlContents | undefined {
  const scan = scanJsonl(file);
  if (scan?.corruptLine != null) {
    const line = scan.corruptLine;
    throw fail("AGENTD_E_LOG_RECORD_INVALID", `${file}:${line}: not a JSON line`, {
      path: file,
      line,
    });
  }
  return scan;
}

function fault(
  cursor: Cursor,
  code: ChainErrorCode,
  message: string,
  file: string,
  line: number | null,
  seq: number | null,
): { ok: false; records: number; error: ChainVerifyError } {
  return {
    ok: false,
    records: cursor.seq,
    error: { code, message, file, line, seq, expectedSeq: cursor.seq + 1 },
  };
}

function toAgentdError(e: ChainVerifyError): AgentdError {
  return fail(e.code, e.message, { path: e.file, line: e.line, seq: e.seq });
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * The last `n` records of a log (its rotated segments included), oldest first, as the lines
 * stored: for `agentd audit tail` and the local API. Not a verification (verifyChainLog is).
 */
export function readChainTail(path: string, n: number): string[] {
  // Newest segment first, until enough records are read.
  const files = [...listSegments(path).map((s) => s.path), path].reverse();
  const records: string[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw ioError(f, "read", err);
    }
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    records.unshift(...lines.slice(-(n - records.length)));
    if (records.length >= n) break;
  }
  return records;
}
