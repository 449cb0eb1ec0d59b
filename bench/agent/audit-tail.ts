/**
 * Follows the agent's audit log (`<state dir>/audit.jsonl`, lib/fs/chain-log.ts) from outside
 * the process, as bench/agent.ts needs it: every record the agent appends is read back (an
 * inotify watch on the file, and a 20 ms poll as a fallback), parsed, and handed out in order
 * through a cursor. The records' own `at` (ISO 8601 with milliseconds, the agent's clock) is
 * what the bench compares with its send times; when the bench *sees* a record does not matter.
 * A rotation (at 16 MiB) is not followed: the bench's logs stay far below it.
 */
import {
  closeSync,
  existsSync,
  type FSWatcher,
  openSync,
  readSync,
  statSync,
  watch,
} from "node:fs";

export interface AuditRecord {
  readonly seq: number;
  readonly type: string;
  /** Milliseconds since the epoch, from the record's `at`; NaN when it has none. */
  readonly atMs: number;
  readonly raw: Record<string, unknown>;
}

export class AuditTail {
  readonly #path: string;
  #offset = 0;
  #partial = "";
  readonly #records: AuditRecord[] = [];
  #watcher: FSWatcher | null = null;
  #poll: ReturnType<typeof setInterval> | null = null;
  /** Index of the next record `next()` hands out. */
  #cursor = 0;

  constructor(path: string) {
    this.#path = path;
  }

  /** Starts following; records already in the file are read too, then skipped (`skipAll`). */
  start(): void {
    this.read();
    if (existsSync(this.#path)) this.#watcher = watch(this.#path, () => this.read());
    this.#poll = setInterval(() => this.read(), 20);
  }

  stop(): void {
    this.#watcher?.close();
    this.#watcher = null;
    if (this.#poll !== null) clearInterval(this.#poll);
    this.#poll = null;
  }

  /** Moves the cursor past everything read so far. */
  skipAll(): void {
    this.read();
    this.#cursor = this.#records.length;
  }

  get size(): number {
    return this.#records.length;
  }

  /** Reads whatever the agent appended since the last read. */
  read(): void {
    let size: number;
    try {
      size = statSync(this.#path).size;
    } catch {
      return;
    }
    if (size <= this.#offset) return;
    const fd = openSync(this.#path, "r");
    try {
      const buf = Buffer.allocUnsafe(size - this.#offset);
      const n = readSync(fd, buf, 0, buf.length, this.#offset);
      this.#offset += n;
      const text = this.#partial + buf.subarray(0, n).toString("utf8");
      const lines = text.split("\n");
      this.#partial = lines.pop() ?? "";
      for (const line of lines) {
        if (line === "") continue;
        const raw = JSON.parse(line) as Record<string, unknown>;
        this.#records.push({
          seq: Number(raw.seq),
          type: String(raw.type),
          atMs: typeof raw.at === "string" ? Date.parse(raw.at) : Number.NaN,
          raw,
        });
      }
    } finally {
      closeSync(fd);
    }
  }

  /**
   * The next record after the cursor that `match` accepts (the cursor moves past it), waiting
   * up to `timeoutMs` for the agent to append it.
   */
  async next(match: (r: AuditRecord) => boolean, timeoutMs: number): Promise<AuditRecord> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.read();
      for (let i = this.#cursor; i < this.#records.length; i++) {
        const r = this.#records[i] as AuditRecord;
        if (match(r)) {
          this.#cursor = i + 1;
          return r;
        }
      }
      if (Date.now() > deadline) throw new Error(`no matching audit record within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** The records from index `from` on (for what happened in a round). */
  since(from: number): readonly AuditRecord[] {
    this.read();
    return this.#records.slice(from);
  }
}
