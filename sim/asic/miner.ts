/**
 * One simulated ASIC: a Stratum V1 client that speaks its firmware's dialect, mines real
 * SHA-256d on the jobs it gets, applies set_difficulty at the next notify, fails over through
 * its pool slots after a silence, honours client.reconnect as cgminer does, and injects the
 * faults it is told to. Its state feeds the management API (mgmt-api.ts).
 */
import { connect as netConnect, type Socket } from "node:net";
import { type Clock, systemClock } from "../../lib/clock.ts";
import { systemTimers, type TimerHandle, type Timers } from "../../lib/timers.ts";
import type { MinerEvent, MinerMode } from "./events.ts";
import {
  type FaultKind,
  type FaultSpec,
  faultsFiring,
  hostilePayload,
  initialConditions,
  malformedSubmit,
  SHARE_FAULTS,
} from "./faults.ts";
import { type HandshakeMessage, handshakeMessages } from "./handshake.ts";
import { type FoundShare, Hasher, type Job, lowDifficultyVariant } from "./hasher.ts";
import { simIdentity } from "./identity.ts";
import {
  isStaleReason,
  parseNotify,
  parseSubscribe,
  type Reply,
  rejectReason,
  rollingGrant,
  shareDifficulty,
  versionField,
} from "./messages.ts";
import { PoolConn } from "./pool-conn.ts";
import { reconnectAllowed } from "./pool-url.ts";
import type { Profile } from "./profiles.ts";
import type { HashScheduler, HashTask } from "./scheduler.ts";
import {
  countOutcome,
  newCounters,
  newSlot,
  nextEnabled,
  type PoolConfig,
  type ShareCounters,
  type Slot,
} from "./slots.ts";
import { hex8 } from "./work.ts";

export interface MinerOptions {
  readonly id: string;
  readonly profile: Profile;
  /** Pool slots in priority order (firmware has three). */
  readonly pools: readonly PoolConfig[];
  readonly scheduler: HashScheduler;
  readonly clock?: Clock;
  /**
   * What the miner's own delays (reboot, reconnect, retry) wait on: Node's timers by default,
   * fake time in tests that drive a reboot on the driver's clock.
   */
  readonly timers?: Timers;
  /** No data for this long: the connection is dead, fail over (firmware: 90 s). */
  readonly silenceTimeoutMs?: number;
  /** Pause before trying the slots again once all of them failed. */
  readonly retryDelayMs?: number;
  /** mining.suggest_difficulty to send (else the profile's default, if any). */
  readonly suggestDifficulty?: number;
  readonly faults?: readonly FaultSpec[];
  /** How long a reboot keeps the miner (and its API) down. */
  readonly rebootMs?: number;
  /** Opens the TCP connection to a pool (injected for tests). */
  readonly connect?: (host: string, port: number) => Socket;
  readonly onEvent?: (event: MinerEvent & { miner: string }) => void;
  /**
   * The miner's hardware identity (identity.ts): a MAC and a serial that belong to the
   * machine, not to its address, so a reboot or a DHCP move keeps them. Default: derived from
   * `id`.
   */
  readonly mac?: string;
  readonly serial?: string;
}

const MAX_JOBS = 16;

export type { MinerEvent, MinerMode } from "./events.ts";

