import type { Clock } from "../lib/clock.ts";
import type { Metric, Registry } from "../lib/metrics/registry.ts";
import type { ShareOutcome } from "./miner.ts";
import type { SubmitResult } from "./rejects.ts";

/**
 * Per-worker counts (accepted, rejected by reason, stale), difficulty-weighted share sums,
 * an estimated hashrate, upstream state and latencies; exported as Prometheus metrics when a
 * registry is given, with per-worker series capped (the rest fold into `worker="_other"`).
 *
 * Only a worker the miner authorized on its connection gets numbers of its own: a submit under
 * any other name counts in the totals and under `worker="_unauthorized"`, so strings a client
 * makes up can neither fill the series (pushing real workers into `_other`) nor reach a
 * label. A worker's label is its name in a fixed alphabet and length (workerLabel).
 */

export interface WorkerStats {
  accepted: number;
  rejected: Record<string, number>;
  stale: number;
  /** Sum of the difficulties of accepted shares. */
  difficultySum: number;
  firstShareAt: number;
  lastShareAt: number;
}

/** The label of submits under a name not authorized on their connection. */
export const UNAUTHORIZED_LABEL = "_unauthorized";
/** Longest worker label; names are at most 128 characters (miner.ts), labels stay readable. */
export const MAX_LABEL_LENGTH = 64;

/**
 * A worker name as a metric label: A–Z a–z 0–9 . _ - only (anything else becomes `_`), at most
 * MAX_LABEL_LENGTH characters, never starting with `_` (a leading one becomes `-`), so that no
 * name can pass for the labels the proxy and the registry reserve (`_other`, `_unauthorized`).
 */
export function workerLabel(name: string): string {
  const safe = name.slice(0, MAX_LABEL_LENGTH).replace(/[^A-Za-z0-9._-]/g, "_");
  if (safe === "") return "-";
  return safe.startsWith("_") ? `-${safe.slice(1)}` : safe;
}

const REASON_BY_CODE: Record<number, string> = {
  20: "invalid",
  21: "stale",
  22: "duplicate",
  23: "low_difficulty",
  24: "unauthorized",
  25: "not_subscribed",
};

export class ProxyAccounting {
  readonly workers = new Map<string, WorkerStats>();
  readonly maxWorkers: number;
  totals = {
    accepted: 0,
    rejected: 0,
    forwarded: 0,
    forwardAccepted: 0,
    forwardRejected: 0,
    blocks: 0,
    /** Sum of the difficulties of all accepted shares (every worker, also past the cap). */
    difficulty: 0,
  };
  allowed = false;
  readonly #m: Record<string, Metric> | null;
  readonly #clock: Clock;

  constructor(registry: Registry | undefined, maxWorkerSeries: number, clock: Clock) {
    this.#clock = clock;
    this.maxWorkers = Math.max(maxWorkerSeries, 1) * 10;
    this.#m =
      registry === undefined
        ? null
        : {
            shares: registry.counter(
              "agentd_stratum_shares_total",
              "Shares from miners by worker and result.",
              ["worker", "result"],
              maxWorkerSeries,
            ),
            difficulty: registry.counter(
              "agentd_stratum_share_difficulty_total",
              "Sum of the difficulty of accepted shares, by worker.",
              ["worker"],
              maxWorkerSeries,
            ),
            forwarded: registry.counter(
              "agentd_stratum_forwarded_shares_total",
              "Shares forwarded upstream, by upstream result.",
              ["result"],
            ),
            blocks: registry.counter(
              "agentd_stratum_block_candidates_total",
              "Shares meeting the network target.",
            ),
            miners: registry.gauge("agentd_stratum_miners", "Connected miners."),
            allowed: registry.gauge(
              "agentd_stratum_mining_allowed",
              "1 while the policy allows mining.",
            ),
            upstreamUp: registry.gauge(
              "agentd_stratum_upstream_up",
              "1 while an upstream session is ready.",
              ["lane"],
            ),
            refused: registry.counter(
              "agentd_stratum_connections_refused_total",
              "Miner connections refused, by reason.",
              ["reason"],
            ),
            closed: registry.counter(
              "agentd_stratum_connections_closed_total",
              "Miner connections closed for breaking a bound, or gone before they were identified, by reason.",
              ["reason"],
            ),
            reconnectRefused: registry.counter(
              "agentd_stratum_reconnects_refused_total",
              "client.reconnect targets refused because the policy does not list them.",
            ),
            forwardLatency: registry.histogram(
              "agentd_stratum_forward_added_seconds",
              "Time from a miner's submit arriving to its forward being written upstream.",
              [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05],
            ),
            upstreamLatency: registry.histogram(
              "agentd_stratum_upstream_reply_seconds",
              "Time from forwarding a share to the upstream's answer.",
              [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5],
            ),
            fanOut: registry.histogram(
              "agentd_stratum_notify_fanout_seconds",
              "Time to send a new job to every miner.",
              [0.001, 0.005, 0.01, 0.05, 0.1, 0.5],
            ),
          };
  }

