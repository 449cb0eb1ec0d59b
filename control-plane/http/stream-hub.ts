/**
 * Open push streams by key (the worker id), so the API can `send(workerId, message)` to every
 * stream that worker has open, and to no other.
 *
 * A slow or stalled reader must not make the server buffer without bound: before each send the
 * connection's `bufferedAmount` (bytes queued but not yet written to the socket) plus the new
 * message is checked against `maxBufferedBytes`, and a connection past it is terminated (the
 * agent reconnects and resumes from its last event) instead of queuing more. The number of
 * streams per key is capped too; a new one past the cap closes the oldest (code 1008).
 */

export interface StreamConnection {
  readonly bufferedAmount: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
}

export type DropReason = "backpressure" | "stream_limit";

export interface StreamHubOptions {
  /** Largest queue per connection before it is dropped. Default 1 MiB. */
  readonly maxBufferedBytes?: number;
  /** Most open streams per key. Default 4. */
  readonly maxPerKey?: number;
  readonly onDrop?: (key: string, reason: DropReason) => void;
}

export class StreamHub {
  readonly #byKey = new Map<string, Set<StreamConnection>>();
  readonly #maxBuffered: number;
  readonly #maxPerKey: number;
  readonly #onDrop: (key: string, reason: DropReason) => void;

  constructor(options: StreamHubOptions = {}) {
    this.#maxBuffered = options.maxBufferedBytes ?? 1024 * 1024;
    this.#maxPerKey = Math.max(1, options.maxPerKey ?? 4);
    this.#onDrop = options.onDrop ?? (() => {});
  }

  /** Registers `conn` under `key`; returns its removal (idempotent). */
  add(key: string, conn: StreamConnection): () => void {
    let set = this.#byKey.get(key);
    if (set === undefined) {
      set = new Set();
      this.#byKey.set(key, set);
    }
    while (set.size >= this.#maxPerKey) {
      const oldest = set.values().next().value as StreamConnection;
      this.remove(key, oldest);
      this.#onDrop(key, "stream_limit");
      oldest.close(1008, "too many streams for this worker");
    }
    set.add(conn);
    return () => this.remove(key, conn);
  }

  remove(key: string, conn: StreamConnection): void {
    const set = this.#byKey.get(key);
    if (set === undefined) return;
    set.delete(conn);
    if (set.size === 0) this.#byKey.delete(key);
  }

  /** Sends to every stream of `key` (JSON unless a string); returns how many got it. */
  send(key: string, message: unknown): number {
    const set = this.#byKey.get(key);
    if (set === undefined) return 0;
    const data = typeof message === "string" ? message : JSON.stringify(message);
    let n = 0;
    for (const conn of [...set]) {
      if (this.sendTo(key, conn, data)) n++;
    }
    return n;
  }

  /** One connection (for a route replaying missed events on open), with the same bound. */
  sendTo(key: string, conn: StreamConnection, data: string): boolean {
    if (conn.bufferedAmount + Buffer.byteLength(data) > this.#maxBuffered) {
      this.remove(key, conn);
      this.#onDrop(key, "backpressure");
      conn.terminate();
      return false;
    }
    conn.send(data);
    return true;
  }

  /** Open streams of `key`, or of all keys. */
  count(key?: string): number {
    if (key !== undefined) return this.#byKey.get(key)?.size ?? 0;
    let n = 0;
    for (const s of this.#byKey.values()) n += s.size;
    return n;
  }

  closeAll(code = 1001, reason = "server closing"): void {
    for (const set of this.#byKey.values()) for (const c of set) c.close(code, reason);
    this.#byKey.clear();
  }
}
