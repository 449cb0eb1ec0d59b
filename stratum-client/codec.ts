import type { Socket } from "node:net";
import type { Clock } from "../lib/clock.ts";
import { systemClock } from "../lib/clock.ts";
import { fail } from "../lib/errors.ts";
import type { Logger } from "../lib/log/logger.ts";
import { systemTimers, type TimerHandle, type Timers } from "../lib/timers.ts";

/**
 * Newline-delimited JSON-RPC as Stratum V1 speaks it, over one net.Socket or tls.TLSSocket.
 *
 * Every peer is assumed hostile: memory per connection is bounded (line length, unanswered
 * requests, write backlog), time is bounded (idle, a partial line's age, write stalls), and
 * garbage is answered then punished. A connection that breaks a bound is dropped and its
 * owner hears why exactly once through `onClose`. Connections share nothing mutable except
 * the optional `CodecCounters`, so one peer cannot disturb another.
 */

/** Why a connection ended; reported once. */
export type CloseReason =
  | "local" // the owner called close()
  | "peer_closed" // the peer ended or reset the connection
  | "socket_error" // any other socket or TLS error
  | "line_too_long" // a line (or a partial line) exceeded maxLineBytes
  | "garbage" // too many malformed lines within garbageWindowMs
  | "idle" // no byte received for idleTimeoutMs
  | "slowloris" // a partial line stayed incomplete for partialLineTimeoutMs
  | "inflight" // the peer has more than maxPendingIn requests we have not answered
  | "write_backlog" // the peer does not read: our queued output exceeded its bound or stalled
  // Set by the proxy's miner handler (miner.ts), for bounds above this layer:
  | "too_many_workers" // more worker names authorized on one connection than allowed
  | "too_many_shares"; // more accepted shares remembered (duplicate check) than allowed

export const CLOSE_REASONS: readonly CloseReason[] = Object.freeze([
  "local",
  "peer_closed",
  "socket_error",
  "line_too_long",
  "garbage",
  "idle",
  "slowloris",
  "inflight",
  "write_backlog",
  "too_many_workers",
  "too_many_shares",
]);

export type RpcId = number | string;

export interface CodecLimits {
  /** Longest line accepted, in bytes, without its newline. */
  readonly maxLineBytes: number;
  /** Requests we sent that may await replies at once; `send` beyond it rejects. */
  readonly maxPendingOut: number;
  /** Requests from the peer we have not answered; beyond it the peer is dropped. */
  readonly maxPendingIn: number;
  /** No byte received for this long: close. */
  readonly idleTimeoutMs: number;
  /**
   * A partial line older than this: drop. With maxLineBytes this also sets a minimum byte
   * rate (a line must arrive at maxLineBytes / partialLineTimeoutMs at worst), so no
   * separate rate check is needed.
   */
  readonly partialLineTimeoutMs: number;
  /** Malformed lines tolerated within garbageWindowMs; the next one drops the peer. */
  readonly maxGarbageLines: number;
  readonly garbageWindowMs: number;
  /** Output queued beyond what the kernel took; beyond it the peer is dropped. */
  readonly maxWriteQueueBytes: number;
  /** Reading stays paused for backpressure at most this long; then the peer is dropped. */
  readonly writeStallMs: number;
  /** Default timeout of a request we send. */
  readonly requestTimeoutMs: number;
  /** After a flushing close or a final error line, how long the peer gets to read it. */
  readonly lingerMs: number;
}

export const DEFAULT_CODEC_LIMITS: CodecLimits = Object.freeze({
  maxLineBytes: 16 * 1024,
  maxPendingOut: 64,
  maxPendingIn: 64,
  idleTimeoutMs: 300_000,
  partialLineTimeoutMs: 10_000,
  maxGarbageLines: 5,
  garbageWindowMs: 60_000,
  maxWriteQueueBytes: 1024 * 1024,
  writeStallMs: 30_000,
  requestTimeoutMs: 30_000,
  lingerMs: 2_000,
});