  #worker(name: string, now: number): WorkerStats | undefined {
    let w = this.workers.get(name);
    if (w === undefined) {
      if (this.workers.size >= this.maxWorkers) return undefined; // bounded memory
      w = {
        accepted: 0,
        rejected: {},
        stale: 0,
        difficultySum: 0,
        firstShareAt: now,
        lastShareAt: now,
      };
      this.workers.set(name, w);
    }
    return w;
  }

  share(s: ShareOutcome): void {
    const now = this.#clock.now();
    const w = s.authorized ? this.#worker(s.worker, now) : undefined;
    const label = s.authorized ? workerLabel(s.worker) : UNAUTHORIZED_LABEL;
    if (s.accepted) {
      this.totals.accepted++;
      this.totals.difficulty += s.difficulty;
      if (w !== undefined) {
        w.accepted++;
        w.difficultySum += s.difficulty;
        w.lastShareAt = now;
      }
      this.#m?.shares?.inc({ worker: label, result: "accepted" });
      this.#m?.difficulty?.inc({ worker: label }, s.difficulty);
      if (s.isBlock === true) {
        this.totals.blocks++;
        this.#m?.blocks?.inc();
      }
      return;
    }
    this.totals.rejected++;
    const reason = REASON_BY_CODE[s.code ?? 20] ?? "invalid";
    if (w !== undefined) {
      if (reason === "stale") w.stale++;
      w.rejected[reason] = (w.rejected[reason] ?? 0) + 1;
    }
    this.#m?.shares?.inc({ worker: label, result: reason });
  }

  /** Estimated hashrate of a worker in H/s: accepted difficulty × 2^32 over the time seen. */
  hashrate(worker: string, now = this.#clock.now()): number {
    const w = this.workers.get(worker);
    if (w === undefined) return 0;
    const seconds = Math.max(1, (now - w.firstShareAt) / 1000);
    return (w.difficultySum * 2 ** 32) / seconds;
  }

  forwardStarted(_s: ShareOutcome, addedSeconds: number): void {
    this.totals.forwarded++;
    this.#m?.forwardLatency?.observe({}, addedSeconds);
  }

  forwarded(_s: ShareOutcome, r: SubmitResult, seconds: number): void {
    if (r.accepted) this.totals.forwardAccepted++;
    else this.totals.forwardRejected++;
    this.#m?.forwarded?.inc({
      result: r.accepted ? "accepted" : r.answered ? "rejected" : "unanswered",
    });
    if (r.answered) this.#m?.upstreamLatency?.observe({}, seconds);
  }

  fanOut(_miners: number, seconds: number): void {
    this.#m?.fanOut?.observe({}, seconds);
  }

  minerCount(n: number): void {
    this.#m?.miners?.set({}, n);
  }

  setAllowed(allowed: boolean): void {
    this.allowed = allowed;
    this.#m?.allowed?.set({}, allowed ? 1 : 0);
  }

  upstreamUp(lane: number, _url: string): void {
    this.#m?.upstreamUp?.set({ lane: String(lane) }, 1);
  }

  upstreamDown(lane: number, _reason: string): void {
    this.#m?.upstreamUp?.set({ lane: String(lane) }, 0);
  }

  connectionRefused(reason: "network" | "ip_cap"): void {
    this.#m?.refused?.inc({ reason });
  }

  /** `reason`: a close reason of codec.ts, or `closed_before_identified` (a fixed few). */
  connectionClosed(reason: string): void {
    this.#m?.closed?.inc({ reason });
  }

  reconnectRefused(): void {
    this.#m?.reconnectRefused?.inc();
  }
}
