/**
 * The load generator of bench/proxy-scale.ts: many Stratum V1 miners in one process, on
 * plain sockets, doing no hashing. Each connects from one of several loopback source
 * addresses (127.0.0.1, .2, …), sends subscribe and authorize pipelined, and counts as ready
 * once it has both answers, a set_difficulty and a notify. Shares are submitted at a fixed
 * aggregate rate, round-robin over the miners, each with its own extranonce2 (a per-miner
 * counter) so no share is ever a duplicate; they are valid only because the server's
 * difficulty is so low that every header meets it — the generator never checks.
 *
 * Measured here: each submit's round trip (write → reply read) and, per new job, when each
 * miner read its notify. Everything a miner receives is timestamped when its socket's data
 * event fires, before any parsing, and the per-line work is kept small (a notify is not
 * parsed until a share needs its ntime), because with thousands of sockets the generator's
 * own per-socket cost adds directly to what it measures. The baseline run (a trivial server,
 * same generator) shows that floor.
 */
import { connect, type Socket } from "node:net";
import { performance } from "node:perf_hooks";

const SUBSCRIBE_ID = 1;
const AUTHORIZE_ID = 2;
const FIRST_SUBMIT_ID = 10;

class Miner {
  readonly index: number;
  readonly worker: string;
  socket: Socket | null = null;
  buffer = "";
  subscribed = false;
  authorized = false;
  difficulties = 0;
  en2Size = 0;
  en2 = 0;
  jobId = "";
  jobLine = "";
  ntime = "";
  ntimeFor = "";
  error: string | null = null;

  constructor(index: number) {
    this.index = index;
    this.worker = `bench.m${index}`;
  }

  get ready(): boolean {
    return this.subscribed && this.authorized && this.difficulties > 0 && this.jobId !== "";
  }
}

export interface HandshakeResult {
  readonly miners: number;
  readonly connected: number;
  readonly subscribed: number;
  readonly authorized: number;
  readonly ready: number;
  readonly errors: Record<string, number>;
  readonly seconds: number;
}

export interface ShareRun {
  readonly sent: number;
  readonly replied: number;
  readonly accepted: number;
  /** Rejects by Stratum error code (or "false" for a bare false). */
  readonly rejected: Record<string, number>;
  /** Round trips of answered submits, in ns, for summarizeNs. */
  readonly rttNs: Float64Array;
  /** Wall time from the first submit to the last one written. */
  readonly sendSeconds: number;
}

export interface FanOut {
  readonly job: string;
  /** Miners that read the job's notify before the timeout. */
  readonly reached: number;
  /** From the first miner reading it to the last, ms. */
  readonly spreadMs: number;
  /** From the trigger to the first and to the last miner reading it, ms. */
  readonly triggerToFirstMs: number;
  readonly triggerToLastMs: number;
}

interface Tracking {
  id: string | null;
  first: number;
  last: number;
  count: number;
}

interface Submitting {
  readonly sentAt: Float64Array;
  readonly rtt: Float64Array;
  replied: number;
  accepted: number;
  readonly rejected: Record<string, number>;
}

export class Fleet {
  readonly #miners: Miner[];
  readonly #sourceIps: readonly string[];
  #nextSubmitId = FIRST_SUBMIT_ID;
  #submitting: Submitting | null = null;
  #submitBase = FIRST_SUBMIT_ID;
  #tracking: Tracking | null = null;
  #connected = 0;
  readonly #errors: Record<string, number> = {};
  /** set_difficulty messages after the first, per miner (vardiff moving). */
  difficultyChanges = 0;

  constructor(count: number, sourceIps: readonly string[]) {
    this.#miners = Array.from({ length: count }, (_, i) => new Miner(i));
    this.#sourceIps = sourceIps;
  }

