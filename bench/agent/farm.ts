/**
 * The simulated ASICs of bench/agent.ts: a few Stratum V1 miners on plain sockets, connected
 * through the agent's Stratum proxy, doing no hashing (the proxy's and the pool's difficulty
 * are so low that every header is a valid share, as in bench/proxy-scale/fleet.ts). A miner
 * counts as mining once it holds the answers to subscribe and authorize and a notify; while
 * mining it submits a share now and then (exponential gaps, mean `shareMs`), so the data path
 * is busy when a revocation arrives.
 *
 * What is measured here is when the data path stops: the moment each miner's socket is ended
 * by the proxy (its `end` or `close` event, whichever fires first, timestamped with
 * performance.now() before anything else runs). The proxy closes every miner when a
 * revocation leaves it no allowed network (stratum-client/proxy.ts `apply`); a share answered
 * `mining denied` (code 24) before that would mean the gate closed without dropping the miners
 * (a stop publication arriving first), and is counted apart.
 *
 * A dropped miner stays down until `connectAll` is called again, which retries every
 * `retryMs` (the proxy refuses connections while no network is allowed, and audits each
 * refusal, so the farm only retries once the bench has given the agent a new consent).
 */
import { connect, type Socket } from "node:net";
import { performance } from "node:perf_hooks";

const SUBSCRIBE_ID = 1;
const AUTHORIZE_ID = 2;

interface Miner {
  readonly index: number;
  readonly worker: string;
  socket: Socket | null;
  buffer: string;
  subscribed: boolean;
  authorized: boolean;
  en2Size: number;
  en2: number;
  jobId: string;
  ntime: string;
  /** performance.now() when the proxy ended this connection (NaN while it is up). */
  droppedAt: number;
  shareTimer: ReturnType<typeof setTimeout> | null;
  nextId: number;
}

export interface FarmCounts {
  readonly connects: number;
  /** Connections the proxy refused or closed before the miner had work. */
  readonly refused: number;
  readonly shares_sent: number;
  readonly shares_accepted: number;
  /** Shares answered `mining denied` (the gate closed while the connection stayed up). */
  readonly shares_denied: number;
  readonly shares_rejected_other: number;
  /** Drops while mining that no revocation explains (must be 0). */
  readonly unexpected_drops: number;
}

export class Farm {
  readonly #miners: Miner[];
  readonly #host: string;
  readonly #port: number;
  readonly #shareMs: number;
  readonly #random: () => number;
  #expectDrops = false;
  #connects = 0;
  #refused = 0;
  #sent = 0;
  #accepted = 0;
  #denied = 0;
  #rejectedOther = 0;
  #unexpected = 0;
  #closed = false;

