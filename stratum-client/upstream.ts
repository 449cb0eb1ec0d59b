import { isIP, connect as netConnect, type Socket } from "node:net";
import { type ConnectionOptions as TlsOptions, connect as tlsConnect } from "node:tls";
import type { Clock } from "../lib/clock.ts";
import { systemClock } from "../lib/clock.ts";
import { fail } from "../lib/errors.ts";
import type { Logger } from "../lib/log/logger.ts";
import { systemTimers, type TimerHandle, type Timers } from "../lib/timers.ts";
import type { Upstream } from "../policy-guard/documents.ts";
import {
  type CloseReason,
  type CodecCounters,
  type CodecLimits,
  JsonRpcConnection,
  type RpcId,
  type RpcReply,
  requestFailure,
} from "./codec.ts";
import { type Endpoint, endpointUrl, parseV1Url, reconnectTarget } from "./endpoint.ts";
import { parseSubmitReply, type SubmitResult, unanswered } from "./rejects.ts";

/**
 * One Stratum V1 connection to one upstream (the SRI translator or a V1 pool): dial (TCP or
 * TLS), handshake (configure → subscribe → extranonce.subscribe → authorize), then keep the
 * pool's state (difficulty, jobs, extranonce, version mask) and forward submits.
 *
 * Consent: the session authorizes and submits as `upstream.user` from the policy and as
 * nothing else; the `worker` a caller passes to submit() is a local label only. A
 * client.reconnect is followed only to an endpoint `resolveTarget` finds in the policy;
 * otherwise it is refused and reported. Failover and policy changes live in failover.ts.
 */

export type SessionEndReason =
  | CloseReason
  | "connect_failed" // TCP or TLS could not be established (TLS: certificate refused too)
  | "handshake_timeout"
  | "handshake_failed" // subscribe refused or malformed
  | "unauthorized" // the pool refused mining.authorize
  | "not_allowed" // the policy no longer allows this upstream
  | "reconnect" // we follow an allowed client.reconnect
  | "primary_restored" // failover returned to the primary
  | "stopped";

export type SessionStatus = "connecting" | "handshaking" | "ready" | "closed";

export interface Job {
  readonly jobId: string;
  readonly prevhash: string;
  readonly coinb1: string;
  readonly coinb2: string;
  readonly merkleBranch: readonly string[];
  readonly version: string;
  readonly nbits: string;
  readonly ntime: string;
  readonly cleanJobs: boolean;
  /** The difficulty in force when the job arrived: shares for it are judged by this. */
  readonly difficulty: number;
  readonly extranonce1: string;
  readonly extranonce2Size: number;
  readonly receivedAt: number;
}

export interface RefusedReconnect {
  readonly reason: "not_allowed" | "invalid_target";
  /** The target as a URL (or the raw params, bounded, when they named no valid endpoint). */
  readonly target: string;
}

export interface SessionOptions {
  readonly upstream: Upstream;
  /** Sent with mining.authorize; the policy has none, so it comes from local config. */
  readonly password?: string;
  /** The agent string is `agentd/<agentVersion>`. */
  readonly agentVersion: string;
  /** The version-rolling mask we ask for (BIP 310). */
  readonly versionRollingMask?: string;
  readonly versionRollingMinBitCount?: number;
  /** Trust for stratum+ssl; the certificate is always verified (no opt-out). */
  readonly tls?: { readonly ca?: string | Buffer | readonly (string | Buffer)[] };
  /** Finds the policy's Upstream for a reconnect target (same scheme), or null: refused. */
  readonly resolveTarget: (target: Endpoint) => Upstream | null;
  readonly handshakeTimeoutMs?: number;
  /** A pool that ignores mining.configure is treated as one without version rolling. */
  readonly configureTimeoutMs?: number;
  readonly submitTimeoutMs?: number;
  /** client.reconnect's wait is honoured up to this. */
  readonly maxReconnectWaitMs?: number;
  readonly limits?: Partial<CodecLimits>;
  readonly clock?: Clock;
  readonly timers?: Timers;
  readonly counters?: CodecCounters;
  readonly logger?: Logger;
  readonly onReady?: (session: UpstreamSession) => void;
  readonly onDifficulty?: (difficulty: number) => void;
  readonly onJob?: (job: Job) => void;
  readonly onExtranonce?: (extranonce1: string, extranonce2Size: number) => void;
  readonly onVersionMask?: (mask: string | null) => void;
  /** An allowed client.reconnect: the owner closes this session and dials `upstream`. */
  readonly onReconnect?: (upstream: Upstream, waitMs: number) => void;
  readonly onRefused?: (refused: RefusedReconnect) => void;
  readonly onClose?: (reason: SessionEndReason, error?: Error) => void;
}

