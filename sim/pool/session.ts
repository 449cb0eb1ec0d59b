/**
 * One miner connection: newline-delimited JSON-RPC (Stratum V1) as real pools speak it —
 * configure (BIP 310), subscribe, authorize, extranonce.subscribe, suggest_difficulty,
 * multi_version, submit — and the pool's notifications to it.
 */
import type { Socket } from "node:net";
import type { Logger } from "../../lib/log/logger.ts";
import type { Fault } from "./faults.ts";
import { parseHex, parseU32, toHex, u32Hex } from "./hex.ts";
import { type BookEntry, type Job, notifyParams } from "./jobs.ts";
import type { AcceptedShare } from "./ledger.ts";
import { REJECT, type Reject, reject } from "./rejects.ts";
import { difficultyTarget, isValidDifficulty } from "./target.ts";
import { checkShare, MalformedCoinbase, type ShareResult } from "./validate.ts";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Id = string | number | null;

/** What a session needs from its pool. */
export interface SessionContext {
  readonly versionMask: number;
  readonly extranonce2Size: number;
  readonly honorSuggestedDifficulty: boolean;
  readonly log: Logger;
  authorize(user: string, password: string | undefined): boolean;
  fault(): Fault | null;
  job(id: string): BookEntry | undefined;
  currentJob(): Job | undefined;
  accepted(share: AcceptedShare, result: ShareResult): void;
  rejected(user: string | undefined, r: Reject): void;
  ignored(): void;
}

/** A line longer than this without a newline is not Stratum: the peer is dropped. */
const MAX_LINE = 64 * 1024;
/** ckpool's bound: a miner may roll ntime forward, never back before the job's. */
const NTIME_AHEAD = 7000;
const JOB_DIFFICULTIES_KEPT = 128;

export class Session {
  readonly id: number;
  readonly extranonce1: string;
  readonly #socket: Socket;
  readonly #ctx: SessionContext;
  #buffer = "";
  #subscribed = false;
  #agent: string | null = null;
  readonly #authorized = new Set<string>();
  /** Negotiated by mining.configure; null when the miner did not ask for version rolling. */
  #versionMask: number | null = null;
  #multiVersion = false;
  #difficulty: number;
  /** The difficulty each job was sent at: shares are credited at their job's difficulty. */
  readonly #jobDifficulty = new Map<string, number>();
  #mining = false;

  constructor(
    socket: Socket,
    id: number,
    extranonce1: string,
    difficulty: number,
    ctx: SessionContext,
  ) {
    this.id = id;
    this.extranonce1 = extranonce1;
    this.#socket = socket;
    this.#difficulty = difficulty;
    this.#ctx = ctx;
    socket.setNoDelay(true);
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.#onData(chunk));
  }

  get agent(): string | null {
    return this.#agent;
  }

  get mining(): boolean {
    return this.#mining;
  }

  close(): void {
    this.#socket.destroy();
  }

  /** Sends a job to a miner that has been given work before (broadcasts). */
  notify(job: Job, clean: boolean): void {
    if (!this.#mining) return;
    this.#sendJob(job, clean);
  }

  /** Changes this miner's difficulty; it applies at the next notify, so one follows at once. */
  setDifficulty(difficulty: number): void {
    this.#difficulty = difficulty;
    if (!this.#mining) return;
    const job = this.#ctx.currentJob();
    this.#send({ id: null, method: "mining.set_difficulty", params: [difficulty] });
    if (job) this.#sendJob(job, true);
  }

  reconnect(params: readonly Json[]): void {
    this.#send({ id: null, method: "client.reconnect", params: [...params] });
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    for (let nl = this.#buffer.indexOf("\n"); nl >= 0; nl = this.#buffer.indexOf("\n")) {
      const line = this.#buffer.slice(0, nl).trim();
      this.#buffer = this.#buffer.slice(nl + 1);
      if (line !== "") this.#onLine(line);
      if (this.#socket.destroyed) return;
    }
    if (this.#buffer.length > MAX_LINE) {
      this.#ctx.log.warn({ session: this.id }, "line too long: dropping the connection");
      this.#socket.destroy();
    }
  }

  #onLine(line: string): void {
    // A silent pool reads and forgets: no reply, no error.
    if (this.#ctx.fault()?.kind === "silent") {
      this.#ctx.ignored();
      return;
    }
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      this.#reply(null, null, [REJECT.OTHER, "Parse error", null]);
      return;
    }
    if (typeof msg !== "object" || msg === null || Array.isArray(msg)) {
      this.#reply(null, null, [REJECT.OTHER, "Invalid request", null]);
      return;
    }
    const m = msg as { id?: unknown; method?: unknown; params?: unknown };
    const id: Id = typeof m.id === "string" || typeof m.id === "number" ? m.id : null;
    // A response to something we sent (none expects an answer): nothing to do.
    if (m.method === undefined) return;
    if (typeof m.method !== "string" || (m.params !== undefined && !Array.isArray(m.params))) {
      this.#reply(id, null, [REJECT.OTHER, "Invalid request", null]);
      return;
    }
    const params = (m.params ?? []) as Json[];
    this.#ctx.log.debug({ session: this.id, method: m.method, params }, "request");
    try {
      this.#dispatch(id, m.method, params);
    } catch (err) {
      // A bug in the simulator must show, not take the whole pool down with one miner.
      this.#ctx.log.error({ session: this.id, method: m.method, err }, "internal error");
      this.#reply(id, null, [REJECT.OTHER, "Internal error", null]);
    }
  }

  #dispatch(id: Id, method: string, params: Json[]): void {
    switch (method) {
      case "mining.configure":
        this.#configure(id, params);
        break;
      case "mining.subscribe":
        this.#subscribe(id, params);
        break;
      case "mining.authorize":
        this.#authorize(id, params);
        break;
      case "mining.extranonce.subscribe":
        this.#reply(id, true, null);
        break;
      case "mining.suggest_difficulty":
        this.#suggestDifficulty(id, params);
        break;
      case "mining.multi_version":
        this.#multiVersion = true;
        this.#reply(id, true, null);
        break;
      case "mining.ping":
        this.#reply(id, "pong", null);
        break;
      case "mining.submit":
        this.#submit(id, params);
        break;
      default:
        this.#reply(id, null, [REJECT.OTHER, `Method not found: ${method}`, null]);
    }
  }