/** A reply to one of our requests. `message` is the whole object (for `reject-reason`). */
export interface RpcReply {
  readonly id: RpcId;
  readonly result: unknown;
  readonly error: unknown;
  readonly message: Readonly<Record<string, unknown>>;
}

export interface RpcRequest {
  readonly id: RpcId;
  readonly method: string;
  readonly params: unknown;
}

export interface CodecStats {
  bytesIn: number;
  bytesOut: number;
  linesIn: number;
  linesOut: number;
  garbageLines: number;
  /** Replies whose id matched no pending request (late, after a timeout, or bogus). */
  unmatchedReplies: number;
  requestTimeouts: number;
  handlerErrors: number;
  /** Largest partial line ever held; never above maxLineBytes. */
  maxBufferedBytes: number;
  /** Largest output backlog (socket.writableLength) ever seen after a write. */
  maxWriteQueuedBytes: number;
  /** Times reading was paused because the peer did not read our output. */
  readPauses: number;
  pendingOut: number;
  pendingIn: number;
  closeReason: CloseReason | null;
}

/** The one thing connections may share: totals for metrics. */
export class CodecCounters {
  connections = 0;
  bytesIn = 0;
  bytesOut = 0;
  linesIn = 0;
  readonly drops: Record<CloseReason, number> = Object.fromEntries(
    CLOSE_REASONS.map((r) => [r, 0]),
  ) as Record<CloseReason, number>;
}

export interface ConnectionOptions {
  readonly limits?: Partial<CodecLimits>;
  readonly clock?: Clock;
  readonly timers?: Timers;
  readonly counters?: CodecCounters;
  readonly logger?: Logger;
  /**
   * Methods that are notifications even when the peer puts a non-null id on them (some pools
   * do on mining.notify): they are never answered, so they must not count as in flight.
   */
  readonly notificationMethods?: ReadonlySet<string>;
  readonly onRequest?: (request: RpcRequest, connection: JsonRpcConnection) => void;
  readonly onNotification?: (
    method: string,
    params: unknown,
    connection: JsonRpcConnection,
  ) => void;
  readonly onClose?: (reason: CloseReason, error?: Error) => void;
}

interface Pending {
  readonly method: string;
  readonly timer: TimerHandle;
  readonly resolve: (reply: RpcReply) => void;
  readonly reject: (error: Error) => void;
}

const NEWLINE = 0x0a;
const MAX_ID = 2 ** 31 - 1;

/** The error a request we sent ends with when no reply comes: `context.stratum` says why. */
export type RequestFailure = "timeout" | "closed" | "busy";

export function requestFailure(e: unknown): RequestFailure | null {
  const s = (e as { context?: { stratum?: unknown } } | null)?.context?.stratum;
  return s === "timeout" || s === "closed" || s === "busy" ? s : null;
}

export class JsonRpcConnection {
  readonly #socket: Socket;
  readonly #limits: CodecLimits;
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #counters: CodecCounters | undefined;
  readonly #logger: Logger | undefined;
  readonly #notificationMethods: ReadonlySet<string>;
  readonly #onRequest: ConnectionOptions["onRequest"];
  readonly #onNotification: ConnectionOptions["onNotification"];
  readonly #onClose: ConnectionOptions["onClose"];

