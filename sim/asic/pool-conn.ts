/**
 * One TCP connection to a pool: JSON lines out, requests matched to their answers, the
 * silence timer (no data for the timeout: the connection is dead), and why it closed.
 * The per-connection Stratum state the miner keeps lives here too.
 */
import type { Socket } from "node:net";
import { readLines, sendJson } from "./lines.ts";
import type { Reply } from "./messages.ts";

export interface PoolConnHandlers {
  readonly onConnect: () => void;
  /** A request or notification from the pool (it has a method). */
  readonly onMethod: (method: string, params: unknown, id: unknown) => void;
  readonly onClose: (reason: string) => void;
}

export class PoolConn {
  readonly socket: Socket;
  /** Index into the miner's slots; shifts when the API removes a slot before it. */
  slot: number;
  established = false;
  /** Why we closed it (null: open, or closed by the pool). */
  closing: string | null = null;
  /** client.reconnect's wait before connecting again. */
  reconnectWaitMs = 0;
  // Stratum state of this session.
  extranonce1: string | null = null;
  extranonce2Size = 0;
  authorized = false;
  everAuthorized = false;
  /** BIP 310 granted (set_version_mask is honoured only then). */
  rollingNegotiated = false;
  /** Version bits being rolled (0: none). */
  mask = 0;
  #nextId = 1;
  readonly #pending = new Map<string, (reply: Reply | null) => void>();
  readonly #silence: NodeJS.Timeout;

  constructor(socket: Socket, slot: number, silenceMs: number, h: PoolConnHandlers) {
    this.socket = socket;
    this.slot = slot;
    // Armed from the start, so a connect that hangs counts as silence too.
    this.#silence = setTimeout(() => this.close("silence"), silenceMs);
    socket.setNoDelay(true);
    socket.on("connect", () => {
      this.established = true;
      h.onConnect();
    });
    socket.on("data", () => this.#silence.refresh());
    readLines(socket, {
      onMessage: (m) => this.#onMessage(m, h),
      onGarbage: () => {},
      onOverflow: () => {
        this.closing ??= "overlong line";
      },
    });
    socket.on("error", () => {
      this.closing ??= this.established ? "error" : "refused";
    });
    socket.on("close", () => {
      clearTimeout(this.#silence);
      for (const cb of this.#pending.values()) cb(null);
      this.#pending.clear();
      h.onClose(this.closing ?? "closed by pool");
    });
  }

  /** The id the next request will carry. */
  get nextId(): number {
    return this.#nextId;
  }

  /**
   * Sends a request. `handle` runs synchronously when the answer is read, before any line
   * after it (a notify right behind the subscribe answer must see the extranonce); null when
   * the connection closed first.
   */
  request<T>(method: string, params: unknown, handle: (reply: Reply | null) => T): Promise<T> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      if (this.socket.destroyed) {
        resolve(handle(null));
        return;
      }
      this.#pending.set(String(id), (r) => resolve(handle(r)));
      sendJson(this.socket, { id, method, params });
    });
  }

  reply(id: unknown, result: unknown): void {
    sendJson(this.socket, { id, result, error: null });
  }

  /** Raw bytes (the hostile fault). */
  write(data: string | Buffer): void {
    if (!this.socket.destroyed) this.socket.write(data);
  }

  close(reason: string): void {
    this.closing ??= reason;
    this.socket.destroy();
  }

  #onMessage(msg: Record<string, unknown>, h: PoolConnHandlers): void {
    if (this.closing !== null) return;
    if (typeof msg.method === "string") {
      h.onMethod(msg.method, msg.params, msg.id);
      return;
    }
    if (msg.id === undefined || msg.id === null) return;
    const key = String(msg.id);
    const cb = this.#pending.get(key);
    if (cb) {
      this.#pending.delete(key);
      cb({ result: msg.result, error: msg.error, raw: msg });
    }
  }
}
