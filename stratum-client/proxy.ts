import { createServer, type Server, type Socket } from "node:net";
import type { Clock } from "../lib/clock.ts";
import type { Logger } from "../lib/log/logger.ts";
import type { Registry } from "../lib/metrics/registry.ts";
import { nextTurn, stopwatch, systemTimers, type Timers } from "../lib/timers.ts";
import type { Upstream } from "../policy-guard/documents.ts";
import type { MiningGate, MiningGateInput } from "../policy-guard/gates.ts";
import { ProxyAccounting } from "./accounting.ts";
import { type CloseReason, CodecCounters, type CodecLimits, JsonRpcConnection } from "./codec.ts";
import type { SessionTunables } from "./failover.ts";
import { Lane, type LaneJob } from "./lane.ts";
import { Miner, type MinerHost, type ShareOutcome } from "./miner.ts";
import type { MinerShares } from "./miner-stats.ts";
import { NetworkAllowlist } from "./networks.ts";
import { UpstreamReachability, type UpstreamStatus } from "./reachability.ts";
import { agentString } from "./upstream.ts";
import { DEFAULT_VARDIFF, type VardiffOptions } from "./vardiff.ts";
import { u32Hex } from "./work.ts";

/**
 * The Stratum V1 proxy: ASICs on the LAN connect to it, it validates every share and forwards
 * to the owner's upstream only the shares that meet the upstream target, only while the policy
 * allows. It is the policy guard's mining gate: `apply` stops or resumes the data path and
 * resolves once it has (no job goes out and no share is forwarded after a deny resolves).
 *
 * Fail closed: until the first `apply`, nothing is allowed, no upstream is dialled and no ASIC
 * is accepted.
 */

export interface ProxyOptions {
  readonly host: string;
  readonly port: number;
  readonly agentVersion: string;
  readonly clock: Clock;
  /**
   * All of the proxy's waiting: the vardiff tick, a subscribe waiting for a session, the
   * miners' codec timers, and (unless `pool` names others) the upstream lanes' backoff and
   * session timers. `systemTimers` by default.
   */
  readonly timers?: Timers;
  readonly logger?: Logger;
  readonly registry?: Registry;
  /** Per-worker metric series beyond this are folded into `_other`. */
  readonly maxWorkerSeries?: number;
  readonly limits?: Partial<CodecLimits>;
  readonly maxConnectionsPerIp?: number;
  /** Worker names one connection may authorize (default 16); one more closes it. */
  readonly maxWorkersPerConnection?: number;
  /** Accepted shares remembered per connection for the duplicate check (default 8,192). */
  readonly maxRememberedShares?: number;
  readonly vardiff?: Partial<VardiffOptions>;
  /** A subscribe waits this long for an upstream session before it is refused. */
  readonly subscribeWaitMs?: number;
  readonly session?: SessionTunables;
  readonly pool?: ConstructorParameters<typeof Lane>[0]["pool"];
  /**
   * Security-relevant events: a reconnect outside the policy, a connection refused (outside
   * `networks`, over the per-IP cap), a connection closed for breaking a bound (AUDITED_CLOSES)
   * or gone before it could be identified. A LAN host can repeat these at will: the agent
   * summarizes repeats (agent/audit-summary.ts).
   */
  readonly audit?: (event: Record<string, unknown>) => void;
  /** The upstream in use changed (the policy's `upstream` fact): re-evaluate. */
  readonly onUpstreamChange?: (url: string | null) => void;
}

const DEFAULT_MASK = 0x1fffe000;
const VARDIFF_TICK_MS = 15_000;
/** Miners sent a new job per event-loop turn (see #fanOut). */
const FAN_OUT_BATCH = 1000;
export const DEFAULT_MAX_WORKERS_PER_CONNECTION = 16;
export const DEFAULT_MAX_REMEMBERED_SHARES = 8192;