export class SimMiner {
  readonly id: string;
  readonly profile: Profile;
  readonly mac: string;
  readonly serial: string;
  /** One serial per hash board, as the S19's new API reports (`chain[].sn`). */
  readonly boardSerials: readonly string[];
  /**
   * For benchmarks: every management request (4028 or web UI) moves the reported hashrate,
   * chip temperatures and fan speeds a little, and the hashrates served are kept until taken,
   * so a reader can be checked to show the values of its own requests — no cache can pass.
   */
  varyPerRead = false;
  #reads = 0;
  #served: number[] = [];
  readonly #opts: MinerOptions;
  readonly #clock: Clock;
  readonly #slots: Slot[];
  readonly #silenceMs: number;
  readonly #retryMs: number;
  readonly #faults: readonly FaultSpec[];
  #removeTask: (() => void) | null = null;
  #running = false;
  #rebooting = false;
  #mode: MinerMode = "normal";
  readonly #conditions = new Set<FaultKind>();
  #bootAt = 0;
  #conn: PoolConn | null = null;
  #switchTo: number | null = null;
  #attempts = 0;
  #retriedSame = false;
  readonly #waits: Timers;
  #timers = new Set<TimerHandle>();
  #jobs = new Map<string, Job>();
  #hasher: Hasher | null = null;
  #extranonce2 = 0n;
  #difficulty = 1;
  #pendingDifficulty: number | null = null;
  #pendingExtranonce: { en1: string; size: number } | null = null;
  #sharesFound = 0;
  #heldStale: FoundShare[] = [];
  #malformedVariant = 0;
  #hostileVariant = 0;
  #everHashed = false;
  #totals: ShareCounters = newCounters();
  #hwErrors = 0;
  readonly #listeners = new Set<(event: MinerEvent & { miner: string }) => void>();

  constructor(options: MinerOptions) {
    if (options.pools.length === 0) throw new RangeError("a miner needs at least one pool");
    this.id = options.id;
    this.profile = options.profile;
    const identity = simIdentity(options.id, options.profile.chains.slots.length);
    this.mac = options.mac ?? identity.mac;
    this.serial = options.serial ?? identity.serial;
    this.boardSerials = identity.boardSerials;
    this.#opts = options;
    this.#clock = options.clock ?? systemClock;
    this.#waits = options.timers ?? systemTimers;
    this.#slots = options.pools.map(newSlot);
    this.#silenceMs = options.silenceTimeoutMs ?? 90_000;
    this.#retryMs = options.retryDelayMs ?? 5_000;
    this.#faults = options.faults ?? [];
  }

