/**
 * A tiny Stratum pool for the ASIC simulator's tests, written here with node:net on purpose
 * (not sim/pool/, not stratum-client/): it records every line a miner sends, in order, and
 * answers the handshake like a plain pool unless a test overrides the answer.
 */
import { createServer, type Server, type Socket } from "node:net";

export type Msg = Record<string, unknown> & { id?: unknown; method?: string; params?: unknown };

/** A message's params as an array ([] when absent or not an array). */
export function paramsOf(m: Msg | undefined): unknown[] {
  return Array.isArray(m?.params) ? (m.params as unknown[]) : [];
}

export interface PoolBehaviour {
  /** Answer for a request; undefined: the default answer; null: no answer at all. */
  readonly answer?: (msg: Msg, conn: FakeConn) => unknown;
  readonly extranonce1?: string;
  readonly extranonce2Size?: number;
  /** Mask granted to mining.configure; null refuses version rolling. */
  readonly mask?: string | null;
}

export class FakeConn {
  readonly socket: Socket;
  /** Every JSON line received, in order. */
  readonly messages: Msg[] = [];
  /** Lines that were not JSON objects. */
  readonly garbage: string[] = [];
  /** Raw bytes received (for hostile-input checks). */
  bytes = 0;
  closed = false;
  readonly #waiters: { pred: (m: Msg) => boolean; from: number; resolve: (m: Msg) => void }[] = [];
  readonly #closeWaiters: (() => void)[] = [];

  constructor(socket: Socket) {
    this.socket = socket;
  }

  send(msg: unknown): void {
    if (!this.socket.destroyed) this.socket.write(`${JSON.stringify(msg)}\n`);
  }

  setDifficulty(d: number): void {
    this.send({ id: null, method: "mining.set_difficulty", params: [d] });
  }

  notify(job: TestJob, clean = true): void {
    this.send({
      id: null,
      method: "mining.notify",
      params: [
        job.jobId,
        job.prevhash,
        job.coinb1,
        job.coinb2,
        job.branch,
        job.version,
        job.nbits,
        job.ntime,
        clean,
      ],
    });
  }

  /** The first message from index `from` on that satisfies pred (waits for it). */
  waitFor(pred: (m: Msg) => boolean, from = 0, timeoutMs = 15_000): Promise<Msg> {
    const found = this.messages.slice(from).find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("timed out waiting for a message")), timeoutMs);
      this.#waiters.push({
        pred,
        from,
        resolve: (m) => {
          clearTimeout(t);
          resolve(m);
        },
      });
    });
  }

  /** Waits until `n` messages match pred. */
  async waitForCount(pred: (m: Msg) => boolean, n: number, timeoutMs = 15_000): Promise<Msg[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = this.messages.filter(pred);
      if (got.length >= n) return got.slice(0, n);
      const seen = this.messages.length;
      await this.waitFor(() => true, seen, Math.max(1, deadline - Date.now()));
    }
  }

  waitClosed(timeoutMs = 15_000): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("timed out waiting for close")), timeoutMs);
      this.#closeWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** @internal */
  received(m: Msg): void {
    this.messages.push(m);
    const idx = this.messages.length - 1;
    for (const w of this.#waiters.splice(0)) {
      if (idx >= w.from && w.pred(m)) w.resolve(m);
      else this.#waiters.push(w);
    }
  }

  /** @internal */
  ended(): void {
    this.closed = true;
    for (const w of this.#closeWaiters.splice(0)) w();
  }
}

export interface TestJob {
  readonly jobId: string;
  readonly prevhash: string;
  readonly coinb1: string;
  readonly coinb2: string;
  readonly branch: readonly string[];
  readonly version: string;
  readonly nbits: string;
  readonly ntime: string;
}

export class FakePool {
  readonly conns: FakeConn[] = [];
  readonly #server: Server;
  readonly #behaviour: PoolBehaviour;
  #connWaiters: (() => void)[] = [];
  port = 0;

  private constructor(behaviour: PoolBehaviour) {
    this.#behaviour = behaviour;
    this.#server = createServer((s) => this.#onConnection(s));
  }

  static async start(behaviour: PoolBehaviour = {}): Promise<FakePool> {
    const pool = new FakePool(behaviour);
    await new Promise<void>((resolve) => pool.#server.listen(0, "127.0.0.1", resolve));
    const addr = pool.#server.address();
    if (addr && typeof addr === "object") pool.port = addr.port;
    return pool;
  }

  get url(): string {
    return `stratum+tcp://127.0.0.1:${this.port}`;
  }

  get extranonce1(): string {
    return this.#behaviour.extranonce1 ?? "f000000d";
  }

  /** The n-th connection (0-based), waiting for it if needed. */
  conn(n: number, timeoutMs = 15_000): Promise<FakeConn> {
    const c = this.conns[n];
    if (c) return Promise.resolve(c);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`timed out waiting for connection ${n}`)),
        timeoutMs,
      );
      const w = () => {
        if (this.conns.length > n) {
          clearTimeout(t);
          resolve(this.conns[n] as FakeConn);
        } else {
          this.#connWaiters.push(w);
        }
      };
      this.#connWaiters.push(w);
    });
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #onConnection(socket: Socket): void {
    const conn = new FakeConn(socket);
    this.conns.push(conn);
    for (const w of this.#connWaiters.splice(0)) w();
    let buf = "";
    socket.on("data", (chunk: Buffer) => {
      conn.bytes += chunk.length;
      buf += chunk.toString("latin1");
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        this.#onLine(conn, line);
        nl = buf.indexOf("\n");
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => conn.ended());
  }

  #onLine(conn: FakeConn, line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      conn.garbage.push(line);
      return;
    }
    if (msg === null || typeof msg !== "object" || Array.isArray(msg)) {
      conn.garbage.push(line);
      return;
    }
    const m = msg as Msg;
    conn.received(m);
    if (m.id === undefined || m.id === null || typeof m.method !== "string") return;
    const custom = this.#behaviour.answer?.(m, conn);
    if (custom === null) return;
    const result = custom !== undefined ? custom : this.#defaultAnswer(m);
    conn.send({ id: m.id, result, error: null });
  }

  #defaultAnswer(m: Msg): unknown {
    const b = this.#behaviour;
    switch (m.method) {
      case "mining.configure": {
        const mask = b.mask === undefined ? "1fffe000" : b.mask;
        return mask === null
          ? { "version-rolling": false }
          : { "version-rolling": true, "version-rolling.mask": mask };
      }
      case "mining.subscribe":
        return [
          [
            ["mining.set_difficulty", "d-1"],
            ["mining.notify", "sess-1"],
          ],
          this.extranonce1,
          b.extranonce2Size ?? 4,
        ];
      default:
        return true;
    }
  }
}