/**
 * Closes that say the peer broke a bound (codec.ts, miner.ts): audited. The others (the peer
 * left, idle, the proxy's own close) are ordinary and only counted.
 */
const AUDITED_CLOSES: ReadonlySet<CloseReason> = new Set<CloseReason>([
  "line_too_long",
  "garbage",
  "slowloris",
  "inflight",
  "write_backlog",
  "too_many_workers",
  "too_many_shares",
]);

/** What the proxy holds, counted: every structure a peer can make grow (issue 15). */
export interface ProxyFootprint {
  readonly connections: number;
  /** Entries of the per-IP connection count: at most one per address with a connection. */
  readonly ip_entries: number;
  /** Subscribes waiting for an upstream session: at most one per connection. */
  readonly subscribe_waiters: number;
  /** Worker names authorized, all connections together: at most maxWorkersPerConnection each. */
  readonly workers: number;
  /** Shares remembered for the duplicate check: at most maxRememberedShares per connection. */
  readonly remembered_shares: number;
  /** Per-worker share counts kept (accounting.ts): bounded by its maxWorkers. */
  readonly accounting_workers: number;
}

export interface MinerView {
  readonly id: number;
  readonly ip: string;
  readonly workers: readonly string[];
  readonly difficulty: number;
  readonly ready: boolean;
  readonly upstream_lane: number | null;
  /** When this connection was accepted (Unix ms). */
  readonly connected_since: number;
  /** Estimated from the difficulty it had accepted over the last ten minutes (miner-stats.ts). */
  readonly hashrate_hs: number;
  /** Counted on this connection (a reconnecting ASIC starts again at 0). */
  readonly shares: MinerShares;
}

export class StratumProxy implements MiningGate {
  readonly name = "stratum-proxy";
  readonly accounting: ProxyAccounting;
  readonly counters = new CodecCounters();
  readonly #o: ProxyOptions;
  readonly #timers: Timers;
  readonly #server: Server;
  readonly #miners = new Set<Miner>();
  readonly #perIp = new Map<string, number>();
  readonly #lanes: Lane[] = [];
  readonly #waiters = new Set<() => void>();
  readonly #fanOutGeneration = new WeakMap<Lane, number>();
  readonly #host: MinerHost;
  readonly #reach: UpstreamReachability;
  #upstreams: readonly Upstream[] = [];
  #networks = new NetworkAllowlist([]);
  #denial: string | null = "policy.not_applied";
  #laneSeq = 0;
  #tick: unknown = null;
  #closed = false;