  /** Powers the miner on: connects to slot 1 and starts hashing once it has work. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#boot();
    const task: HashTask = { active: () => this.#canHash(), step: (n) => this.#step(n) };
    this.#removeTask = this.#opts.scheduler.add(task);
  }

  /** Powers off: closes the pool connection, stops hashing. */
  async stop(): Promise<void> {
    this.#running = false;
    for (const t of this.#timers) this.#waits.clearTimeout(t);
    this.#timers.clear();
    this.#removeTask?.();
    this.#removeTask = null;
    const conn = this.#conn;
    if (conn && !conn.socket.destroyed) {
      const closed = new Promise<void>((resolve) => conn.socket.once("close", () => resolve()));
      conn.close("stop");
      await closed;
    }
  }

  /** Adds an event listener; returns the function that removes it. */
  on(listener: (event: MinerEvent & { miner: string }) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // ---- state read by the management API -------------------------------------------------

  get mode(): MinerMode {
    return this.#mode;
  }
  get rebooting(): boolean {
    return this.#rebooting;
  }
  get conditions(): ReadonlySet<FaultKind> {
    return this.#conditions;
  }
  /** Hashing right now (what the API's 5 s hashrate reflects). */
  /** A management request arrived (mgmt-api.ts, web-ui.ts). */
  noteRead(): void {
    this.#reads++;
  }
  /** Management requests answered since boot of this process (benchmarks count them). */
  get reads(): number {
    return this.#reads;
  }
  /** How far this request's values move (0 unless varyPerRead): 0..996, new each request. */
  get drift(): number {
    return this.varyPerRead ? this.#reads % 997 : 0;
  }
  /** A hashrate put in a reply (varyPerRead only; the last 256 kept). */
  recordServed(ghs: number): void {
    if (!this.varyPerRead) return;
    this.#served.push(ghs);
    if (this.#served.length > 256) this.#served.shift();
  }
  /** The hashrates served since the last call. */
  takeServed(): number[] {
    const s = this.#served;
    this.#served = [];
    return s;
  }
  get hashing(): boolean {
    return this.#canHash();
  }
  get everHashed(): boolean {
    return this.#everHashed;
  }
  get elapsedSeconds(): number {
    return Math.max(0, Math.floor((this.#clock.now() - this.#bootAt) / 1000));
  }
  get totals(): Readonly<ShareCounters> {
    return this.#totals;
  }
  get hardwareErrors(): number {
    return this.#hwErrors;
  }
  get currentSlot(): number | null {
    return this.#conn?.authorized ? this.#conn.slot : null;
  }
  /** The difficulty of the job being worked on. */
  get difficulty(): number {
    return this.#difficulty;
  }
  get slots(): readonly Readonly<Slot>[] {
    return this.#slots;
  }
  get clock(): Clock {
    return this.#clock;
  }

  // ---- control (management API, tests) ---------------------------------------------------

  /**
   * Sleep (S19 miner-mode 1, bosminer pause), low power (S19 miner-mode 3) or normal; false
   * if the model cannot (the stock S9 has no modes; bosminer no low-power mode here).
   */
  setMode(mode: MinerMode): boolean {
    if (this.profile.sleep === "none") return false;
    if (mode === "low" && this.profile.sleep !== "sleep") return false;
    if (this.#mode !== mode) {
      this.#mode = mode;
      this.#emit({ type: "mode", mode });
      this.#opts.scheduler.wake();
    }
    return true;
  }

  setCondition(kind: FaultKind, on: boolean): void {
    if (on) this.#conditions.add(kind);
    else this.#conditions.delete(kind);
    this.#opts.scheduler.wake();
  }

  /** cgminer switchpool: enables the slot and mines on it. */
  switchPool(i: number): void {
    const slot = this.#slots[i];
    if (!slot) throw new RangeError(`no pool ${i}`);
    slot.enabled = true;
    if (this.#conn && this.#conn.slot === i) return;
    if (this.#conn) {
      this.#switchTo = i;
      this.#conn.close("switch");
    } else if (this.#running && !this.#rebooting) {
      this.#connect(i);
    }
  }

  enablePool(i: number): void {
    const slot = this.#slots[i];
    if (!slot) throw new RangeError(`no pool ${i}`);
    slot.enabled = true;
  }

  /** Disables a slot; leaves it if it is the current one. */
  disablePool(i: number): void {
    const slot = this.#slots[i];
    if (!slot) throw new RangeError(`no pool ${i}`);
    slot.enabled = false;
    if (this.#conn && this.#conn.slot === i) this.#conn.close("disabled");
  }

  addPool(config: PoolConfig): number {
    this.#slots.push(newSlot(config));
    return this.#slots.length - 1;
  }

  removePool(i: number): void {
    if (!this.#slots[i]) throw new RangeError(`no pool ${i}`);
    if (this.#conn && this.#conn.slot === i) throw new RangeError(`pool ${i} is active`);
    this.#slots.splice(i, 1);
    if (this.#conn && this.#conn.slot > i) this.#conn.slot--;
  }

  /**
   * Replaces every pool slot, as the S19's set_miner_conf does (bmminer restarts with the new
   * configuration): empty URLs are unused slots; the miner reconnects to the first one.
   */
  setPools(configs: readonly PoolConfig[]): void {
    const used = configs.filter((c) => c.url !== "");
    if (used.length === 0) throw new RangeError("no pool configured");
    const fresh = used.map(newSlot);
    this.#slots.splice(0, this.#slots.length, ...fresh);
    if (this.#conn) {
      this.#switchTo = 0;
      this.#conn.close("switch");
    } else if (this.#running && !this.#rebooting) {
      this.#connect(0);
    }
  }

  /** Reboots: pool connection and API down for rebootMs, counters reset, back on slot 1. */
  reboot(): void {
    if (this.#rebooting || !this.#running) return;
    this.#rebooting = true;
    this.#emit({ type: "reboot" });
    if (this.#conn) this.#conn.close("reboot");
    this.#later(this.#opts.rebootMs ?? 2_000, () => {
      this.#rebooting = false;
      this.#boot();
      this.#emit({ type: "boot" });
    });
  }

  // ---- lifecycle ------------------------------------------------------------------------

  #boot(): void {
    this.#bootAt = this.#clock.now();
    this.#totals = newCounters();
    this.#hwErrors = 0;
    this.#sharesFound = 0;
    this.#everHashed = false;
    this.#heldStale = [];
    this.#conditions.clear();
    for (const k of initialConditions(this.#faults)) this.#conditions.add(k);
    for (const [i, s] of this.#slots.entries()) {
      const fresh = newSlot({ url: s.url.text, user: s.user, pass: s.pass });
      fresh.enabled = s.enabled;
      this.#slots[i] = fresh;
    }
    this.#attempts = 0;
    const first = this.#slots[0]?.enabled ? 0 : nextEnabled(this.#slots, 0);
    if (first !== null) this.#connect(first);
  }

  #later(ms: number, fn: () => void): void {
    const t = this.#waits.setTimeout(() => {
      this.#timers.delete(t);
      if (this.#running) fn();
    }, ms);
    this.#timers.add(t);
  }

  #emit(event: MinerEvent): void {
    const e = { ...event, miner: this.id };
    this.#opts.onEvent?.(e);
    for (const l of this.#listeners) l(e);
  }

  // ---- connection -----------------------------------------------------------------------

  #connect(slotIdx: number): void {
    const slot = this.#slots[slotIdx];
    if (!slot || !this.#running || this.#rebooting) return;
    this.#attempts++;
    this.#emit({ type: "connecting", slot: slotIdx, host: slot.host, port: slot.port });
    const socket = (this.#opts.connect ?? ((h, p) => netConnect({ host: h, port: p })))(
      slot.host,
      slot.port,
    );
    const conn: PoolConn = new PoolConn(socket, slotIdx, this.#silenceMs, {
      onConnect: () => {
        this.#emit({ type: "connected", slot: conn.slot });
        void this.#handshake(conn);
      },
      onMethod: (method, params, id) => {
        if (this.#conn === conn) this.#onMethod(conn, method, params, id);
      },
      onClose: (reason) => this.#onClosed(conn, reason),
    });
    this.#conn = conn;
    this.#jobs.clear();
    this.#hasher = null;
    this.#pendingDifficulty = null;
    this.#pendingExtranonce = null;
    this.#difficulty = 1;
  }

  #onClosed(conn: PoolConn, reason: string): void {
    if (this.#conn !== conn) return;
    this.#conn = null;
    this.#hasher = null;
    this.#jobs.clear();
    const slotIdx = conn.slot;
    const slot = this.#slots[slotIdx];
    this.#emit({ type: "disconnected", slot: slotIdx, reason });
    if (!this.#running || reason === "stop" || reason === "reboot") return;
    if (reason === "reconnect") {
      this.#later(conn.reconnectWaitMs, () => this.#connect(slotIdx));
      return;
    }
    if (reason === "switch" && this.#switchTo !== null) {
      const to = this.#switchTo;
      this.#switchTo = null;
      this.#connect(to);
      return;
    }
    if (slot) slot.alive = false;
    // A pool that hung up on a working session gets one immediate retry (cgminer restarts
    // stratum on the same pool before declaring it dead).
    const hungUp = reason === "closed by pool" || reason === "error";
    if (hungUp && conn.everAuthorized && !this.#retriedSame) {
      this.#retriedSame = true;
      this.#connect(slotIdx);
      return;
    }
    this.#failover(slotIdx, reason);
  }

  #failover(from: number, reason: string): void {
    const to = nextEnabled(this.#slots, from);
    if (to === null) return;
    this.#emit({ type: "failover", from, to, reason });
    const enabled = this.#slots.filter((s) => s.enabled).length;
    // After a full round of failures, wait before the next round (no reconnect storm).
    const delay = this.#attempts >= enabled ? this.#retryMs : 0;
    if (delay > 0) this.#attempts = 0;
    this.#later(delay, () => {
      if (!this.#conn) this.#connect(to);
    });
  }

  async #handshake(conn: PoolConn): Promise<void> {
    const slot = this.#slots[conn.slot];
    if (!slot) return;
    const messages = handshakeMessages(
      this.profile,
      { user: slot.user, pass: slot.pass, xnsub: slot.url.xnsub, sessionId: slot.sessionId },
      this.#opts.suggestDifficulty,
    );
    for (const msg of messages) {
      if (conn.closing !== null) return;
      const reply = conn.request(msg.method, msg.params, (r) =>
        this.#onHandshakeReply(conn, msg.kind, r),
      );
      if (msg.wait && !(await reply)) return;
    }
  }

  /** Handles one handshake answer; false: the connection is given up. */
  #onHandshakeReply(conn: PoolConn, kind: HandshakeMessage["kind"], r: Reply | null): boolean {
    if (r === null) return false;
    switch (kind) {
      case "configure": {
        const mask = rollingGrant(r.result);
        if (mask === null) {
          if (!this.profile.requireRollingGrant) return true;
          conn.close("configure refused");
          return false;
        }
        conn.rollingNegotiated = true;
        this.#setMask(conn, mask & this.profile.requestedMask);
        return true;
      }
      case "subscribe":
        return this.#onSubscribe(conn, r);
      case "authorize":
        return this.#onAuthorize(conn, r);
      case "multi_version":
        // Legacy Bitmain rolling: on only if the pool says yes; submit carries the full version.
        if (r.result === true) this.#setMask(conn, this.profile.requestedMask);
        return true;
      default:
        return true;
    }
  }

  #setMask(conn: PoolConn, mask: number): void {
    conn.mask = mask >>> 0;
    this.#emit({ type: "rolling", mask: hex8(conn.mask) });
    // The next batch rolls within the new mask.
    if (this.#hasher && this.#conn === conn) this.#startHasher(this.#hasher.job);
  }

  #onSubscribe(conn: PoolConn, r: Reply): boolean {
    const sub = parseSubscribe(r.result);
    if (sub === null) {
      conn.close("subscribe failed");
      return false;
    }
    // cgminer refuses extranonce2 sizes outside 2..16.
    if (sub.extranonce2Size < 2 || sub.extranonce2Size > 16) {
      conn.close("extranonce2 size out of range");
      return false;
    }
    const slot = this.#slots[conn.slot];
    if (slot && this.profile.resumesSession) slot.sessionId = sub.sessionId;
    conn.extranonce1 = sub.extranonce1;
    conn.extranonce2Size = sub.extranonce2Size;
    this.#emit({ type: "subscribed", slot: conn.slot, ...sub });
    return true;
  }

  #onAuthorize(conn: PoolConn, r: Reply): boolean {
    const ok = r.result === true;
    this.#emit({ type: "authorized", slot: conn.slot, ok });
    if (!ok) {
      conn.close("authorization failed");
      return false;
    }
    conn.authorized = true;
    conn.everAuthorized = true;
    this.#attempts = 0;
    this.#retriedSame = false;
    const slot = this.#slots[conn.slot];
    if (slot) slot.alive = true;
    this.#opts.scheduler.wake();
    return true;
  }

  // ---- messages from the pool -----------------------------------------------------------

  #onMethod(conn: PoolConn, method: string, params: unknown, id: unknown): void {
    const p = Array.isArray(params) ? params : [];
    switch (method) {
      case "mining.notify":
        this.#onNotify(conn, p);
        return;
      case "mining.set_difficulty": {
        const d = p[0];
        if (typeof d === "number" && Number.isFinite(d) && d > 0) this.#pendingDifficulty = d;
        return;
      }
      case "mining.set_extranonce": {
        const [en1, size] = p;
        if (typeof en1 === "string" && /^([0-9a-fA-F]{2})*$/.test(en1) && Number.isInteger(size)) {
          this.#pendingExtranonce = { en1: en1.toLowerCase(), size: size as number };
        }
        return;
      }
      case "mining.set_version_mask": {
        const m = p[0];
        if (conn.rollingNegotiated && typeof m === "string" && /^[0-9a-fA-F]{1,8}$/.test(m)) {
          this.#setMask(conn, Number.parseInt(m, 16) & this.profile.requestedMask);
        }
        return;
      }
      case "client.reconnect":
        this.#onReconnect(conn, p);
        return;
      case "client.get_version":
        if (id !== undefined && id !== null) {
          conn.reply(id, this.profile.userAgent);
        }
        return;
      case "mining.ping":
        if (id !== undefined && id !== null) conn.reply(id, "pong");
        return;
      case "client.show_message":
        if (typeof p[0] === "string") this.#emit({ type: "message", text: p[0] });
        return;
      default:
        // Firmware ignores methods it does not know.
        return;
    }
  }

  #onReconnect(conn: PoolConn, p: unknown[]): void {
    const slot = this.#slots[conn.slot];
    if (!slot) return;
    const host = typeof p[0] === "string" ? p[0] : "";
    if (!reconnectAllowed(slot.host, host)) {
      this.#emit({ type: "reconnect-refused", host });
      return;
    }
    const rawPort = p[1];
    const port =
      typeof rawPort === "number" || (typeof rawPort === "string" && /^\d+$/.test(rawPort))
        ? Number(rawPort)
        : slot.port;
    if (!(port >= 1 && port <= 65535)) {
      this.#emit({ type: "reconnect-refused", host });
      return;
    }
    const wait = typeof p[2] === "number" && p[2] > 0 ? Math.min(p[2], 3600) : 0;
    if (host !== "") slot.host = host;
    slot.port = port;
    this.#emit({ type: "reconnect", host: slot.host, port });
    conn.reconnectWaitMs = wait * 1000;
    conn.close("reconnect");
  }

  #onNotify(conn: PoolConn, p: unknown[]): void {
    const parsed = parseNotify(p);
    if (!parsed || conn.extranonce1 === null) return;
    if (this.#pendingExtranonce) {
      conn.extranonce1 = this.#pendingExtranonce.en1;
      conn.extranonce2Size = this.#pendingExtranonce.size;
      this.#pendingExtranonce = null;
    }
    // set_difficulty takes effect here, at the next notify; jobs already issued keep theirs.
    if (this.#pendingDifficulty !== null) {
      this.#difficulty = this.#pendingDifficulty;
      this.#pendingDifficulty = null;
    }
    const slot = this.#slots[conn.slot];
    if (slot) {
      slot.difficulty = this.#difficulty;
      slot.counters.getworks++;
    }
    this.#totals.getworks++;
    const job: Job = {
      ...parsed,
      difficulty: this.#difficulty,
      extranonce1: conn.extranonce1,
      extranonce2Size: conn.extranonce2Size,
      receivedAt: this.#clock.now(),
    };
    if (job.clean) this.#jobs.clear();
    this.#jobs.set(job.jobId, job);
    while (this.#jobs.size > MAX_JOBS) {
      const oldest = this.#jobs.keys().next().value as string;
      this.#jobs.delete(oldest);
    }
    this.#emit({ type: "job", jobId: job.jobId, difficulty: job.difficulty, clean: job.clean });
    this.#startHasher(job);
    if (job.clean && this.#heldStale.length > 0) {
      // The held shares' jobs were just replaced: they go out now, genuinely stale.
      const held = this.#heldStale.splice(0);
      for (const s of held) this.#submit(s, "stale");
    }
  }

  // ---- hashing and shares ---------------------------------------------------------------

  #startHasher(job: Job): void {
    const conn = this.#conn;
    const previous = this.#hasher;
    this.#extranonce2 = previous ? previous.nextExtranonce2 : this.#extranonce2;
    this.#hasher = new Hasher(job, {
      mask: conn ? conn.mask : 0,
      extranonce2: this.#extranonce2,
      now: () => this.#clock.now(),
    });
    this.#opts.scheduler.wake();
  }