  readonly #stats: CodecStats = {
    bytesIn: 0,
    bytesOut: 0,
    linesIn: 0,
    linesOut: 0,
    garbageLines: 0,
    unmatchedReplies: 0,
    requestTimeouts: 0,
    handlerErrors: 0,
    maxBufferedBytes: 0,
    maxWriteQueuedBytes: 0,
    readPauses: 0,
    pendingOut: 0,
    pendingIn: 0,
    closeReason: null,
  };

  #partial: Buffer[] = [];
  #partialBytes = 0;
  #partialSince = 0;
  #lastRx: number;
  #blockedSince: number | null = null;
  #garbageTimes: number[] = [];
  #pendingOut = new Map<number, Pending>();
  /** Peer request ids not yet answered, keyed by type and value; a count per key (ids may repeat). */
  #pendingIn = new Map<string, number>();
  #pendingInCount = 0;
  #nextId = 1;
  #watchdog: TimerHandle | null = null;
  #watchdogAt = Number.POSITIVE_INFINITY;
  #linger: TimerHandle | null = null;
  #closed: CloseReason | null = null;

  readonly #onData = (chunk: Buffer): void => this.#receive(chunk);
  readonly #onDrain = (): void => this.#drained();

  constructor(socket: Socket, options: ConnectionOptions = {}) {
    this.#socket = socket;
    this.#limits = { ...DEFAULT_CODEC_LIMITS, ...options.limits };
    this.#clock = options.clock ?? systemClock;
    this.#timers = options.timers ?? systemTimers;
    this.#counters = options.counters;
    this.#logger = options.logger;
    this.#notificationMethods = options.notificationMethods ?? new Set();
    this.#onRequest = options.onRequest;
    this.#onNotification = options.onNotification;
    this.#onClose = options.onClose;
    this.#lastRx = this.#clock.now();
    if (this.#counters !== undefined) this.#counters.connections++;

    socket.on("data", this.#onData);
    socket.on("drain", this.#onDrain);
    // An 'error' without a listener would crash the process: one peer must not do that.
    socket.on("error", (e: Error) => this.#socketError(e));
    socket.on("end", () => this.#drop("peer_closed", { flush: true }));
    socket.on("close", () => {
      this.#clearLinger();
      this.#drop("peer_closed");
    });
    if (socket.destroyed) {
      // Reported after the constructor returns, so the owner has its object when it hears.
      queueMicrotask(() => this.#drop("peer_closed"));
      return;
    }
    this.#arm(this.#lastRx + this.#limits.idleTimeoutMs);
  }

  get closed(): boolean {
    return this.#closed !== null;
  }

  get closeReason(): CloseReason | null {
    return this.#closed;
  }

  get remoteAddress(): string | undefined {
    return this.#socket.remoteAddress;
  }

  /** A snapshot of this connection's counters. */
  get stats(): Readonly<CodecStats> {
    return { ...this.#stats, pendingOut: this.#pendingOut.size, pendingIn: this.#pendingInCount };
  }

  /**
   * Sends a request and resolves with the reply, whatever its result or error (callers
   * interpret Stratum's several reject forms). Rejects with AGENTD_E_IO whose
   * `context.stratum` is "timeout", "closed" or "busy" (maxPendingOut reached).
   */
  send(method: string, params: unknown, options: { timeoutMs?: number } = {}): Promise<RpcReply> {
    if (this.#closed !== null) return Promise.reject(requestError("closed", method));
    if (this.#pendingOut.size >= this.#limits.maxPendingOut) {
      return Promise.reject(requestError("busy", method));
    }
    const id = this.#allocateId();
    const timeoutMs = options.timeoutMs ?? this.#limits.requestTimeoutMs;
    return new Promise<RpcReply>((resolve, reject) => {
      const timer = this.#timers.setTimeout(() => {
        if (this.#pendingOut.delete(id)) {
          this.#stats.requestTimeouts++;
          reject(requestError("timeout", method));
        }
      }, timeoutMs);
      this.#pendingOut.set(id, { method, timer, resolve, reject });
      this.#write({ id, method, params });
    });
  }

  /** A notification: `{"id": null, "method", "params"}`. False when closed. */
  notify(method: string, params: unknown): boolean {
    if (this.#closed !== null) return false;
    this.#write({ id: null, method, params });
    return this.#closed === null;
  }

  /**
   * Writes one already-serialised message (a JSON object and its newline). The proxy sends the
   * same mining.notify to thousands of miners: serialising it once saves most of the fan-out.
   */
  writeLine(line: string): boolean {
    if (this.#closed !== null) return false;
    this.#writeLine(line);
    return this.#closed === null;
  }

  /** Answers a peer request. `error` is Stratum's `[code, message, null]` or null. */
  reply(id: RpcId | null, result: unknown, error: unknown = null): boolean {
    if (this.#closed !== null) return false;
    if (id !== null) this.#settleIncoming(id);
    this.#write({ id, result, error });
    return this.#closed === null;
  }

  /**
   * Ends the connection. By default at once (what policy enforcement needs); with
   * `flush: true` queued output is sent first and the peer gets lingerMs to read it.
   */
  close(reason: CloseReason = "local", options: { flush?: boolean } = {}): void {
    this.#drop(reason, { flush: options.flush === true });
  }

  // ---- input --------------------------------------------------------------------------------

  #receive(chunk: Buffer): void {
    if (this.#closed !== null) return;
    const now = this.#clock.now();
    this.#lastRx = now;
    this.#stats.bytesIn += chunk.length;
    if (this.#counters !== undefined) this.#counters.bytesIn += chunk.length;
    const max = this.#limits.maxLineBytes;
    let start = 0;
    while (this.#closed === null) {
      const nl = chunk.indexOf(NEWLINE, start);
      if (nl < 0) {
        const rest = chunk.length - start;
        if (rest === 0) return;
        // Counted before it is kept: a partial line never grows past the bound.
        if (this.#partialBytes + rest > max) {
          this.#lineTooLong();
          return;
        }
        if (this.#partialBytes === 0) {
          this.#partialSince = now;
          this.#arm(now + this.#limits.partialLineTimeoutMs);
        }
        // Copy a tail so a small remainder does not pin a large chunk in memory.
        this.#partial.push(start === 0 ? chunk : Buffer.from(chunk.subarray(start)));
        this.#partialBytes += rest;
        if (this.#partialBytes > this.#stats.maxBufferedBytes) {
          this.#stats.maxBufferedBytes = this.#partialBytes;
        }
        return;
      }
      const length = this.#partialBytes + (nl - start);
      if (length > max) {
        this.#lineTooLong();
        return;
      }
      let line: Buffer;
      if (this.#partialBytes === 0) {
        line = chunk.subarray(start, nl);
      } else {
        this.#partial.push(chunk.subarray(start, nl));
        line = Buffer.concat(this.#partial, length);
        this.#partial = [];
        this.#partialBytes = 0;
      }
      start = nl + 1;
      this.#line(line);
    }
  }

  #line(raw: Buffer): void {
    const text = raw.toString("utf8").trim();
    if (text.length === 0) return; // blank lines (some firmware sends "\n\n") are harmless
    this.#stats.linesIn++;
    if (this.#counters !== undefined) this.#counters.linesIn++;
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      this.#garbage("malformed JSON", null);
      return;
    }
    if (typeof msg !== "object" || msg === null || Array.isArray(msg)) {
      this.#garbage("not a JSON object", null);
      return;
    }
    const m = msg as Record<string, unknown>;
    const id = m.id;
    const validId = typeof id === "number" || typeof id === "string" ? id : null;
    if (typeof m.method === "string") {
      const params = m.params ?? [];
      if (id === undefined || id === null || this.#notificationMethods.has(m.method)) {
        this.#dispatch(() => this.#onNotification?.(m.method as string, params, this));
        return;
      }
      if (validId === null) {
        this.#garbage("invalid id", null);
        return;
      }
      this.#request(validId, m.method, params);
      return;
    }
    if (validId !== null && ("result" in m || "error" in m)) {
      this.#response(validId, m);
      return;
    }
    this.#garbage("not a JSON-RPC message", validId);
  }

  #request(id: RpcId, method: string, params: unknown): void {
    const key = idKey(id);
    this.#pendingIn.set(key, (this.#pendingIn.get(key) ?? 0) + 1);
    this.#pendingInCount++;
    if (this.#pendingInCount > this.#limits.maxPendingIn) {
      this.#drop("inflight");
      return;
    }
    if (this.#onRequest === undefined) {
      this.reply(id, null, [20, "method not supported", null]);
      return;
    }
    this.#dispatch(() => this.#onRequest?.({ id, method, params }, this), id);
  }

  /** A handler's exception is our bug: answer the peer, log, and keep the connection. */
  #dispatch(handler: () => void, id: RpcId | null = null): void {
    try {
      handler();
    } catch (e) {
      this.#stats.handlerErrors++;
      this.#logger?.error({ err: e }, "stratum handler failed");
      if (id !== null && this.#pendingIn.has(idKey(id))) {
        this.reply(id, null, [20, "internal error", null]);
      }
    }
  }

  #response(id: RpcId, m: Record<string, unknown>): void {
    // Some pools echo our numeric id as a string.
    const n = typeof id === "number" ? id : /^[0-9]{1,10}$/.test(id) ? Number(id) : -1;
    const pending = this.#pendingOut.get(n);
    if (pending === undefined) {
      this.#stats.unmatchedReplies++;
      return;
    }
    this.#pendingOut.delete(n);
    this.#timers.clearTimeout(pending.timer);
    pending.resolve({ id, result: m.result ?? null, error: m.error ?? null, message: m });
  }

  #garbage(what: string, id: RpcId | null): void {
    this.#stats.garbageLines++;
    const now = this.#clock.now();
    const since = now - this.#limits.garbageWindowMs;
    this.#garbageTimes = this.#garbageTimes.filter((t) => t > since);
    this.#garbageTimes.push(now);
    const line = { id, result: null, error: [20, what, null] };
    if (this.#garbageTimes.length > this.#limits.maxGarbageLines) {
      this.#drop("garbage", { finalLine: line });
      return;
    }
    this.#write(line);
  }

  #lineTooLong(): void {
    this.#partial = [];
    this.#partialBytes = 0;
    this.#drop("line_too_long", {
      finalLine: { id: null, result: null, error: [20, "line too long", null] },
    });
  }

  #settleIncoming(id: RpcId): void {
    const key = idKey(id);
    const n = this.#pendingIn.get(key);
    if (n === undefined) return;
    if (n <= 1) this.#pendingIn.delete(key);
    else this.#pendingIn.set(key, n - 1);
    this.#pendingInCount--;
  }

  #socketError(e: Error): void {
    const code = (e as { code?: unknown }).code;
    const reset = code === "ECONNRESET" || code === "EPIPE";
    this.#drop(reset ? "peer_closed" : "socket_error", { error: e });
  }

  // ---- output -------------------------------------------------------------------------------

  #write(message: unknown): void {
    this.#writeLine(`${JSON.stringify(message)}\n`);
  }

  #writeLine(line: string): void {
    const bytes = Buffer.byteLength(line);
    this.#stats.bytesOut += bytes;
    this.#stats.linesOut++;
    if (this.#counters !== undefined) this.#counters.bytesOut += bytes;
    const ok = this.#socket.write(line);
    const queued = this.#socket.writableLength;
    if (queued > this.#stats.maxWriteQueuedBytes) this.#stats.maxWriteQueuedBytes = queued;
    if (queued > this.#limits.maxWriteQueueBytes) {
      this.#drop("write_backlog");
      return;
    }
    if (!ok && this.#blockedSince === null) {
      // Stop reading while the peer does not read: it cannot make us queue replies forever.
      this.#blockedSince = this.#clock.now();
      this.#stats.readPauses++;
      this.#socket.pause();
      this.#arm(this.#blockedSince + this.#limits.writeStallMs);
    }
  }

  #drained(): void {
    if (this.#blockedSince === null || this.#closed !== null) return;
    this.#blockedSince = null;
    // The pause was ours: the peer's silence (or stuck line) while paused does not count.
    const now = this.#clock.now();
    this.#lastRx = now;
    if (this.#partialBytes > 0) this.#partialSince = now;
    this.#socket.resume();
  }

  #allocateId(): number {
    for (;;) {
      const id = this.#nextId;
      this.#nextId = id >= MAX_ID ? 1 : id + 1;
      if (!this.#pendingOut.has(id)) return id;
    }
  }

  // ---- time ---------------------------------------------------------------------------------

  /** One timer per connection, armed for the nearest deadline and re-checked when it fires. */
  #arm(deadline: number): void {
    if (this.#closed !== null || deadline >= this.#watchdogAt) return;
    if (this.#watchdog !== null) this.#timers.clearTimeout(this.#watchdog);
    this.#watchdogAt = deadline;
    const delay = Math.max(1, deadline - this.#clock.now());
    this.#watchdog = this.#timers.setTimeout(() => this.#check(), delay);
  }

  #check(): void {
    this.#watchdog = null;
    this.#watchdogAt = Number.POSITIVE_INFINITY;
    if (this.#closed !== null) return;
    const now = this.#clock.now();
    const l = this.#limits;
    if (this.#blockedSince !== null) {
      // Reading is paused by us: neither silence nor a stuck partial line is the peer's doing.
      if (now - this.#blockedSince >= l.writeStallMs) {
        this.#drop("write_backlog");
        return;
      }
      this.#arm(this.#blockedSince + l.writeStallMs);
      return;
    }
    if (now - this.#lastRx >= l.idleTimeoutMs) {
      this.#drop("idle");
      return;
    }
    if (this.#partialBytes > 0 && now - this.#partialSince >= l.partialLineTimeoutMs) {
      this.#drop("slowloris");
      return;
    }
    let next = this.#lastRx + l.idleTimeoutMs;
    if (this.#partialBytes > 0) next = Math.min(next, this.#partialSince + l.partialLineTimeoutMs);
    this.#arm(next);
  }

  // ---- closing ------------------------------------------------------------------------------

  #drop(
    reason: CloseReason,
    how: { flush?: boolean; finalLine?: unknown; error?: Error } = {},
  ): void {
    if (this.#closed !== null) return;
    this.#closed = reason;
    this.#stats.closeReason = reason;
    if (this.#counters !== undefined) this.#counters.drops[reason]++;
    if (this.#watchdog !== null) this.#timers.clearTimeout(this.#watchdog);
    this.#watchdog = null;
    this.#partial = [];
    this.#partialBytes = 0;
    this.#pendingIn.clear();
    this.#pendingInCount = 0;
    const pending = [...this.#pendingOut.values()];
    this.#pendingOut.clear();

    const socket = this.#socket;
    socket.off("data", this.#onData);
    const graceful = how.flush === true || how.finalLine !== undefined;
    if (graceful && reason !== "write_backlog" && !socket.destroyed) {
      // Reading stays paused: whatever the peer still sends waits in the kernel, not here.
      socket.pause();
      // Not writable: Node is already ending it (the peer half-closed); let that flush.
      if (socket.writable) {
        if (how.finalLine !== undefined) socket.end(`${JSON.stringify(how.finalLine)}\n`);
        else socket.end();
      }
      this.#linger = this.#timers.setTimeout(() => {
        this.#linger = null;
        socket.destroy();
      }, this.#limits.lingerMs);
    } else {
      socket.destroy();
    }

    for (const p of pending) {
      this.#timers.clearTimeout(p.timer);
      p.reject(requestError("closed", p.method));
    }
    this.#onClose?.(reason, how.error);
  }

  #clearLinger(): void {
    if (this.#linger !== null) this.#timers.clearTimeout(this.#linger);
    this.#linger = null;
  }
}

function idKey(id: RpcId): string {
  return typeof id === "number" ? `n${id}` : `s${id}`;
}

function requestError(why: RequestFailure, method: string) {
  const text = {
    timeout: "no reply in time",
    closed: "connection closed",
    busy: "too many requests in flight",
  }[why];
  return fail("AGENTD_E_IO", `stratum ${method}: ${text}`, { stratum: why, method });
}
