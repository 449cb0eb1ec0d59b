import { stopwatch } from "../lib/timers.ts";
import type { JsonRpcConnection, RpcId } from "./codec.ts";
import { validateWork } from "./job.ts";
import type { Lane, LaneJob } from "./lane.ts";
import { MinerStats } from "./miner-stats.ts";
import { Vardiff, type VardiffOptions } from "./vardiff.ts";
import {
  legacyMultiVersion,
  parseHex,
  parseU32Hex,
  rollVersion,
  targetForDifficulty,
  u32Hex,
} from "./work.ts";

/**
 * One ASIC's connection, speaking every dialect of shared PROTOCOLS.md: BIP 310
 * mining.configure (mask = upstream mask ∧ miner mask, unknown extensions false), legacy
 * mining.multi_version (the 6th submit param is then the full version), subscribe with
 * `[agent, null]`, pipelined requests, suggest_difficulty, extranonce.subscribe, ping,
 * get_version. Every submit is validated here; the proxy decides what to forward.
 */

export type RejectCode = 20 | 21 | 22 | 23 | 24 | 25;

export interface ShareOutcome {
  readonly miner: Miner;
  /** As the miner sent it: only a name it authorized on this connection when `authorized`. */
  readonly worker: string;
  /**
   * The worker was authorized on this connection. Only those get per-worker numbers: any
   * other string a client sends must not become a metric series (accounting.ts).
   */
  readonly authorized: boolean;
  readonly accepted: boolean;
  /** Reject code and reason when not accepted. */
  readonly code?: RejectCode;
  readonly reason?: string;
  readonly difficulty: number;
  /** Set for accepted shares. */
  readonly job?: LaneJob;
  readonly extranonce2?: Buffer;
  readonly ntime?: number;
  readonly nonce?: number;
  readonly version?: number;
  readonly meetsUpstream?: boolean;
  readonly isBlock?: boolean;
  readonly hash?: Buffer;
  /** Seconds since the submit was received (a stopwatch, lib/timers.ts), for forward latency. */
  readonly sinceReceived: () => number;
}

/** What a miner needs from the proxy. */
export interface MinerHost {
  readonly agent: string;
  /** Mask offered before any upstream mask is known. */
  readonly defaultVersionMask: number;
  readonly vardiff: VardiffOptions;
  /** Worker names one connection may authorize; one more closes it (`too_many_workers`). */
  readonly maxWorkers: number;
  /**
   * Accepted shares remembered for the duplicate check (22); past it the oldest other job is
   * forgotten, and a connection whose current job alone holds that many is closed
   * (`too_many_shares`).
   */
  readonly maxRememberedShares: number;
  readonly now: () => number;
  /** null when mining is allowed, else the policy reason for error 24. */
  denial(): string | null;
  /** A lane with room, or null when none is ready. */
  pickLane(): Lane | null;
  /** Waits for a ready lane (bounded); resolves null on timeout or close. */
  waitLane(): Promise<Lane | null>;
  onShare(outcome: ShareOutcome): void;
  onClosed(miner: Miner): void;
}

interface SentJob {
  readonly upJobId: string;
  readonly difficulty: number;
  readonly target: bigint;
}

/** Enough for the lane's live jobs (16) plus re-sends at a new difficulty. */
const MAX_SENT_JOBS = 16;

// Difficulties are powers of two, so few distinct targets exist: compute each once.
const targets = new Map<number, bigint>();
function targetFor(d: number): bigint {
  let t = targets.get(d);
  if (t === undefined) {
    t = targetForDifficulty(d);
    if (targets.size < 256) targets.set(d, t);
  }
  return t;
}
/** Longest worker name `mining.authorize` takes. */
export const MAX_WORKER_NAME = 128;
/** C0 controls and DEL: they would reach logs, the local API and the audit log as sent. */
function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

let nextMinerId = 1;