export const UPSTREAM_DEFAULTS = Object.freeze({
  password: "x",
  versionRollingMask: "1fffe000",
  versionRollingMinBitCount: 2,
  handshakeTimeoutMs: 15_000,
  configureTimeoutMs: 5_000,
  submitTimeoutMs: 30_000,
  maxReconnectWaitMs: 60_000,
  /** The upstream carries many miners' shares: more may be in flight than for one ASIC. */
  limits: { maxPendingOut: 4096, idleTimeoutMs: 120_000 } satisfies Partial<CodecLimits>,
});

/** Messages a pool sends without expecting an answer, even when it puts an id on them. */
const POOL_NOTIFICATIONS: ReadonlySet<string> = new Set([
  "mining.notify",
  "mining.set_difficulty",
  "mining.set_extranonce",
  "mining.set_version_mask",
  "client.show_message",
]);

const MAX_JOBS = 32;
const MAX_BRANCH = 32;
const HEX8 = /^[0-9a-fA-F]{8}$/;
const HEX64 = /^[0-9a-fA-F]{64}$/;
const HEX = /^(?:[0-9a-fA-F]{2})*$/;

export function agentString(version: string): string {
  return `agentd/${version}`;
}

export class UpstreamSession {
  readonly upstream: Upstream;
  readonly endpoint: Endpoint;
  readonly #o: SessionOptions;
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #agent: string;
  readonly #requestedMask: number;

  #status: SessionStatus = "connecting";
  #socket: Socket | null = null;
  #conn: JsonRpcConnection | null = null;
  #handshakeTimer: TimerHandle | null = null;
  #endReason: SessionEndReason | null = null;
  #readyAt: number | null = null;

  #difficulty = 1;
  #difficultySet = false;
  #extranonce1 = "";
  #extranonce2Size = 0;
  #versionMask: string | null = null;
  #jobs = new Map<string, Job>();
  #lastJob: Job | null = null;