  #canHash(): boolean {
    const c = this.#conn;
    if (!c?.authorized || this.#hasher === null) return false;
    return (
      this.#running &&
      !this.#rebooting &&
      this.#mode !== "sleep" &&
      !this.#conditions.has("overheat") &&
      !this.#conditions.has("fan") &&
      // cgminer-family firmware will not submit with extranonce2 wider than 8 bytes.
      c.extranonce2Size <= 8
    );
  }

  #step(n: number): void {
    const hasher = this.#hasher;
    if (!hasher) return;
    this.#everHashed = true;
    hasher.run(n, (share) => this.#onShareFound(share));
  }

  #onShareFound(share: FoundShare): void {
    this.#sharesFound++;
    const diff = shareDifficulty(share.hash);
    if (diff > this.#totals.bestShare) this.#totals.bestShare = diff;
    const firing = faultsFiring(this.#faults, this.#sharesFound);
    const shape = SHARE_FAULTS.find((k) => firing.includes(k));
    switch (shape) {
      case "stale":
        this.#emit({ type: "fault", kind: "stale", detail: "held until the next clean job" });
        this.#heldStale.push(share);
        break;
      case "duplicate":
        this.#submit(share);
        this.#submit(share, "duplicate");
        break;
      case "lowdiff":
        this.#submit(lowDifficultyVariant(share), "lowdiff");
        break;
      case "malformed":
        this.#sendMalformed(share);
        break;
      default:
        this.#submit(share);
    }
    for (const k of firing) {
      if (k === "hostile") this.#sendHostile();
      else if (k === "disconnect" && this.#conn) {
        this.#emit({ type: "fault", kind: "disconnect" });
        this.#conn.close("reconnect");
      } else if (k === "reboot") {
        this.#emit({ type: "fault", kind: "reboot" });
        this.reboot();
      } else if (k === "overheat" || k === "fan" || k === "api-glitch") {
        this.#emit({ type: "fault", kind: k });
        this.setCondition(k, true);
      }
    }
  }

  #submitParams(conn: PoolConn, share: FoundShare): string[] {
    const slot = this.#slots[conn.slot];
    const params = [
      slot?.user ?? "",
      share.job.jobId,
      share.extranonce2,
      hex8(share.ntime),
      hex8(share.nonce),
    ];
    if (conn.mask !== 0 || this.profile.alwaysSendVersion) {
      params.push(versionField(this.profile.versionEncoding, share, conn.mask));
    }
    return params;
  }