  get ready(): number {
    let n = 0;
    for (const m of this.#miners) if (m.ready) n++;
    return n;
  }

  /**
   * Connects every miner, at most `concurrency` connects in flight (so the server's accept
   * backlog never overflows into SYN retries), and waits until all are ready or `timeoutMs`.
   */
  async connect(
    host: string,
    port: number,
    concurrency = 256,
    timeoutMs = 120_000,
  ): Promise<HandshakeResult> {
    const t0 = performance.now();
    let next = 0;
    let inFlight = 0;
    await new Promise<void>((resolve) => {
      const pump = () => {
        while (inFlight < concurrency && next < this.#miners.length) {
          const m = this.#miners[next++] as Miner;
          inFlight++;
          this.#open(m, host, port, () => {
            inFlight--;
            if (next >= this.#miners.length && inFlight === 0) resolve();
            else pump();
          });
        }
      };
      pump();
    });
    await this.#until(() => this.#settled(), timeoutMs);
    let subscribed = 0;
    let authorized = 0;
    for (const m of this.#miners) {
      if (m.subscribed) subscribed++;
      if (m.authorized) authorized++;
    }
    return {
      miners: this.#miners.length,
      connected: this.#connected,
      subscribed,
      authorized,
      ready: this.ready,
      errors: { ...this.#errors },
      seconds: (performance.now() - t0) / 1000,
    };
  }

  /**
   * Submits `rate` shares per second for `seconds`, round-robin over the ready miners, then
   * waits (up to `drainMs`) for the last answers.
   */
  async shares(rate: number, seconds: number, drainMs = 10_000): Promise<ShareRun> {
    const ready = this.#miners.filter((m) => m.ready);
    const total = ready.length === 0 ? 0 : Math.round(rate * seconds);
    const s: Submitting = {
      sentAt: new Float64Array(total),
      rtt: new Float64Array(total).fill(Number.NaN),
      replied: 0,
      accepted: 0,
      rejected: {},
    };
    this.#submitting = s;
    this.#submitBase = this.#nextSubmitId;
    let sent = 0;
    let cursor = 0;
    const start = performance.now();
    await new Promise<void>((resolve) => {
      if (total === 0) return resolve();
      // A 1 ms tick sends what is due by then: submits leave in ones and twos, not bursts.
      const timer = setInterval(() => {
        const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
        while (sent < due) {
          this.#submit(ready[cursor++ % ready.length] as Miner, s, sent++);
        }
        if (sent >= total) {
          clearInterval(timer);
          resolve();
        }
      }, 1);
    });
    const sendSeconds = (performance.now() - start) / 1000;
    await this.#until(() => s.replied >= sent, drainMs);
    this.#submitting = null;
    let n = 0;
    const rttNs = new Float64Array(s.replied);
    for (const v of s.rtt) if (!Number.isNaN(v) && n < rttNs.length) rttNs[n++] = v * 1e6;
    return {
      sent,
      replied: s.replied,
      accepted: s.accepted,
      rejected: s.rejected,
      rttNs: rttNs.subarray(0, n),
      sendSeconds,
    };
  }

  /**
   * Calls `trigger` (which makes the server send a new job), then waits until every ready
   * miner has read that job's notify (the first new job id seen after the trigger).
   */
  async fanOut(trigger: () => void, timeoutMs = 10_000): Promise<FanOut> {
    const want = this.ready;
    const t: Tracking = { id: null, first: 0, last: 0, count: 0 };
    this.#tracking = t;
    const t0 = performance.now();
    trigger();
    await this.#until(() => t.count >= want, timeoutMs);
    this.#tracking = null;
    return {
      job: t.id ?? "",
      reached: t.count,
      spreadMs: t.count === 0 ? Number.NaN : t.last - t.first,
      triggerToFirstMs: t.count === 0 ? Number.NaN : t.first - t0,
      triggerToLastMs: t.count === 0 ? Number.NaN : t.last - t0,
    };
  }

  /** The params of the notify a ready miner holds, for the baseline to send the same bytes. */
  sampleNotify(): unknown[] | null {
    const m = this.#miners.find((x) => x.ready);
    return m === undefined ? null : (JSON.parse(m.jobLine) as { params: unknown[] }).params;
  }

  /** Closes every connection and waits for the close events. */
  async close(): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const m of this.#miners) {
      const s = m.socket;
      if (s === null || s.destroyed) continue;
      closing.push(new Promise((r) => s.once("close", () => r())));
      s.destroy();
    }
    await Promise.all(closing);
  }

  // ---- internals ----------------------------------------------------------------------------

  #settled(): boolean {
    for (const m of this.#miners) if (!m.ready && m.error === null) return false;
    return true;
  }

  #open(m: Miner, host: string, port: number, done: () => void): void {
    const localAddress = this.#sourceIps[m.index % this.#sourceIps.length] as string;
    const socket = connect({ host, port, localAddress, noDelay: true });
    m.socket = socket;
    socket.setEncoding("latin1");
    let settled = false;
    const finish = () => {
      if (!settled) {
        settled = true;
        done();
      }
    };
    socket.once("connect", () => {
      this.#connected++;
      socket.write(
        `{"id":${SUBSCRIBE_ID},"method":"mining.subscribe","params":["bench/1.0"]}\n` +
          `{"id":${AUTHORIZE_ID},"method":"mining.authorize","params":["${m.worker}","x"]}\n`,
      );
      finish();
    });
    socket.on("data", (chunk: string) => this.#data(m, chunk));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      const code = err.code ?? "error";
      this.#errors[code] = (this.#errors[code] ?? 0) + 1;
      m.error ??= code;
      finish();
    });
    socket.on("close", () => {
      m.error ??= "closed";
      finish();
    });
  }

  #data(m: Miner, chunk: string): void {
    const t = performance.now();
    const text = m.buffer === "" ? chunk : m.buffer + chunk;
    let start = 0;
    for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", start)) {
      this.#line(m, text.slice(start, nl), t);
      start = nl + 1;
    }
    m.buffer = start === text.length ? "" : text.slice(start);
  }

  #line(m: Miner, line: string, t: number): void {
    // A notify: only its job id now (from the fixed prefix both servers write).
    const method = line.indexOf('"method":"mining.notify"');
    if (method >= 0 && method < 24) {
      const p = line.indexOf('"params":["', method) + 11;
      const id = line.slice(p, line.indexOf('"', p));
      m.jobId = id;
      m.jobLine = line;
      const tr = this.#tracking;
      if (tr !== null) {
        tr.id ??= id;
        if (id === tr.id) {
          if (tr.count === 0) tr.first = t;
          tr.last = t;
          tr.count++;
        }
      }
      return;
    }
    const msg = JSON.parse(line) as {
      id?: unknown;
      method?: string;
      result?: unknown;
      error?: unknown;
      params?: unknown[];
    };
    if (msg.method === "mining.set_difficulty") {
      if (m.difficulties > 0) this.difficultyChanges++;
      m.difficulties++;
      return;
    }
    if (typeof msg.id !== "number") return;
    if (msg.id === SUBSCRIBE_ID) {
      const r = msg.result as [unknown, string, number] | null;
      if (Array.isArray(r)) {
        m.en2Size = r[2];
        m.subscribed = true;
      } else m.error ??= "subscribe refused";
      return;
    }
    if (msg.id === AUTHORIZE_ID) {
      if (msg.result === true) m.authorized = true;
      else m.error ??= "authorize refused";
      return;
    }
    const s = this.#submitting;
    if (s === null) return;
    const i = msg.id - this.#submitBase;
    if (i < 0 || i >= s.sentAt.length) return;
    s.rtt[i] = t - (s.sentAt[i] as number);
    s.replied++;
    if (msg.result === true) s.accepted++;
    else {
      const code = Array.isArray(msg.error) ? String(msg.error[0]) : "false";
      s.rejected[code] = (s.rejected[code] ?? 0) + 1;
    }
  }

  #submit(m: Miner, s: Submitting, i: number): void {
    if (m.ntimeFor !== m.jobId) {
      const p = (JSON.parse(m.jobLine) as { params: unknown[] }).params;
      m.ntime = String(p[7]);
      m.ntimeFor = m.jobId;
    }
    const id = this.#nextSubmitId++;
    const en2 = (m.en2++).toString(16).padStart(m.en2Size * 2, "0");
    const nonce = ((Math.random() * 0x100000000) >>> 0).toString(16).padStart(8, "0");
    const line = `{"id":${id},"method":"mining.submit","params":["${m.worker}",${JSON.stringify(m.jobId)},"${en2}","${m.ntime}","${nonce}"]}\n`;
    s.sentAt[i] = performance.now();
    m.socket?.write(line);
  }

  async #until(check: () => boolean, timeoutMs: number): Promise<void> {
    const end = performance.now() + timeoutMs;
    while (!check() && performance.now() < end) await new Promise((r) => setTimeout(r, 5));
  }
}