  constructor(options: SessionOptions) {
    const endpoint = parseV1Url(options.upstream.url);
    // The pool filters its list: reaching this is a bug, not a policy problem.
    if (endpoint === null) {
      throw fail("AGENTD_E_INTERNAL", "not a Stratum V1 upstream URL", {
        url: options.upstream.url,
      });
    }
    this.upstream = options.upstream;
    this.endpoint = endpoint;
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#timers = options.timers ?? systemTimers;
    this.#agent = agentString(options.agentVersion);
    this.#requestedMask = parseMask(
      options.versionRollingMask ?? UPSTREAM_DEFAULTS.versionRollingMask,
    );
  }

  get url(): string {
    return this.upstream.url;
  }
  get status(): SessionStatus {
    return this.#status;
  }
  get readyAt(): number | null {
    return this.#readyAt;
  }
  get endReason(): SessionEndReason | null {
    return this.#endReason;
  }
  get difficulty(): number {
    return this.#difficulty;
  }
  /** Whether the pool has sent set_difficulty (otherwise the Stratum default 1 applies). */
  get difficultySet(): boolean {
    return this.#difficultySet;
  }
  get extranonce1(): string {
    return this.#extranonce1;
  }
  get extranonce2Size(): number {
    return this.#extranonce2Size;
  }
  /** The negotiated mask (8 hex), or null without version rolling. */
  get versionMask(): string | null {
    return this.#versionMask;
  }
  get lastJob(): Job | null {
    return this.#lastJob;
  }
  get connection(): JsonRpcConnection | null {
    return this.#conn;
  }

  job(jobId: string): Job | undefined {
    return this.#jobs.get(jobId);
  }

  /** The difficulty shares for this job are judged by; undefined for an unknown or stale job. */
  difficultyForJob(jobId: string): number | undefined {
    return this.#jobs.get(jobId)?.difficulty;
  }

  start(): void {
    if (this.#socket !== null || this.#status === "closed") return;
    const { scheme, host, port } = this.endpoint;
    const timeout = this.#o.handshakeTimeoutMs ?? UPSTREAM_DEFAULTS.handshakeTimeoutMs;
    this.#handshakeTimer = this.#timers.setTimeout(() => {
      this.#handshakeTimer = null;
      this.#end("handshake_timeout");
    }, timeout);
    let socket: Socket;
    let connectEvent: "connect" | "secureConnect";
    if (scheme === "stratum+ssl") {
      const options: TlsOptions = { host, port, rejectUnauthorized: true };
      if (isIP(host) === 0) options.servername = host;
      const ca = this.#o.tls?.ca;
      if (ca !== undefined) options.ca = ca as string | Buffer | (string | Buffer)[];
      socket = tlsConnect(options);
      connectEvent = "secureConnect";
    } else {
      socket = netConnect({ host, port });
      connectEvent = "connect";
    }
    this.#socket = socket;
    const onError = (e: Error) => this.#end("connect_failed", e);
    const onClose = () => this.#end("connect_failed");
    socket.once("error", onError);
    socket.once("close", onClose);
    socket.once(connectEvent, () => {
      // From here the codec owns the socket's errors and close.
      socket.off("error", onError);
      socket.off("close", onClose);
      if (this.#status === "closed") return;
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 30_000);
      this.#status = "handshaking";
      this.#conn = new JsonRpcConnection(socket, this.#connectionOptions());
      this.#handshake().catch((e: unknown) => {
        const error = e instanceof Error ? e : new Error(String(e));
        this.#end("handshake_failed", error);
      });
    });
  }

  /** Ends the session at once (policy enforcement cannot wait for a flush). */
  close(reason: SessionEndReason = "local"): void {
    this.#end(reason);
  }

  /**
   * Forwards one share as the policy user. `worker` is the local miner's name, used only in
   * logs: the upstream never sees a name the owner did not consent to.
   */
  async submit(
    worker: string,
    jobId: string,
    extranonce2: string,
    ntime: string,
    nonce: string,
    versionBits?: string,
  ): Promise<SubmitResult> {
    const conn = this.#conn;
    if (this.#status !== "ready" || conn === null) return unanswered("not_connected");
    const params = [this.upstream.user, jobId, extranonce2, ntime, nonce];
    if (versionBits !== undefined) params.push(versionBits);
    let reply: RpcReply;
    try {
      reply = await conn.send("mining.submit", params, {
        timeoutMs: this.#o.submitTimeoutMs ?? UPSTREAM_DEFAULTS.submitTimeoutMs,
      });
    } catch (e) {
      return unanswered(requestFailure(e) ?? "closed");
    }
    const result = parseSubmitReply(reply);
    if (!result.accepted) {
      this.#o.logger?.debug(
        { worker, jobId, reason: result.reason, code: result.code },
        "share rejected upstream",
      );
    }
    return result;
  }

  // ---- handshake ----------------------------------------------------------------------------

  #connectionOptions() {
    const o = this.#o;
    return {
      limits: { ...UPSTREAM_DEFAULTS.limits, ...o.limits },
      clock: this.#clock,
      notificationMethods: POOL_NOTIFICATIONS,
      ...(o.timers === undefined ? {} : { timers: o.timers }),
      ...(o.counters === undefined ? {} : { counters: o.counters }),
      ...(o.logger === undefined ? {} : { logger: o.logger }),
      onRequest: (r: { id: RpcId; method: string; params: unknown }) =>
        this.#message(r.method, r.params, r.id),
      onNotification: (method: string, params: unknown) => this.#message(method, params, null),
      onClose: (reason: CloseReason, error?: Error) => this.#end(reason, error),
    };
  }

  async #handshake(): Promise<void> {
    const conn = this.#conn as JsonRpcConnection;
    const o = this.#o;
    const mask = hex8(this.#requestedMask);
    try {
      const configure = await conn.send(
        "mining.configure",
        [
          ["version-rolling"],
          {
            "version-rolling.mask": mask,
            "version-rolling.min-bit-count":
              o.versionRollingMinBitCount ?? UPSTREAM_DEFAULTS.versionRollingMinBitCount,
          },
        ],
        { timeoutMs: o.configureTimeoutMs ?? UPSTREAM_DEFAULTS.configureTimeoutMs },
      );
      this.#versionMask = this.#negotiatedMask(configure);
    } catch (e) {
      // No answer: a pool without BIP 310. A closed connection is the caller's business.
      if (requestFailure(e) !== "timeout") throw e;
    }

    const subscribe = await conn.send("mining.subscribe", [this.#agent]);
    const sub = parseSubscribe(subscribe);
    if (sub === null) throw new Error(`subscribe refused: ${describe(subscribe)}`);
    this.#extranonce1 = sub.extranonce1;
    this.#extranonce2Size = sub.extranonce2Size;

    // Pipelined: many pools answer it with an error or never; either is fine.
    conn.send("mining.extranonce.subscribe", []).catch(() => {});

    const auth = await conn.send("mining.authorize", [
      this.upstream.user,
      o.password ?? UPSTREAM_DEFAULTS.password,
    ]);
    if (this.#status === "closed") return;
    if (auth.result !== true || (auth.error !== null && auth.error !== undefined)) {
      o.logger?.warn({ url: this.url, reply: describe(auth) }, "upstream refused authorize");
      return this.#end("unauthorized");
    }
    this.#clearHandshakeTimer();
    this.#status = "ready";
    this.#readyAt = this.#clock.now();
    o.onReady?.(this);
  }

  #negotiatedMask(reply: RpcReply): string | null {
    const r = reply.result;
    if (reply.error !== null || typeof r !== "object" || r === null) return null;
    const m = r as Record<string, unknown>;
    if (m["version-rolling"] !== true) return null;
    const given = m["version-rolling.mask"];
    if (typeof given !== "string" || !HEX8.test(given)) return null;
    // The pool should already have ANDed; we never roll bits we did not ask for either.
    return hex8(parseMask(given) & this.#requestedMask);
  }

  // ---- messages from the pool ---------------------------------------------------------------

  #message(method: string, params: unknown, id: RpcId | null): void {
    const conn = this.#conn;
    if (conn === null || this.#status === "closed") return;
    const p = Array.isArray(params) ? params : [];
    switch (method) {
      case "mining.set_difficulty":
        this.#setDifficulty(p[0]);
        return;
      case "mining.notify":
        this.#notify(p);
        return;
      case "mining.set_extranonce":
        this.#setExtranonce(p[0], p[1]);
        return;
      case "mining.set_version_mask":
        this.#setVersionMask(p[0]);
        return;
      case "client.reconnect":
        this.#reconnect(params, id);
        return;
      case "mining.ping":
        if (id !== null) conn.reply(id, "pong");
        return;
      case "client.get_version":
        if (id !== null) conn.reply(id, this.#agent);
        return;
      case "client.show_message":
        this.#o.logger?.info({ url: this.url, message: describe(p[0]) }, "upstream message");
        return;
      default:
        if (id !== null) conn.reply(id, null, [20, "method not supported", null]);
    }
  }

  #setDifficulty(v: unknown): void {
    const d = typeof v === "string" ? Number(v) : v;
    if (typeof d !== "number" || !Number.isFinite(d) || d <= 0) {
      this.#bad("set_difficulty", v);
      return;
    }
    this.#difficulty = d;
    this.#difficultySet = true;
    // Applies to the jobs that follow, not to those already issued (PROTOCOLS.md).
    if (this.#status === "ready") this.#o.onDifficulty?.(d);
  }

  #notify(p: readonly unknown[]): void {
    const [jobId, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean] = p;
    if (
      typeof jobId !== "string" ||
      jobId.length === 0 ||
      jobId.length > 64 ||
      !isHex(prevhash, HEX64) ||
      !isHex(coinb1, HEX) ||
      !isHex(coinb2, HEX) ||
      !Array.isArray(branch) ||
      branch.length > MAX_BRANCH ||
      !branch.every((b) => isHex(b, HEX64)) ||
      !isHex(version, HEX8) ||
      !isHex(nbits, HEX8) ||
      !isHex(ntime, HEX8) ||
      typeof clean !== "boolean"
    ) {
      this.#bad("notify", jobId);
      return;
    }
    const job: Job = Object.freeze({
      jobId,
      prevhash,
      coinb1,
      coinb2,
      merkleBranch: Object.freeze([...(branch as string[])]),
      version,
      nbits,
      ntime,
      cleanJobs: clean,
      difficulty: this.#difficulty,
      extranonce1: this.#extranonce1,
      extranonce2Size: this.#extranonce2Size,
      receivedAt: this.#clock.now(),
    });
    // After a clean job the pool rejects older ones as stale: forget them.
    if (clean) this.#jobs.clear();
    this.#jobs.delete(jobId);
    this.#jobs.set(jobId, job);
    while (this.#jobs.size > MAX_JOBS) {
      const oldest = this.#jobs.keys().next().value as string;
      this.#jobs.delete(oldest);
    }
    this.#lastJob = job;
    if (this.#status === "ready") this.#o.onJob?.(job);
  }

  #setExtranonce(en1: unknown, size: unknown): void {
    const s = parseExtranonce(en1, size);
    if (s === null) {
      this.#bad("set_extranonce", en1);
      return;
    }
    this.#extranonce1 = s.extranonce1;
    this.#extranonce2Size = s.extranonce2Size;
    if (this.#status === "ready") this.#o.onExtranonce?.(s.extranonce1, s.extranonce2Size);
  }

  #setVersionMask(v: unknown): void {
    if (!isHex(v, HEX8)) {
      this.#bad("set_version_mask", v);
      return;
    }
    this.#versionMask = hex8(parseMask(v) & this.#requestedMask);
    if (this.#status === "ready") this.#o.onVersionMask?.(this.#versionMask);
  }

  #reconnect(params: unknown, id: RpcId | null): void {
    const conn = this.#conn as JsonRpcConnection;
    const target = reconnectTarget(this.endpoint, params);
    if (target === null) {
      const raw = describe(params);
      this.#o.logger?.warn({ url: this.url, target: raw }, "refused an invalid client.reconnect");
      if (id !== null) conn.reply(id, false, [20, "invalid reconnect target", null]);
      this.#o.onRefused?.({ reason: "invalid_target", target: raw });
      return;
    }
    const url = endpointUrl(target);
    const upstream = this.#o.resolveTarget(target);
    if (upstream === null) {
      this.#o.logger?.warn(
        { url: this.url, target: url },
        "refused client.reconnect outside the policy",
      );
      if (id !== null) conn.reply(id, false, [20, "reconnect target not allowed", null]);
      this.#o.onRefused?.({ reason: "not_allowed", target: url });
      return;
    }
    const wait = Array.isArray(params) ? Number(params[2] ?? 0) : 0;
    const max = this.#o.maxReconnectWaitMs ?? UPSTREAM_DEFAULTS.maxReconnectWaitMs;
    const waitMs = Number.isFinite(wait) && wait > 0 ? Math.min(wait * 1000, max) : 0;
    if (id !== null) conn.reply(id, true);
    this.#o.onReconnect?.(upstream, waitMs);
  }

  #bad(what: string, value: unknown): void {
    this.#o.logger?.warn(
      { url: this.url, what, value: describe(value) },
      "ignored a malformed upstream message",
    );
  }

  // ---- end ----------------------------------------------------------------------------------

  #end(reason: SessionEndReason, error?: Error): void {
    if (this.#status === "closed") return;
    this.#status = "closed";
    this.#endReason = reason;
    this.#clearHandshakeTimer();
    if (this.#conn !== null) this.#conn.close("local");
    else this.#socket?.destroy();
    this.#o.onClose?.(reason, error);
  }

  #clearHandshakeTimer(): void {
    if (this.#handshakeTimer !== null) this.#timers.clearTimeout(this.#handshakeTimer);
    this.#handshakeTimer = null;
  }
}

// ---- parsing helpers --------------------------------------------------------------------------

function parseSubscribe(reply: RpcReply): { extranonce1: string; extranonce2Size: number } | null {
  if (reply.error !== null || !Array.isArray(reply.result)) return null;
  return parseExtranonce(reply.result[1], reply.result[2]);
}

function parseExtranonce(
  en1: unknown,
  size: unknown,
): { extranonce1: string; extranonce2Size: number } | null {
  if (!isHex(en1, HEX) || en1.length > 64) return null;
  if (typeof size !== "number" || !Number.isInteger(size) || size < 1 || size > 16) return null;
  return { extranonce1: en1.toLowerCase(), extranonce2Size: size };
}

function isHex(v: unknown, pattern: RegExp): v is string {
  return typeof v === "string" && pattern.test(v);
}

function parseMask(hex: string): number {
  return Number.parseInt(hex, 16) >>> 0;
}

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}

/** Peer data for a log line: bounded. */
function describe(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 200 ? `${s.slice(0, 197)}...` : s;
}