  constructor(options: ProxyOptions) {
    this.#o = options;
    this.#timers = options.timers ?? systemTimers;
    this.accounting = new ProxyAccounting(
      options.registry,
      options.maxWorkerSeries ?? 1000,
      options.clock,
    );
    // One book for every lane: an outage is logged once, whatever the number of lanes.
    this.#reach = new UpstreamReachability({
      clock: options.clock,
      ...(options.logger === undefined ? {} : { logger: options.logger }),
    });
    const vardiff = { ...DEFAULT_VARDIFF, ...options.vardiff };
    this.#host = {
      agent: agentString(options.agentVersion),
      defaultVersionMask: DEFAULT_MASK,
      vardiff,
      maxWorkers: options.maxWorkersPerConnection ?? DEFAULT_MAX_WORKERS_PER_CONNECTION,
      maxRememberedShares: options.maxRememberedShares ?? DEFAULT_MAX_REMEMBERED_SHARES,
      now: () => options.clock.now(),
      denial: () => this.#denial,
      pickLane: () => this.#pickLane(),
      waitLane: () => this.#waitLane(),
      onShare: (s) => this.#onShare(s),
      onClosed: (m) => this.#onMinerClosed(m),
    };
    this.#server = createServer({ noDelay: true }, (socket) => this.#accept(socket));
  }

  /** Starts listening; resolves with the bound address. */
  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      // A deep accept backlog: a whole farm reconnecting at once must not meet SYN drops.
      this.#server.listen({ port: this.#o.port, host: this.#o.host, backlog: 4096 }, () => {
        this.#server.off("error", reject);
        const a = this.#server.address();
        if (a === null || typeof a === "string") return reject(new Error("no address"));
        const tick = () => {
          for (const m of this.#miners) m.tick();
          if (!this.#closed) this.#tick = this.#timers.setTimeout(tick, VARDIFF_TICK_MS);
        };
        this.#tick = this.#timers.setTimeout(tick, VARDIFF_TICK_MS);
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  get miners(): number {
    return this.#miners.size;
  }

  /** The counts of what the proxy holds (tests of its bounds; the operator's diagnosis). */
  footprint(): ProxyFootprint {
    let workers = 0;
    let remembered = 0;
    for (const m of this.#miners) {
      workers += m.workers.size;
      remembered += m.rememberedShares;
    }
    return {
      connections: this.#miners.size,
      ip_entries: this.#perIp.size,
      subscribe_waiters: this.#waiters.size,
      workers,
      remembered_shares: remembered,
      accounting_workers: this.accounting.workers.size,
    };
  }

  /**
   * The connected miners as the operator sees them (the local API's `/v1/miners`): at most
   * `limit`, with their address, authorized workers, difficulty, whether they get work, since
   * when they are connected, their shares and estimated hashrate.
   */
  minerViews(limit = 1000): MinerView[] {
    const out: MinerView[] = [];
    const now = this.#o.clock.now();
    for (const m of this.#miners) {
      if (out.length >= limit) break;
      out.push({
        id: m.id,
        ip: m.ip,
        workers: [...m.workers],
        difficulty: m.difficulty,
        ready: m.ready,
        upstream_lane: m.lane?.id ?? null,
        connected_since: m.stats.connectedSince,
        hashrate_hs: m.stats.hashrate(now),
        shares: m.stats.shares,
      });
    }
    return out;
  }

  /**
   * Whether the upstream is reached (the local API's status, the heartbeat): the one in use,
   * or the one failing, with since when; and each of the policy's (reachability.ts).
   */
  upstreamStatus(): UpstreamStatus {
    return this.#reach.status();
  }

  /** The upstream URL in use (the `upstream` fact of DOCUMENTS.md section 6), or the first allowed. */
  upstreamInUse(): string | null {
    for (const l of this.#lanes) if (l.ready && l.url !== null) return l.url;
    return this.#upstreams[0]?.url ?? null;
  }

  lanes(): readonly Lane[] {
    return this.#lanes;
  }

  /** The mining gate. */
  apply(input: MiningGateInput): void {
    this.#networks = new NetworkAllowlist(input.networks);
    for (const m of this.#miners) if (!this.#networks.allows(m.ip)) m.conn.close("local");
    this.#setUpstreams(input.upstreams);
    const was = this.#denial;
    this.#denial = input.allow ? null : (input.reasons[0] ?? "denied");
    this.accounting.setAllowed(input.allow);
    // Denied: from here on no job goes out (sendWork checks) and no share is forwarded
    // (#onShare checks), so the data path is stopped when this returns. Allowed again: every
    // miner gets a clean job at once.
    if (input.allow && was !== null) for (const m of this.#miners) m.sendWork(true);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#tick !== null) this.#timers.clearTimeout(this.#tick);
    for (const w of this.#waiters) w();
    for (const l of this.#lanes) l.stop();
    for (const m of this.#miners) m.conn.close("local");
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  // ---- miners -----------------------------------------------------------------------------

  #accept(socket: Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const ip = socket.remoteAddress;
    if (ip === undefined) {
      // Reset by the peer before it was accepted: the kernel no longer knows its address.
      // Nothing can be checked against `networks`, and nothing was refused: it is gone.
      this.accounting.connectionClosed("closed_before_identified");
      this.#o.audit?.({
        type: "stratum.connection_closed",
        reason: "closed_before_identified",
        ip: null,
      });
      socket.destroy();
      return;
    }
    if (!this.#networks.allows(ip)) {
      this.accounting.connectionRefused("network");
      this.#o.audit?.({ type: "stratum.connection_refused", reason: "network", ip });
      socket.destroy();
      return;
    }
    const count = this.#perIp.get(ip) ?? 0;
    if (count >= (this.#o.maxConnectionsPerIp ?? 64)) {
      this.accounting.connectionRefused("ip_cap");
      this.#o.audit?.({ type: "stratum.connection_refused", reason: "ip_cap", ip });
      socket.destroy();
      return;
    }
    this.#perIp.set(ip, count + 1);
    let miner: Miner | null = null;
    const conn = new JsonRpcConnection(socket, {
      counters: this.counters,
      clock: this.#o.clock,
      timers: this.#timers,
      ...(this.#o.limits === undefined ? {} : { limits: this.#o.limits }),
      onRequest: (req) => miner?.handle(req.id, req.method, req.params),
      onNotification: (method, params) => miner?.handle(null, method, params),
      onClose: (reason) => {
        const n = (this.#perIp.get(ip) ?? 1) - 1;
        if (n <= 0) this.#perIp.delete(ip);
        else this.#perIp.set(ip, n);
        if (AUDITED_CLOSES.has(reason)) {
          this.accounting.connectionClosed(reason);
          this.#o.audit?.({ type: "stratum.connection_closed", reason, ip });
        }
        miner?.closed();
      },
    });
    miner = new Miner(conn, ip, this.#host);
    this.#miners.add(miner);
    this.accounting.minerCount(this.#miners.size);
  }

  #onMinerClosed(m: Miner): void {
    this.#miners.delete(m);
    this.accounting.minerCount(this.#miners.size);
  }

  // ---- upstream lanes ---------------------------------------------------------------------

  #setUpstreams(upstreams: readonly Upstream[]): void {
    // First: a session this change closes then ends into the new list (idle when it is empty).
    this.#reach.want(upstreams);
    const same =
      upstreams.length === this.#upstreams.length &&
      upstreams.every(
        (u, i) => u.url === this.#upstreams[i]?.url && u.user === this.#upstreams[i]?.user,
      );
    this.#upstreams = upstreams;
    if (same && this.#lanes.length > 0) return;
    if (upstreams.length === 0) {
      for (const l of this.#lanes.splice(0)) {
        l.stop();
        // Their work is gone: move the miners, so they come back to a new lane later.
        for (const m of [...(l.miners as Set<unknown> as Set<Miner>)]) m.moveAway();
      }
      return;
    }
    if (this.#lanes.length === 0) this.#addLane();
    else for (const l of this.#lanes) l.setUpstreams(upstreams);
  }

  #addLane(): Lane {
    const lane = new Lane({
      id: ++this.#laneSeq,
      upstreams: this.#upstreams,
      agentVersion: this.#o.agentVersion,
      counters: this.counters,
      ...(this.#o.session === undefined ? {} : { session: this.#o.session }),
      pool: { timers: this.#timers, sessionTimers: this.#timers, ...this.#o.pool },
      ...(this.#o.logger === undefined ? {} : { logger: this.#o.logger }),
      reachability: this.#reach,
      hooks: {
        onJob: (l, job) => this.#fanOut(l, job),
        onReady: (l, moved) => this.#laneReady(l, moved),
        onDown: (l, reason) => this.accounting.upstreamDown(l.id, reason),
        onVersionMask: (l) => {
          for (const m of l.miners as Set<unknown> as Set<Miner>) m.laneMaskChanged();
        },
        onRefused: (l, target, reason) => {
          this.accounting.reconnectRefused();
          this.#o.audit?.({ type: "stratum.reconnect_refused", lane: l.id, target, reason });
        },
      },
    });
    this.#lanes.push(lane);
    lane.start();
    return lane;
  }

  #laneReady(lane: Lane, moved: boolean): void {
    this.accounting.upstreamUp(lane.id, lane.url ?? "");
    this.#o.onUpstreamChange?.(lane.url);
    if (moved) {
      // A new extranonce space: miners of the old one must subscribe again.
      for (const m of [...this.#miners]) if (m.lane === lane) m.moveAway();
    }
    for (const w of [...this.#waiters]) w();
  }

  #pickLane(): Lane | null {
    for (const l of this.#lanes) if (l.ready && !l.full) return l;
    // Every ready session is full: open another (same upstreams) for the next miners.
    if (this.#lanes.length > 0 && this.#lanes.every((l) => l.ready && l.full)) this.#addLane();
    return null;
  }

  #waitLane(): Promise<Lane | null> {
    return new Promise((resolve) => {
      const done = () => {
        this.#timers.clearTimeout(timer);
        this.#waiters.delete(done);
        resolve(this.#closed ? null : this.#pickLane());
      };
      const timer = this.#timers.setTimeout(done, this.#o.subscribeWaitMs ?? 10_000);
      this.#waiters.add(done);
    });
  }

  /**
   * Sends a new job to every miner of the lane, FAN_OUT_BATCH miners per event-loop turn, so
   * that submits arriving meanwhile are not held up behind thousands of socket writes. A newer
   * job, or a deny, ends a fan-out still in progress (sendWork checks the denial itself).
   */
  #fanOut(lane: Lane, job: LaneJob): void {
    if (this.#denial !== null) return;
    const generation = (this.#fanOutGeneration.get(lane) ?? 0) + 1;
    this.#fanOutGeneration.set(lane, generation);
    const elapsed = stopwatch();
    const miners = [...(lane.miners as Set<unknown> as Set<Miner>)];
    let i = 0;
    const step = () => {
      if (this.#fanOutGeneration.get(lane) !== generation || this.#closed) return;
      const end = Math.min(i + FAN_OUT_BATCH, miners.length);
      for (; i < end; i++) miners[i]?.sendWork(job.up.cleanJobs);
      if (i < miners.length) nextTurn(step);
      else this.accounting.fanOut(miners.length, elapsed());
    };
    step();
  }

  // ---- shares -----------------------------------------------------------------------------

  #onShare(s: ShareOutcome): void {
    this.accounting.share(s);
    if (s.accepted) s.miner.stats.accepted(s.difficulty, this.#o.clock.now());
    else s.miner.stats.rejected(s.code === 21);
    if (!s.accepted || s.job === undefined || s.extranonce2 === undefined) return;
    if (!(s.meetsUpstream === true || s.isBlock === true)) return;
    // The gate may have closed between validation and here only synchronously; check again.
    if (this.#denial !== null) return;
    const lane = s.miner.lane;
    if (lane === null) return;
    const versionBits =
      s.version !== undefined && lane.versionMask !== 0
        ? u32Hex((s.version & lane.versionMask) >>> 0)
        : undefined;
    if (s.isBlock === true) {
      // A block candidate is forwarded before anything else this turn and recorded.
      this.#o.logger?.info({ worker: s.worker, hash: s.hash?.toString("hex") }, "block candidate");
      this.#o.audit?.({ type: "stratum.block_candidate", worker: s.worker, job: s.job.up.jobId });
    }
    this.accounting.forwardStarted(s, s.sinceReceived());
    const sinceSent = stopwatch();
    void lane.pool
      .submit(
        s.worker,
        s.job.up.jobId,
        s.extranonce2.toString("hex"),
        u32Hex(s.ntime ?? 0),
        u32Hex(s.nonce ?? 0),
        versionBits,
      )
      .then((r) => this.accounting.forwarded(s, r, sinceSent()));
  }
}