export class Miner {
  readonly id = nextMinerId++;
  readonly laneKey = this.id;
  readonly conn: JsonRpcConnection;
  readonly ip: string;
  /** This connection's shares and hashrate (the proxy records them: it sees every outcome). */
  readonly stats: MinerStats;
  readonly #host: MinerHost;
  #lane: Lane | null = null;
  #prefix: Buffer | null = null;
  #en1: Buffer = Buffer.alloc(0);
  #en2Size = 0;
  #subscribed = false;
  /** A subscribe waits for an upstream session: one at a time, or each would hold a waiter. */
  #subscribing = false;
  readonly #workers = new Set<string>();
  #mask: number | null = null; // negotiated by mining.configure
  #requestedMask: number | null = null; // what the miner asked for
  #multiVersion = false;
  readonly #vardiff: Vardiff;
  #sentDifficulty: number | null = null;
  readonly #jobs = new Map<string, SentJob>();
  /** Shares seen, per upstream job (created on the first accepted share): duplicates → 22. */
  readonly #seen = new Map<string, Set<string>>();
  /** The keys in #seen, all jobs together (its bound is host.maxRememberedShares). */
  #remembered = 0;
  #jobSeq = 0;
  #lastUpJob: string | null = null;
  #closed = false;

  constructor(conn: JsonRpcConnection, ip: string, host: MinerHost) {
    this.conn = conn;
    this.ip = ip;
    this.#host = host;
    this.stats = new MinerStats(host.now());
    this.#vardiff = new Vardiff(host.vardiff, host.now());
  }

  get lane(): Lane | null {
    return this.#lane;
  }
  get workers(): ReadonlySet<string> {
    return this.#workers;
  }
  get difficulty(): number {
    return this.#vardiff.difficulty;
  }
  /** Accepted shares remembered for the duplicate check (the proxy's footprint). */
  get rememberedShares(): number {
    return this.#remembered;
  }
  get ready(): boolean {
    return this.#subscribed && this.#workers.size > 0 && !this.#closed;
  }

  /** Entry point for requests (id set) and notifications (id null) from the miner. */
  handle(id: RpcId | null, method: string, params: unknown): void {
    const p = Array.isArray(params) ? params : [];
    switch (method) {
      case "mining.configure":
        this.#answer(id, this.#configure(p));
        return;
      case "mining.multi_version":
        this.#multiVersion = true;
        this.#answer(id, true);
        return;
      case "mining.subscribe":
        void this.#subscribe(id);
        return;
      case "mining.authorize":
        this.#authorize(id, p);
        return;
      case "mining.extranonce.subscribe":
        this.#answer(id, true);
        return;
      case "mining.suggest_difficulty":
        this.#suggest(id, p[0]);
        return;
      case "mining.submit":
        this.#submit(id, p);
        return;
      case "mining.ping":
        this.#answer(id, "pong");
        return;
      case "client.get_version":
        this.#answer(id, this.#host.agent);
        return;
      default:
        if (id !== null)
          this.conn.reply(id, null, [20, `unknown method ${method.slice(0, 64)}`, null]);
    }
  }

