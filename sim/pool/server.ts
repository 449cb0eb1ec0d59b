/**
 * The simulated pool: a real Stratum V1 server on TCP. Jobs come from synthetic templates
 * (template.ts) and shares are checked with bitcoinjs-lib (validate.ts), never with the
 * proxy's code, so end-to-end tests cross-check the proxy against an independent pool.
 */
import { createServer, type Server, type Socket } from "node:net";
import { type Clock, systemClock } from "../../lib/clock.ts";
import { fail } from "../../lib/errors.ts";
import { createLogger, type Logger } from "../../lib/log/logger.ts";
import {
  DEFAULT_DIFFICULTY,
  DEFAULT_EXTRANONCE1_SIZE,
  DEFAULT_EXTRANONCE2_SIZE,
  DEFAULT_JOB_INTERVAL_MS,
  DEFAULT_NBITS,
  DEFAULT_START_HEIGHT,
  DEFAULT_TX_COUNT,
  DEFAULT_VERSION_MASK,
} from "./defaults.ts";
import type { Fault } from "./faults.ts";
import { parseHex } from "./hex.ts";
import { type InjectedJob, type Job, JobBook, JobFactory, jobFromInjected } from "./jobs.ts";
import { type AcceptedShare, Ledger, type PoolStats } from "./ledger.ts";
import type { Reject } from "./rejects.ts";
import { Session, type SessionContext } from "./session.ts";
import { difficultyTarget, targetToCompact } from "./target.ts";
import type { ShareResult } from "./validate.ts";

export interface SimPoolOptions {
  readonly host?: string;
  /** 0 (the default) picks a free port. */
  readonly port?: number;
  readonly difficulty?: number;
  /** The pool's BIP 310 mask; 0 refuses version rolling. */
  readonly versionMask?: number;
  readonly extranonce1Size?: number;
  readonly extranonce2Size?: number;
  /** A new (not clean) job every this many ms; 0 for never. Default 30 s. */
  readonly jobIntervalMs?: number;
  /** A new block (clean job) every this many ms; 0 (the default) for never. */
  readonly blockIntervalMs?: number;
  /**
   * Shares whose hash meets this difficulty are block candidates: the jobs' nbits is its
   * target in compact form. null (the default): mainnet-like nbits, no blocks.
   */
  readonly blockTargetDifficulty?: number | null;
  /** A found block starts a new one (clean job on top of it). Default true. */
  readonly advanceOnBlock?: boolean;
  /** Non-coinbase transactions per template (branch depth ceil(log2(n + 1))). Default 40. */
  readonly txCount?: number;
  readonly startHeight?: number;
  readonly seed?: string;
  /** Apply mining.suggest_difficulty. Default false: recorded and answered, not applied. */
  readonly honorSuggestedDifficulty?: boolean;
  /** Who may mine; default everyone. */
  readonly authorize?: (user: string, password: string | undefined) => boolean;
  readonly fault?: Fault | null;
  readonly clock?: Clock;
  readonly logger?: Logger;
  readonly onShare?: (share: AcceptedShare) => void;
}

export class SimPool {
  readonly #server: Server;
  readonly #sessions = new Set<Session>();
  readonly #sockets = new Set<Socket>();
  readonly #jobs = new JobBook();
  readonly #ledger = new Ledger();
  readonly #factory: JobFactory;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #log: Logger;
  readonly #o: SimPoolOptions;
  readonly #extranonce1Size: number;
  readonly #context: SessionContext;
  #difficulty: number;
  #fault: Fault | null;
  #nextSession = 1;
  #nextExtranonce1: string | undefined;
  #address: { host: string; port: number } | undefined;