  /** BIP 310: version rolling with mask = pool mask & miner mask; other extensions: false. */
  #configure(id: Id, params: Json[]): void {
    const [extensions, options] = params;
    if (!Array.isArray(extensions)) {
      this.#reply(id, null, [REJECT.OTHER, "configure: extensions must be a list", null]);
      return;
    }
    const opts =
      typeof options === "object" && options !== null && !Array.isArray(options) ? options : {};
    const result: Record<string, Json> = {};
    for (const ext of extensions) {
      if (typeof ext !== "string") continue;
      if (ext === "version-rolling" && this.#ctx.versionMask !== 0) {
        const asked = opts["version-rolling.mask"];
        const minerMask =
          typeof asked === "string" && /^[0-9a-fA-F]{1,8}$/.test(asked)
            ? Number.parseInt(asked, 16)
            : 0xffffffff;
        const mask = (this.#ctx.versionMask & minerMask) >>> 0;
        this.#versionMask = mask;
        result["version-rolling"] = true;
        result["version-rolling.mask"] = u32Hex(mask);
      } else {
        result[ext] = false;
      }
    }
    this.#reply(id, result, null);
  }

  #subscribe(id: Id, params: Json[]): void {
    const agent = params[0];
    this.#agent = typeof agent === "string" ? agent : null;
    this.#subscribed = true;
    this.#ctx.log.info({ session: this.id, agent: this.#agent }, "subscribe");
    const subscription = this.extranonce1;
    this.#reply(
      id,
      [
        [
          ["mining.set_difficulty", subscription],
          ["mining.notify", subscription],
        ],
        this.extranonce1,
        this.#ctx.extranonce2Size,
      ],
      null,
    );
    this.#startMining();
  }

  #authorize(id: Id, params: Json[]): void {
    const [user, password] = params;
    if (typeof user !== "string" || user === "") {
      this.#reply(id, false, null);
      return;
    }
    const ok = this.#ctx.authorize(user, typeof password === "string" ? password : undefined);
    if (ok) this.#authorized.add(user);
    this.#ctx.log.info({ session: this.id, user, ok }, "authorize");
    this.#reply(id, ok, null);
    if (ok) this.#startMining();
  }

  #suggestDifficulty(id: Id, params: Json[]): void {
    const d = params[0];
    this.#reply(id, true, null);
    // Recorded either way; applied only when configured (a CPU miner suggesting an ASIC's
    // difficulty would otherwise never find a share).
    if (this.#ctx.honorSuggestedDifficulty && isValidDifficulty(d)) this.setDifficulty(d);
  }

  /** The first work goes out once the miner is both subscribed and authorized. */
  #startMining(): void {
    if (this.#mining || !this.#subscribed || this.#authorized.size === 0) return;
    const job = this.#ctx.currentJob();
    if (!job) return;
    this.#mining = true;
    this.#send({ id: null, method: "mining.set_difficulty", params: [this.#difficulty] });
    this.#sendJob(job, true);
    const fault = this.#ctx.fault();
    if (fault?.kind === "reconnect") this.reconnect(fault.params);
  }

  #sendJob(job: Job, clean: boolean): void {
    const before = this.#jobDifficulty.get(job.id);
    // A job re-sent at a new difficulty keeps accepting the easier one (in-flight shares).
    this.#jobDifficulty.set(job.id, Math.min(before ?? this.#difficulty, this.#difficulty));
    if (this.#jobDifficulty.size > JOB_DIFFICULTIES_KEPT) {
      for (const old of this.#jobDifficulty.keys()) {
        if (this.#ctx.job(old) === undefined) this.#jobDifficulty.delete(old);
      }
    }
    this.#send({ id: null, method: "mining.notify", params: notifyParams(job, clean) });
  }

  #submit(id: Id, params: Json[]): void {
    const worker = typeof params[0] === "string" ? params[0] : undefined;
    const user = worker !== undefined && this.#authorized.has(worker) ? worker : undefined;
    const outcome = this.#judge(params, user);
    if ("code" in outcome) {
      this.#ctx.rejected(user, outcome);
      this.#ctx.log.debug({ session: this.id, user, reject: outcome }, "share rejected");
      this.#reply(id, null, [outcome.code, outcome.message, null]);
      return;
    }
    this.#reply(id, true, null);
    this.#ctx.accepted(outcome.share, outcome.result);
  }

  #judge(
    params: Json[],
    user: string | undefined,
  ): Reject | { share: AcceptedShare; result: ShareResult } {
    const fault = this.#ctx.fault();
    if (fault?.kind === "reject") {
      return reject(fault.code, fault.code === 23 ? "Low difficulty share" : "Rejected");
    }
    if (!this.#subscribed) return reject(REJECT.NOT_SUBSCRIBED, "Not subscribed");
    if (user === undefined) return reject(REJECT.UNAUTHORIZED, "Unauthorized worker");
    const [, jobId, en2Hex, ntimeHex, nonceHex, versionHex] = params;
    if (typeof jobId !== "string") return reject(REJECT.OTHER, "Invalid job id");
    const entry = this.#ctx.job(jobId);
    if (!entry) return reject(REJECT.JOB_NOT_FOUND, "Job not found");
    if (entry.stale) return reject(REJECT.JOB_NOT_FOUND, "Stale job");
    const { job } = entry;

    const extranonce2 = parseHex(en2Hex, this.#ctx.extranonce2Size);
    if (!extranonce2) return reject(REJECT.OTHER, "Invalid extranonce2 size");
    const ntime = parseU32(ntimeHex);
    const jobNtime = parseU32(job.ntime) ?? 0;
    if (ntime === undefined) return reject(REJECT.OTHER, "Invalid ntime");
    if (ntime < jobNtime || ntime > jobNtime + NTIME_AHEAD) {
      return reject(REJECT.OTHER, "Ntime out of range");
    }
    const nonce = parseU32(nonceHex);
    if (nonce === undefined) return reject(REJECT.OTHER, "Invalid nonce");
    const version = this.#version(parseU32(job.version) ?? 0, versionHex);
    if (typeof version !== "number") return version;

    const key = [toHex(extranonce2), ntime, nonce, version, this.extranonce1].join(":");
    if (entry.accepted.has(key)) return reject(REJECT.DUPLICATE, "Duplicate share");

    let result: ShareResult;
    try {
      result = checkShare(job, {
        extranonce1: parseHex(this.extranonce1) ?? new Uint8Array(),
        extranonce2,
        ntime,
        nonce,
        version,
      });
    } catch (err) {
      if (err instanceof MalformedCoinbase) return reject(REJECT.OTHER, err.message);
      throw err;
    }
    const difficulty = this.#jobDifficulty.get(job.id) ?? this.#difficulty;
    // A block candidate is taken even below the share difficulty, as real pools do.
    if (!result.block && result.value > difficultyTarget(difficulty)) {
      return reject(REJECT.LOW_DIFFICULTY, "Low difficulty share");
    }
    entry.accepted.add(key);
    const share: AcceptedShare = {
      user,
      job: job.id,
      extranonce1: this.extranonce1,
      extranonce2: toHex(extranonce2),
      ntime: u32Hex(ntime),
      nonce: u32Hex(nonce),
      version: u32Hex(version),
      hash: result.hash,
      difficulty,
      block: result.block,
      height: job.height,
    };
    return { share, result };
  }

  /**
   * The header version a submit asks for. BIP 310: the 6th param holds rolled bits, which
   * must lie inside the negotiated mask (no configure: an empty mask). Legacy
   * `mining.multi_version`: the 6th param is the whole version, equal to the job's outside the
   * pool's mask.
   */
  #version(jobVersion: number, bitsHex: Json | undefined): number | Reject {
    if (bitsHex === undefined) return jobVersion;
    const bits = parseU32(bitsHex);
    if (bits === undefined) return reject(REJECT.OTHER, "Invalid version bits");
    if (this.#multiVersion && this.#versionMask === null) {
      const outside = ~this.#ctx.versionMask;
      if (((bits ^ jobVersion) & outside) !== 0) return reject(REJECT.OTHER, "Invalid version");
      return bits >>> 0;
    }
    const mask = this.#versionMask ?? 0;
    if ((bits & ~mask) !== 0) return reject(REJECT.OTHER, "Version bits outside the mask");
    return ((jobVersion & ~mask) | (bits & mask)) >>> 0;
  }

  #reply(id: Id, result: Json, error: Json): void {
    this.#send({ id, result, error });
  }

  #send(message: Record<string, Json>): void {
    if (this.#socket.destroyed || this.#ctx.fault()?.kind === "silent") return;
    this.#socket.write(`${JSON.stringify(message)}\n`);
  }
}