  /** Sends the lane's current job (after a difficulty change if one is due). */
  sendWork(clean: boolean): void {
    if (!this.ready || this.#lane === null || this.#host.denial() !== null) return;
    const job = this.#lane.current;
    if (job === null) return;
    const d = this.#vardiff.difficulty;
    let cleanJobs = clean || job.up.cleanJobs;
    if (d !== this.#sentDifficulty) {
      this.conn.notify("mining.set_difficulty", [d]);
      this.#sentDifficulty = d;
      cleanJobs = true; // firmware applies a difficulty at the next notify: make it a clean one
    }
    // A clean job makes every earlier one stale: forget them (memory: 10,000 miners).
    if (job.up.cleanJobs && job.up.jobId !== this.#lastUpJob) {
      this.#jobs.clear();
      this.#seen.clear();
      this.#remembered = 0;
    }
    this.#lastUpJob = job.up.jobId;
    // The same upstream job re-sent at another difficulty gets its own id, so that shares are
    // judged at the difficulty in force when the miner received the job.
    let id = job.up.jobId;
    if (this.#jobs.has(id)) id = `${job.up.jobId}.${(++this.#jobSeq).toString(16)}`;
    this.#jobs.set(id, { upJobId: job.up.jobId, difficulty: d, target: targetFor(d) });
    while (this.#jobs.size > MAX_SENT_JOBS) {
      const oldest = this.#jobs.keys().next().value as string;
      const gone = this.#jobs.get(oldest)?.upJobId;
      this.#jobs.delete(oldest);
      if (gone !== undefined && ![...this.#jobs.values()].some((j) => j.upJobId === gone))
        this.#forgetSeen(gone);
    }
    if (id === job.up.jobId) {
      // The common case: every miner gets the same line, serialised once per job.
      this.conn.writeLine(job.notifyLine(cleanJobs));
      return;
    }
    const u = job.up;
    this.conn.notify("mining.notify", [
      id,
      u.prevhash,
      u.coinb1,
      u.coinb2,
      u.merkleBranch,
      u.version,
      u.nbits,
      u.ntime,
      cleanJobs,
    ]);
  }

  /** Moves the miner elsewhere: an empty-param client.reconnect, then close. */
  moveAway(): void {
    this.conn.notify("client.reconnect", []);
    this.conn.close("local", { flush: true });
  }

  /** Vardiff timer: a miner that stopped finding shares gets an easier difficulty. */
  tick(): void {
    if (this.#vardiff.onTick(this.#host.now()) !== null) this.sendWork(true);
  }

  closed(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#lane !== null && this.#prefix !== null) {
      this.#lane.release(this.#prefix);
      this.#lane.miners.delete(this);
    }
    this.#host.onClosed(this);
  }

  // ---- handlers ---------------------------------------------------------------------------

  #answer(id: RpcId | null, result: unknown, error: unknown = null): void {
    if (id !== null) this.conn.reply(id, result, error);
  }

  #configure(p: unknown[]): Record<string, unknown> {
    const exts = Array.isArray(p[0]) ? p[0] : [];
    const opts = (typeof p[1] === "object" && p[1] !== null ? p[1] : {}) as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const ext of exts) {
      if (typeof ext !== "string" || ext.length > 64) continue;
      if (ext !== "version-rolling") {
        out[ext] = false;
        continue;
      }
      const minerMask =
        typeof opts["version-rolling.mask"] === "string"
          ? parseU32Hex(opts["version-rolling.mask"])
          : 0xffffffff;
      const serverMask =
        this.#lane?.ready === true ? this.#lane.versionMask : this.#host.defaultVersionMask;
      this.#requestedMask = (minerMask ?? 0) >>> 0;
      const mask = (this.#requestedMask & serverMask) >>> 0;
      this.#mask = mask;
      out["version-rolling"] = true;
      out["version-rolling.mask"] = u32Hex(mask);
    }
    return out;
  }

  async #subscribe(id: RpcId | null): Promise<void> {
    if (this.#subscribed) {
      this.#answer(id, null, [20, "already subscribed", null]);
      return;
    }
    // Subscribes sent as notifications are not counted in flight by the codec: without this,
    // each would wait for a session with its own waiter, as many as the miner sends. The
    // answer is the one a second subscribe always got (firmware may know it).
    if (this.#subscribing) {
      this.#answer(id, null, [20, "already subscribed", null]);
      return;
    }
    let lane = this.#host.pickLane();
    if (lane === null) {
      this.#subscribing = true;
      try {
        lane = await this.#host.waitLane();
      } finally {
        this.#subscribing = false;
      }
    }
    const prefix = lane?.allocate() ?? null;
    // A second subscribe may have completed while this one waited: one prefix per miner.
    if (lane === null || prefix === null || this.#closed || this.#subscribed) {
      if (prefix !== null) lane?.release(prefix);
      this.#answer(id, null, [
        20,
        this.#subscribed ? "already subscribed" : "no upstream available",
        null,
      ]);
      return;
    }
    this.#lane = lane;
    this.#prefix = prefix;
    this.#en1 = Buffer.concat([lane.extranonce1, prefix]);
    this.#en2Size = lane.minerEn2Size;
    this.#subscribed = true;
    lane.miners.add(this);
    const sub = this.id.toString(16);
    this.#answer(id, [
      [
        ["mining.set_difficulty", sub],
        ["mining.notify", sub],
      ],
      this.#en1.toString("hex"),
      this.#en2Size,
    ]);
    this.#syncMask();
    this.sendWork(true);
  }

  /** The lane's upstream changed its version-rolling mask. */
  laneMaskChanged(): void {
    this.#syncMask();
  }

  /**
   * The mask granted at configure time may have been the default (no upstream yet): narrow it
   * to what the upstream really allows and tell the miner, or its rolled shares would be
   * valid here and invalid upstream.
   */
  #syncMask(): void {
    if (this.#requestedMask === null || this.#lane === null) return;
    const mask = (this.#requestedMask & this.#lane.versionMask) >>> 0;
    if (mask === this.#mask) return;
    this.#mask = mask;
    this.conn.notify("mining.set_version_mask", [u32Hex(mask)]);
  }

  #authorize(id: RpcId | null, p: unknown[]): void {
    const user = p[0];
    if (
      typeof user !== "string" ||
      user.length === 0 ||
      user.length > MAX_WORKER_NAME ||
      hasControl(user)
    ) {
      this.#answer(id, false, [24, "bad worker name", null]);
      return;
    }
    if (!this.#workers.has(user) && this.#workers.size >= this.#host.maxWorkers) {
      // Each name is kept until the connection closes: a miner naming new workers without end
      // would grow the proxy without end (issue 15: 2 million names, 270 MB). No firmware
      // needs more than a few; the connection ends, with its reason, the others go on.
      this.#answer(id, false, [24, "too many workers on this connection", null]);
      this.conn.close("too_many_workers", { flush: true });
      return;
    }
    const first = this.#workers.size === 0;
    this.#workers.add(user);
    this.#answer(id, true);
    if (first) this.sendWork(true);
  }

  #suggest(id: RpcId | null, d: unknown): void {
    if (typeof d !== "number" || !(d > 0) || !Number.isFinite(d)) {
      this.#answer(id, null, [20, "bad difficulty", null]);
      return;
    }
    this.#answer(id, true);
    if (this.#vardiff.suggest(d, this.#host.now()) !== null && this.#sentDifficulty !== null)
      this.sendWork(true);
  }

  #submit(id: RpcId | null, p: unknown[]): void {
    const sinceReceived = stopwatch();
    const worker = typeof p[0] === "string" ? p[0] : "";
    const authorized = this.#workers.has(worker);
    const reject = (
      code: RejectCode,
      reason: string,
      difficulty = this.#vardiff.difficulty,
    ): void => {
      this.#answer(id, null, [code, reason, null]);
      this.#host.onShare({
        miner: this,
        worker,
        authorized,
        accepted: false,
        code,
        reason,
        difficulty,
        sinceReceived,
      });
    };
    if (!this.#subscribed || this.#lane === null || this.#prefix === null) {
      reject(25, "not subscribed");
      return;
    }
    if (!authorized) {
      reject(24, "unauthorized worker");
      return;
    }
    const denial = this.#host.denial();
    if (denial !== null) {
      reject(24, `mining denied: ${denial}`);
      return;
    }
    if (p.length < 5 || p.length > 6 || typeof p[1] !== "string") {
      reject(20, "malformed submit");
      return;
    }
    const sent = this.#jobs.get(p[1]);
    if (sent === undefined) {
      reject(21, "job not found");
      return;
    }
    const job = this.#lane.job(sent.upJobId);
    if (job === undefined) {
      reject(21, "stale job", sent.difficulty);
      return;
    }
    const en2 = parseHex(p[2], this.#en2Size);
    if (en2 === null) {
      reject(20, `extranonce2 must be ${this.#en2Size} bytes of hex`, sent.difficulty);
      return;
    }
    const ntime = parseU32Hex(p[3]);
    if (ntime === null || ntime < job.work.ntime || ntime > job.work.ntime + 7000) {
      reject(20, "ntime out of range", sent.difficulty);
      return;
    }
    const nonce = parseU32Hex(p[4]);
    if (nonce === null) {
      reject(20, "malformed nonce", sent.difficulty);
      return;
    }
    let version = job.work.version;
    if (p.length === 6) {
      const bits = parseU32Hex(p[5]);
      // Never more than the upstream allows, whatever was granted earlier.
      const mask =
        ((this.#mask ?? (this.#multiVersion ? this.#lane.versionMask : 0)) &
          this.#lane.versionMask) >>>
        0;
      const v =
        bits === null
          ? null
          : this.#multiVersion && this.#mask === null
            ? legacyMultiVersion(job.work.version, bits, mask)
            : rollVersion(job.work.version, bits, mask);
      if (v === null) {
        reject(20, "version bits outside the negotiated mask", sent.difficulty);
        return;
      }
      version = v;
    }
    const key = `${p[2]}:${p[3]}:${p[4]}:${version}`.toLowerCase();
    const seen = this.#seen.get(sent.upJobId);
    if (seen?.has(key) === true) {
      reject(22, "duplicate share", sent.difficulty);
      return;
    }
    const w = validateWork(
      job.work,
      this.#en1,
      en2,
      ntime,
      nonce,
      version,
      sent.target,
      job.upstreamTarget,
    );
    if (!w.meetsShare) {
      reject(23, "low difficulty share", sent.difficulty);
      return;
    }
    if (!this.#remember(sent.upJobId, key)) {
      this.conn.close("too_many_shares");
      return;
    }
    this.#answer(id, true);
    this.#host.onShare({
      miner: this,
      worker,
      authorized,
      accepted: true,
      difficulty: sent.difficulty,
      job,
      extranonce2: Buffer.concat([this.#prefix, en2]),
      ntime,
      nonce,
      version,
      meetsUpstream: w.meetsUpstream,
      isBlock: w.isBlock,
      hash: w.hash,
      sinceReceived,
    });
    if (this.#vardiff.onShare(this.#host.now()) !== null) this.sendWork(true);
  }

  /**
   * Records an accepted share for the duplicate check, within maxRememberedShares: at the
   * bound the oldest other job is forgotten (its shares would be stale soon anyway: shares for
   * it are then refused 21), and false — close — when the share's own job alone is at the
   * bound. Vardiff keeps an honest miner at a few shares a minute, far below it.
   */
  #remember(upJobId: string, key: string): boolean {
    while (this.#remembered >= this.#host.maxRememberedShares) {
      const oldest = [...this.#seen.keys()].find((j) => j !== upJobId);
      if (oldest === undefined) return false;
      this.#forgetSeen(oldest);
      for (const [id, j] of this.#jobs) if (j.upJobId === oldest) this.#jobs.delete(id);
    }
    const seen = this.#seen.get(upJobId);
    if (seen === undefined) this.#seen.set(upJobId, new Set([key]));
    else seen.add(key);
    this.#remembered++;
    return true;
  }

  #forgetSeen(upJobId: string): void {
    this.#remembered -= this.#seen.get(upJobId)?.size ?? 0;
    this.#seen.delete(upJobId);
  }
}
