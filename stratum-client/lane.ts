import type { Logger } from "../lib/log/logger.ts";
import type { Upstream } from "../policy-guard/documents.ts";
import type { CodecCounters } from "./codec.ts";
import { PrefixAllocator } from "./extranonce.ts";
import {
  type ConnectedInfo,
  type PoolOptions,
  type SessionTunables,
  UpstreamPool,
} from "./failover.ts";
import { type Job as CompiledJob, parseNotify } from "./job.ts";
import type { UpstreamReachability } from "./reachability.ts";
import type { Job as UpstreamJob } from "./upstream.ts";
import { targetForDifficulty } from "./work.ts";

/**
 * One upstream session (with its ordered failover) and the miners whose extranonce space it
 * holds. The lane keeps the jobs the upstream sent, compiled once for validation, and judges
 * staleness: a job is live until the upstream sends a clean job or the session ends.
 */

export interface LaneJob {
  readonly up: UpstreamJob;
  /** The mining.notify line for miners, serialised once per job (clean or not). */
  notifyLine(clean: boolean): string;
  readonly work: CompiledJob;
  /** The upstream difficulty in force when the job arrived. */
  readonly difficulty: number;
  readonly upstreamTarget: bigint;
}

export interface LaneHooks {
  /** A new job (clean: every earlier job of this lane is stale). */
  onJob(lane: Lane, job: LaneJob): void;
  /** The session is ready with a (possibly new) extranonce space. */
  onReady(lane: Lane, moved: boolean): void;
  onDown(lane: Lane, reason: string): void;
  onRefused(lane: Lane, target: string, reason: string): void;
  /** The upstream changed its version-rolling mask (mining.set_version_mask). */
  onVersionMask(lane: Lane): void;
}

export interface LaneOptions {
  readonly id: number;
  readonly upstreams: readonly Upstream[];
  readonly agentVersion: string;
  readonly session?: SessionTunables;
  readonly pool?: Partial<
    Pick<
      PoolOptions,
      "backoff" | "primaryRetryMs" | "random" | "clock" | "timers" | "sessionTimers"
    >
  >;
  readonly counters?: CodecCounters;
  readonly logger?: Logger;
  /** The proxy's one book of which upstreams are reached, shared by its lanes. */
  readonly reachability?: UpstreamReachability;
  readonly hooks: LaneHooks;
}

const MAX_LIVE_JOBS = 16;

export class Lane {
  readonly id: number;
  readonly pool: UpstreamPool;
  readonly miners = new Set<{ readonly laneKey: number }>();
  readonly #hooks: LaneHooks;
  readonly #log: Logger | undefined;
  #ready = false;
  #extranonce1: Buffer = Buffer.alloc(0);
  #extranonce2Size = 0;
  #mask = 0;
  #alloc: PrefixAllocator | null = null;
  #url: string | null = null;
  readonly #jobs = new Map<string, LaneJob>();
  #current: LaneJob | null = null;