  #submit(share: FoundShare, fault?: FaultKind): void {
    const conn = this.#conn;
    if (!conn?.authorized) {
      this.#totals.discarded++;
      return;
    }
    const params = this.#submitParams(conn, share);
    const id = conn.nextId;
    const difficulty = share.job.difficulty;
    this.#emit({
      type: "submitted",
      id,
      jobId: share.job.jobId,
      extranonce2: share.extranonce2,
      ntime: hex8(share.ntime),
      nonce: hex8(share.nonce),
      version: hex8(share.version),
      difficulty,
      hash: share.hash,
      ...(fault === undefined ? {} : { fault }),
    });
    void conn.request("mining.submit", params, (r) =>
      this.#onSubmitReply(conn, id, share.job.jobId, difficulty, r),
    );
  }

  #onSubmitReply(
    conn: PoolConn,
    id: number,
    jobId: string,
    difficulty: number,
    r: Reply | null,
  ): void {
    const slot = this.#slots[conn.slot];
    if (r === null) {
      this.#totals.discarded++;
      if (slot) slot.counters.discarded++;
      return;
    }
    const counters = slot ? [slot.counters, this.#totals] : [this.#totals];
    let reason = r.result === true ? null : rejectReason(r);
    // The S19 counts a share below the difficulty now in force as a reject, whatever the pool said.
    if (
      reason === null &&
      this.profile.countsOldDifficultyAsReject &&
      difficulty < this.#difficulty
    ) {
      reason = "below current difficulty (local)";
    }
    const now = this.#clock.now();
    if (reason === null) {
      countOutcome(counters, "accepted", difficulty, now);
      this.#emit({ type: "accepted", id, jobId, difficulty });
    } else {
      countOutcome(counters, isStaleReason(r, reason) ? "stale" : "rejected", difficulty, now);
      this.#emit({ type: "rejected", id, jobId, difficulty, reason });
    }
  }

  #sendMalformed(share: FoundShare): void {
    const conn = this.#conn;
    if (!conn?.authorized) return;
    const v = malformedSubmit(this.#malformedVariant++, this.#submitParams(conn, share));
    this.#emit({ type: "fault", kind: "malformed", detail: v.name });
    const id = conn.nextId;
    void conn.request("mining.submit", v.params, (r) =>
      this.#onSubmitReply(conn, id, share.job.jobId, share.job.difficulty, r),
    );
  }

  #sendHostile(): void {
    const conn = this.#conn;
    if (!conn) return;
    const h = hostilePayload(this.#hostileVariant++);
    this.#emit({ type: "fault", kind: "hostile", detail: h.name });
    conn.write(h.data);
  }
}