  constructor(o: {
    readonly miners: number;
    readonly host: string;
    readonly port: number;
    readonly shareMs: number;
    readonly random: () => number;
  }) {
    this.#host = o.host;
    this.#port = o.port;
    this.#shareMs = o.shareMs;
    this.#random = o.random;
    this.#miners = Array.from({ length: o.miners }, (_, index) => ({
      index,
      worker: `bench.asic${index}`,
      socket: null,
      buffer: "",
      subscribed: false,
      authorized: false,
      en2Size: 0,
      en2: 0,
      jobId: "",
      ntime: "",
      droppedAt: Number.NaN,
      shareTimer: null,
      nextId: 10,
    }));
  }

  get mining(): number {
    let n = 0;
    for (const m of this.#miners) if (isMining(m)) n++;
    return n;
  }

  counts(): FarmCounts {
    return {
      connects: this.#connects,
      refused: this.#refused,
      shares_sent: this.#sent,
      shares_accepted: this.#accepted,
      shares_denied: this.#denied,
      shares_rejected_other: this.#rejectedOther,
      unexpected_drops: this.#unexpected,
    };
  }

  /**
   * Connects every miner that is not mining, retrying every `retryMs` until all are mining;
   * resolves with performance.now() when the last one got its first job.
   */
  async connectAll(retryMs: number, timeoutMs: number): Promise<number> {
    this.#expectDrops = false;
    const deadline = performance.now() + timeoutMs;
    let last = 0;
    await Promise.all(
      this.#miners.map(async (m) => {
        while (!isMining(m)) {
          if (performance.now() > deadline || this.#closed) {
            throw new Error(`miner ${m.index} not mining within ${timeoutMs} ms`);
          }
          const at = await this.#attempt(m);
          if (at !== null) {
            last = Math.max(last, at);
            break;
          }
          await sleep(retryMs);
        }
      }),
    );
    return last;
  }

  /**
   * From now on, drops are expected (a revocation is on its way). Resolves with when the
   * first and the last miner were dropped (performance.now()), or rejects after `timeoutMs`.
   */
  async allDropped(timeoutMs: number): Promise<{ first: number; last: number }> {
    this.#expectDrops = true;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (this.#miners.every((m) => !Number.isNaN(m.droppedAt))) break;
      if (performance.now() > deadline)
        throw new Error(`the proxy did not drop every miner within ${timeoutMs} ms`);
      await sleep(1);
    }
    let first = Number.POSITIVE_INFINITY;
    let last = 0;
    for (const m of this.#miners) {
      first = Math.min(first, m.droppedAt);
      last = Math.max(last, m.droppedAt);
    }
    return { first, last };
  }

  /** Arms the drop detector (the next drops are expected) without waiting. */
  expectDrops(): void {
    this.#expectDrops = true;
  }

  close(): void {
    this.#closed = true;
    for (const m of this.#miners) {
      if (m.shareTimer !== null) clearTimeout(m.shareTimer);
      m.socket?.destroy();
    }
  }

  // ---- internals ----------------------------------------------------------------------------

  /** One connection attempt: performance.now() of the first job, or null if it failed. */
  #attempt(m: Miner): Promise<number | null> {
    this.#connects++;
    m.buffer = "";
    m.subscribed = false;
    m.authorized = false;
    m.jobId = "";
    m.droppedAt = Number.NaN;
    const socket = connect({ host: this.#host, port: this.#port, noDelay: true });
    m.socket = socket;
    socket.setEncoding("latin1");
    return new Promise((resolve) => {
      let settled = false;
      const settle = (v: number | null) => {
        if (!settled) {
          settled = true;
          resolve(v);
        }
      };
      const dropped = () => {
        if (!Number.isNaN(m.droppedAt) || m.socket !== socket) return;
        const t = performance.now();
        m.droppedAt = t;
        if (m.shareTimer !== null) clearTimeout(m.shareTimer);
        m.shareTimer = null;
        if (!settled) {
          this.#refused++;
          settle(null);
        } else if (!this.#expectDrops && !this.#closed) this.#unexpected++;
      };
      socket.once("connect", () => {
        socket.write(
          `{"id":${SUBSCRIBE_ID},"method":"mining.subscribe","params":["bench-asic/1.0"]}\n` +
            `{"id":${AUTHORIZE_ID},"method":"mining.authorize","params":["${m.worker}","x"]}\n`,
        );
      });
      socket.on("data", (chunk: string) => {
        const text = m.buffer === "" ? chunk : m.buffer + chunk;
        let start = 0;
        for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", start)) {
          if (this.#line(m, text.slice(start, nl)) && !settled) {
            settle(performance.now());
            this.#scheduleShare(m);
          }
          start = nl + 1;
        }
        m.buffer = start === text.length ? "" : text.slice(start);
      });
      socket.once("end", dropped);
      socket.once("close", dropped);
      socket.on("error", () => {});
    });
  }

  /** Handles one line; true when the miner has just become ready to mine. */
  #line(m: Miner, line: string): boolean {
    const was = isMining(m);
    const msg = JSON.parse(line) as {
      id?: unknown;
      method?: string;
      result?: unknown;
      error?: unknown;
      params?: unknown[];
    };
    if (msg.method === "mining.notify") {
      const p = msg.params as unknown[];
      m.jobId = String(p[0]);
      m.ntime = String(p[7]);
    } else if (msg.id === SUBSCRIBE_ID) {
      const r = msg.result as [unknown, string, number] | null;
      if (Array.isArray(r)) {
        m.en2Size = r[2];
        m.subscribed = true;
      }
    } else if (msg.id === AUTHORIZE_ID) {
      m.authorized = msg.result === true;
    } else if (typeof msg.id === "number") {
      if (msg.result === true) this.#accepted++;
      else if (Array.isArray(msg.error) && msg.error[0] === 24) this.#denied++;
      else this.#rejectedOther++;
    }
    return !was && isMining(m);
  }

  #scheduleShare(m: Miner): void {
    const gap = -Math.log(1 - this.#random()) * this.#shareMs;
    m.shareTimer = setTimeout(() => {
      m.shareTimer = null;
      if (!isMining(m) || !Number.isNaN(m.droppedAt)) return;
      const en2 = (m.en2++).toString(16).padStart(m.en2Size * 2, "0");
      const nonce = ((this.#random() * 0x100000000) >>> 0).toString(16).padStart(8, "0");
      m.socket?.write(
        `{"id":${m.nextId++},"method":"mining.submit","params":["${m.worker}",${JSON.stringify(m.jobId)},"${en2}","${m.ntime}","${nonce}"]}\n`,
      );
      this.#sent++;
      this.#scheduleShare(m);
    }, gap);
  }
}

function isMining(m: Miner): boolean {
  return m.subscribed && m.authorized && m.jobId !== "" && Number.isNaN(m.droppedAt);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