  private constructor(o: SimPoolOptions) {
    this.#o = o;
    this.#log = o.logger ?? createLogger({ level: "silent" });
    this.#difficulty = o.difficulty ?? DEFAULT_DIFFICULTY;
    this.#fault = o.fault ?? null;
    this.#extranonce1Size = o.extranonce1Size ?? DEFAULT_EXTRANONCE1_SIZE;
    const extranonce2Size = o.extranonce2Size ?? DEFAULT_EXTRANONCE2_SIZE;
    checkRange("extranonce1 size", this.#extranonce1Size, 1, 16);
    checkRange("extranonce2 size", extranonce2Size, 1, 16);
    difficultyTarget(this.#difficulty); // refuses a bad difficulty up front
    this.#factory = new JobFactory({
      clock: o.clock ?? systemClock,
      txCount: o.txCount ?? DEFAULT_TX_COUNT,
      extranonceSize: this.#extranonce1Size + extranonce2Size,
      startHeight: o.startHeight ?? DEFAULT_START_HEIGHT,
      seed: o.seed ?? "agentd-sim",
      version: 0x20000000,
      nbits: nbitsFor(o.blockTargetDifficulty ?? null),
    });
    this.#context = {
      versionMask: (o.versionMask ?? DEFAULT_VERSION_MASK) >>> 0,
      extranonce2Size,
      honorSuggestedDifficulty: o.honorSuggestedDifficulty ?? false,
      log: this.#log,
      authorize: o.authorize ?? (() => true),
      fault: () => this.#fault,
      job: (id) => this.#jobs.get(id),
      currentJob: () => this.#jobs.current,
      accepted: (share, result) => this.#accepted(share, result),
      rejected: (user, r) => this.#rejected(user, r),
      ignored: () => this.#ledger.ignore(),
    };
    this.#server = createServer((socket) => this.#onConnection(socket));
  }

  static async start(o: SimPoolOptions = {}): Promise<SimPool> {
    const pool = new SimPool(o);
    await pool.#listen(o.host ?? "127.0.0.1", o.port ?? 0);
    return pool;
  }

  get address(): { host: string; port: number } {
    if (!this.#address) throw fail("AGENTD_E_INTERNAL", "pool is not listening");
    return this.#address;
  }

  get difficulty(): number {
    return this.#difficulty;
  }

  stats(): PoolStats {
    return this.#ledger.snapshot(this.#sessions.size);
  }

  currentJob(): Job | undefined {
    return this.#jobs.current;
  }

  /** A fresh job on the same block (new transactions and ntime), not clean. */
  newJob(): Job {
    return this.#publish(this.#factory.make(false));
  }

  /**
   * A new block: the next height on top of `prevHash` (internal byte order; default a
   * made-up block found elsewhere), sent as a clean job that makes all earlier jobs stale.
   */
  newBlock(prevHash?: Uint8Array): Job {
    this.#factory.advance(prevHash);
    return this.#publish(this.#factory.make(true));
  }

  /** Test hook: publishes a fixed job (e.g. a real block's, from the shared vectors). */
  injectJob(job: InjectedJob): Job {
    return this.#publish(jobFromInjected(job));
  }

  /** Test hook: the next connection gets this extranonce1 (hex of the configured size). */
  setNextExtranonce1(hex: string): void {
    if (parseHex(hex, this.#extranonce1Size) === undefined) {
      throw fail("AGENTD_E_USAGE", `extranonce1 must be ${this.#extranonce1Size} bytes of hex`);
    }
    this.#nextExtranonce1 = hex.toLowerCase();
  }

  /** Every miner's difficulty (and new miners'): set_difficulty, then the current job again. */
  setDifficulty(difficulty: number): void {
    difficultyTarget(difficulty);
    this.#difficulty = difficulty;
    for (const s of this.#sessions) s.setDifficulty(difficulty);
  }

  /** Changes which shares are block candidates, from a new job on (nbits is in the job). */
  setBlockTargetDifficulty(difficulty: number | null): Job {
    this.#factory.setNbits(nbitsFor(difficulty));
    return this.newJob();
  }

  fault(): Fault | null {
    return this.#fault;
  }

  setFault(fault: Fault | null): void {
    this.#fault = fault;
    this.#log.warn({ fault }, "fault mode");
    if (fault?.kind === "drop") for (const s of this.#sockets) s.destroy();
    if (fault?.kind === "reconnect") this.sendReconnect(fault.params);
  }

  /** Sends `client.reconnect` once to every miner that has work. */
  sendReconnect(params: readonly [] | readonly [string, number, number] = []): void {
    for (const s of this.#sessions) if (s.mining) s.reconnect(params);
  }

  async close(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers.length = 0;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #listen(host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", (err) =>
        reject(
          fail(
            "AGENTD_E_IO",
            `cannot listen on ${host}:${port}: ${err.message}`,
            { host, port },
            err,
          ),
        ),
      );
      this.#server.listen(port, host, () => resolve());
    });
    const a = this.#server.address();
    if (a === null || typeof a === "string") throw fail("AGENTD_E_INTERNAL", "no TCP address");
    this.#address = { host, port: a.port };
    this.#publish(this.#factory.make(true));
    const every = (ms: number | undefined, f: () => void) => {
      if (ms !== undefined && ms > 0) this.#timers.push(setInterval(f, ms));
    };
    every(this.#o.jobIntervalMs ?? DEFAULT_JOB_INTERVAL_MS, () => this.newJob());
    every(this.#o.blockIntervalMs ?? 0, () => this.newBlock());
    this.#log.info({ ...this.#address, difficulty: this.#difficulty }, "pool listening");
  }

  #publish(job: Job): Job {
    this.#jobs.add(job);
    for (const s of this.#sessions) s.notify(job, job.clean);
    this.#log.debug({ job: job.id, clean: job.clean, height: job.height }, "job");
    return job;
  }

  #onConnection(socket: Socket): void {
    if (this.#fault?.kind === "drop") {
      socket.destroy();
      return;
    }
    const id = this.#nextSession++;
    const session = new Session(
      socket,
      id,
      this.#allocateExtranonce1(id),
      this.#difficulty,
      this.#context,
    );
    this.#sockets.add(socket);
    this.#sessions.add(session);
    this.#log.info(
      { session: id, remote: socket.remoteAddress, extranonce1: session.extranonce1 },
      "connect",
    );
    socket.on("error", (err) => this.#log.debug({ session: id, err }, "socket error"));
    socket.on("close", () => {
      this.#sockets.delete(socket);
      this.#sessions.delete(session);
      this.#log.info({ session: id }, "disconnect");
    });
  }

  /** Unique per connection: the session counter, big-endian, in the configured size. */
  #allocateExtranonce1(id: number): string {
    const fixed = this.#nextExtranonce1;
    this.#nextExtranonce1 = undefined;
    if (fixed !== undefined) return fixed;
    const modulus = 1n << BigInt(8 * this.#extranonce1Size);
    return (BigInt(id) % modulus).toString(16).padStart(this.#extranonce1Size * 2, "0");
  }

  #accepted(share: AcceptedShare, result: ShareResult): void {
    this.#ledger.accept(share, result.blockHex);
    this.#log.debug({ share }, "share accepted");
    this.#o.onShare?.(share);
    if (share.block) {
      this.#log.info({ hash: share.hash, height: share.height, user: share.user }, "block found");
      if (this.#o.advanceOnBlock ?? true) {
        this.newBlock(Uint8Array.from(Buffer.from(share.hash, "hex").reverse()));
      }
    }
  }

  #rejected(user: string | undefined, r: Reject): void {
    this.#ledger.reject(user, r.code);
  }
}

function nbitsFor(blockTargetDifficulty: number | null): number {
  return blockTargetDifficulty === null
    ? DEFAULT_NBITS
    : targetToCompact(difficultyTarget(blockTargetDifficulty));
}

function checkRange(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw fail("AGENTD_E_USAGE", `${name} must be an integer in ${min}..${max}, got ${value}`);
  }
}