  constructor(o: LaneOptions) {
    this.id = o.id;
    this.#hooks = o.hooks;
    this.#log = o.logger;
    this.pool = new UpstreamPool({
      upstreams: o.upstreams,
      agentVersion: o.agentVersion,
      ...(o.session === undefined ? {} : { session: o.session }),
      ...(o.counters === undefined ? {} : { counters: o.counters }),
      ...(o.logger === undefined ? {} : { logger: o.logger }),
      ...(o.reachability === undefined ? {} : { reachability: o.reachability }),
      ...o.pool,
    });
    this.pool.on("connected", (info) => this.#connected(info));
    this.pool.on("disconnected", (end) => this.#down(end.reason));
    this.pool.on("failed", (end) => this.#down(end.reason));
    this.pool.on("job", (job) => this.#job(job));
    this.pool.on("versionMask", (mask) => {
      this.#mask = mask === null ? 0 : Number.parseInt(mask, 16) >>> 0;
      this.#hooks.onVersionMask(this);
    });
    // A new extranonce in the same session is a new space: miners must subscribe again.
    this.pool.on("extranonce", (en1, size) => this.#newSpace(en1, size));
    this.pool.on("refused", (r) => this.#hooks.onRefused(this, r.target, r.reason));
  }

  get ready(): boolean {
    return this.#ready && this.#alloc !== null;
  }
  get extranonce1(): Buffer {
    return this.#extranonce1;
  }
  get versionMask(): number {
    return this.#mask;
  }
  get url(): string | null {
    return this.#url;
  }
  get current(): LaneJob | null {
    return this.#current;
  }
  get full(): boolean {
    return this.#alloc?.full ?? false;
  }
  get minerEn2Size(): number {
    return this.#alloc?.split.minerEn2Size ?? 0;
  }

  start(): void {
    this.pool.start();
  }

  stop(): void {
    this.pool.stop();
    this.#down("stopped");
  }

  setUpstreams(upstreams: readonly Upstream[]): void {
    this.pool.setUpstreams(upstreams);
  }

  /** A live job by the upstream's id; undefined when unknown or stale. */
  job(upstreamJobId: string): LaneJob | undefined {
    return this.#jobs.get(upstreamJobId);
  }

  allocate(): Buffer | null {
    return this.#alloc?.allocate() ?? null;
  }

  release(prefix: Buffer): void {
    this.#alloc?.release(prefix);
  }

  #connected(info: ConnectedInfo): void {
    const en1 = Buffer.from(info.extranonce1, "hex");
    const moved =
      this.#alloc !== null &&
      (!en1.equals(this.#extranonce1) || info.extranonce2Size !== this.#extranonce2Size);
    this.#url = info.url;
    this.#mask = info.versionMask === null ? 0 : Number.parseInt(info.versionMask, 16) >>> 0;
    if (moved || this.#alloc === null) {
      this.#extranonce1 = en1;
      this.#extranonce2Size = info.extranonce2Size;
      try {
        this.#alloc = new PrefixAllocator(info.extranonce2Size);
      } catch (err) {
        this.#log?.error({ err, url: info.url }, "upstream extranonce space cannot be shared");
        this.#alloc = null;
      }
    }
    if (moved) {
      this.#jobs.clear();
      this.#current = null;
    }
    this.#ready = true;
    this.#hooks.onReady(this, moved);
    // The session may have delivered its first job before it reported ready.
    const last = this.pool.current?.lastJob;
    if (last !== null && last !== undefined && !this.#jobs.has(last.jobId)) this.#job(last);
  }

  #newSpace(extranonce1: string, extranonce2Size: number): void {
    this.#extranonce1 = Buffer.from(extranonce1, "hex");
    this.#extranonce2Size = extranonce2Size;
    try {
      this.#alloc = new PrefixAllocator(extranonce2Size);
    } catch (err) {
      this.#log?.error({ err }, "upstream extranonce space cannot be shared");
      this.#alloc = null;
    }
    this.#jobs.clear();
    this.#current = null;
    this.#hooks.onReady(this, true);
  }

  #down(reason: string): void {
    const was = this.#ready;
    this.#ready = false;
    this.#jobs.clear();
    this.#current = null;
    if (was) this.#hooks.onDown(this, reason);
  }

  #job(up: UpstreamJob): void {
    // A job from another extranonce space (a session we have not adopted yet) is not ours.
    if (up.extranonce1 !== this.#extranonce1.toString("hex") && this.#alloc !== null) return;
    const work = parseNotify(notifyArgs(up, up.cleanJobs));
    if (work === null || !(up.difficulty > 0)) {
      this.#log?.warn({ job: up.jobId }, "upstream job refused: malformed");
      return;
    }
    if (up.cleanJobs) this.#jobs.clear();
    const lines: [string | null, string | null] = [null, null];
    const job: LaneJob = {
      up,
      work,
      difficulty: up.difficulty,
      upstreamTarget: targetForDifficulty(up.difficulty),
      notifyLine: (clean) => {
        const i = clean ? 1 : 0;
        lines[i] ??=
          `${JSON.stringify({ id: null, method: "mining.notify", params: notifyArgs(up, clean) })}\n`;
        return lines[i];
      },
    };
    this.#jobs.set(up.jobId, job);
    while (this.#jobs.size > MAX_LIVE_JOBS) {
      const oldest = this.#jobs.keys().next().value as string;
      this.#jobs.delete(oldest);
    }
    this.#current = job;
    this.#hooks.onJob(this, job);
  }
}

/** The nine mining.notify params of an upstream job, with the given clean flag. */
function notifyArgs(up: UpstreamJob, clean: boolean): unknown[] {
  return [
    up.jobId,
    up.prevhash,
    up.coinb1,
    up.coinb2,
    up.merkleBranch,
    up.version,
    up.nbits,
    up.ntime,
    clean,
  ];
}
