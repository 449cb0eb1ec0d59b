/**
 * Test-side Stratum client and an independent share builder for the simulated pool's tests.
 * Nothing here comes from sim/ or stratum-client/: the header is built with node:crypto from
 * the notify fields as PROTOCOLS.md §1 describes, so the tests cross-check the pool.
 */
import { createHash } from "node:crypto";
import { connect, type Socket } from "node:net";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface Message {
  readonly id?: Json;
  readonly method?: string;
  readonly params?: Json[];
  readonly result?: Json;
  readonly error?: Json;
}

export interface Notify {
  readonly jobId: string;
  readonly prevhash: string;
  readonly coinb1: string;
  readonly coinb2: string;
  readonly branch: string[];
  readonly version: string;
  readonly nbits: string;
  readonly ntime: string;
  readonly clean: boolean;
}

/** A line-oriented JSON-RPC client over node:net that keeps every message it received. */
export class TestClient {
  readonly received: Message[] = [];
  readonly closed: Promise<void>;
  #socket: Socket;
  #buffer = "";
  #nextId = 1;
  #waiters: { match: (m: Message) => boolean; resolve: (m: Message) => void }[] = [];

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.#buffer += chunk;
      for (let nl = this.#buffer.indexOf("\n"); nl >= 0; nl = this.#buffer.indexOf("\n")) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        const msg = JSON.parse(line) as Message;
        this.received.push(msg);
        this.#waiters = this.#waiters.filter((w) => {
          if (!w.match(msg)) return true;
          w.resolve(msg);
          return false;
        });
      }
    });
    socket.on("error", () => {});
    this.closed = new Promise((resolve) => socket.on("close", () => resolve()));
  }

  static connect(port: number): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, "127.0.0.1", () => resolve(new TestClient(s)));
      s.once("error", reject);
    });
  }

  get destroyed(): boolean {
    return this.#socket.destroyed;
  }

  /** Sends a request and resolves with its response. */
  request(method: string, params: Json[]): Promise<Message> {
    const id = this.#nextId++;
    const reply = this.waitFor((m) => m.id === id && m.method === undefined);
    this.send({ id, method, params });
    return reply;
  }

  /** Sends without waiting (for pipelining and silence tests); returns the id used. */
  send(msg: { id?: Json; method: string; params: Json[] }): number {
    const id = typeof msg.id === "number" ? msg.id : this.#nextId++;
    this.#socket.write(`${JSON.stringify({ ...msg, id })}\n`);
    return id;
  }

  /** The first message (already received or future) matching. */
  waitFor(match: (m: Message) => boolean, from = 0): Promise<Message> {
    const seen = this.received.slice(from).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.#waiters.push({ match, resolve }));
  }

  /** The n-th notification of `method` (counting from 1). */
  async notification(method: string, n = 1): Promise<Message> {
    for (;;) {
      const all = this.received.filter((m) => m.method === method);
      const hit = all[n - 1];
      if (hit) return hit;
      await this.waitFor((m) => m.method === method, this.received.length);
    }
  }

  close(): void {
    this.#socket.destroy();
  }
}

export function parseNotify(m: Message): Notify {
  const p = m.params ?? [];
  const [jobId, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean] = p;
  return {
    jobId: jobId as string,
    prevhash: prevhash as string,
    coinb1: coinb1 as string,
    coinb2: coinb2 as string,
    branch: branch as string[],
    version: version as string,
    nbits: nbits as string,
    ntime: ntime as string,
    clean: clean as boolean,
  };
}

export function sha256d(data: Uint8Array): Buffer {
  return createHash("sha256").update(createHash("sha256").update(data).digest()).digest();
}

export function wordSwap(hex: string): Buffer {
  const b = Buffer.from(hex, "hex");
  for (let i = 0; i < b.length; i += 4) b.subarray(i, i + 4).reverse();
  return b;
}

export const DIFF1 = 0xffffn << 208n;

/** The 80-byte header for a share (PROTOCOLS.md §1, steps 1–3). */
export function buildHeader(
  job: Notify,
  extranonce1: string,
  extranonce2: string,
  ntime: string,
  nonce: number,
  version: number,
): Buffer {
  const coinbase = Buffer.from(job.coinb1 + extranonce1 + extranonce2 + job.coinb2, "hex");
  let root = sha256d(coinbase);
  for (const b of job.branch) root = sha256d(Buffer.concat([root, Buffer.from(b, "hex")]));
  const h = Buffer.alloc(80);
  h.writeUInt32LE(version >>> 0, 0);
  wordSwap(job.prevhash).copy(h, 4);
  root.copy(h, 36);
  h.writeUInt32LE(Number.parseInt(ntime, 16), 68);
  h.writeUInt32LE(Number.parseInt(job.nbits, 16), 72);
  h.writeUInt32LE(nonce >>> 0, 76);
  return h;
}

/** The header hash as the little-endian 256-bit integer compared with targets. */
export function hashInt(header: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(sha256d(header)).reverse().toString("hex")}`);
}

export function displayHash(header: Uint8Array): string {
  return Buffer.from(sha256d(header)).reverse().toString("hex");
}

export interface Solution {
  readonly nonce: number;
  readonly nonceHex: string;
  readonly hash: string;
}

/**
 * Brute-forces a nonce whose hash meets (`want: true`) or misses (`want: false`) the target.
 * Tests use power-of-two difficulties, so the target here is exact without any division.
 */
export function solve(
  job: Notify,
  extranonce1: string,
  extranonce2: string,
  target: bigint,
  want = true,
  version = Number.parseInt(job.version, 16),
  startNonce = 0,
): Solution {
  for (let nonce = startNonce; nonce < 2 ** 32; nonce++) {
    const header = buildHeader(job, extranonce1, extranonce2, job.ntime, nonce, version);
    if (hashInt(header) <= target === want) {
      return { nonce, nonceHex: nonce.toString(16).padStart(8, "0"), hash: displayHash(header) };
    }
  }
  throw new Error("no nonce found");
}
