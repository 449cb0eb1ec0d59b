import type { HeartbeatBody } from "../control-plane/protocol/documents/heartbeat.ts";
import { isRefusal } from "../control-plane/protocol/refusal.ts";
import type { HeartbeatResponse } from "../control-plane/protocol/schemas/api-worker.ts";
import { isAgentdError } from "../lib/errors.ts";
import type { TimerHandle, Timers } from "../lib/timers.ts";
import type { HeartbeatCounter } from "./heartbeat-counter.ts";

/**
 * Signed heartbeats (docs/protocol.md, "Heartbeats"), every `intervalMs` (default 30 s).
 *
 * Each beat takes a snapshot of what the agent reports and the next counter, and joins a
 * queue; the queue is sent in order, one heartbeat at a time, each signed when it is sent (the
 * control plane refuses an `iat` more than 60 s away from its clock, so a heartbeat held while
 * offline is signed anew, its counter and its snapshot unchanged). While the control plane
 * cannot be reached the queue is kept, bounded (default 120: an hour at the default interval;
 * the oldest go first, counted), and retried with exponential backoff and jitter; on reconnect
 * the backlog goes out oldest first.
 *
 * Answers: 200 hands the reply (pending command ids, the latest policy version) to `onReply`.
 * 409 AGENTD_E_CP_REPLAY means the control plane holds a higher counter than this one — the
 * state directory was restored from an older backup while the clock was behind, or the key is
 * cloned — so the counter moves to its next epoch (durably) and the snapshot is sent again
 * with a fresh counter; `onReplay` is told (the agent audits it). 401 means the session is
 * over: `reauthenticate` runs (attestation again) before the next try. Any other refusal
 * (4xx) drops that heartbeat, reported through `onRefused`, so that one bad document cannot
 * block the queue.
 */

export interface HeartbeatSenderOptions {
  /** Signs a body as of now (the machine key; control-plane/protocol/documents/heartbeat.ts signHeartbeat). */
  readonly sign: (body: HeartbeatBody) => string;
  /** Sends a signed heartbeat (protocol client: MachineClient.sendHeartbeat). */
  readonly send: (jws: string) => Promise<HeartbeatResponse>;
  readonly counter: HeartbeatCounter;
  /** What the agent reports now: state, decision, telemetry, services, audit head… */
  readonly snapshot: () => Omit<HeartbeatBody, "counter">;
  readonly timers: Timers;
  readonly intervalMs?: number;
  readonly maxQueue?: number;
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  readonly random?: () => number;
  readonly onReply?: (reply: HeartbeatResponse) => void;
  readonly onReplay?: (counter: number) => void;
  readonly onRefused?: (counter: number, err: unknown) => void;
  /** After a 401: obtains a new access token (attests again); its failure is retried later. */
  readonly reauthenticate?: () => Promise<void>;
}

export interface HeartbeatSender {
  /** Queues one heartbeat now (the timer calls this every interval). */
  beat(): void;
  /**
   * Sends the queue, oldest first; resolves when it is empty, or when a try failed (the
   * retry is then scheduled with backoff). One flush at a time: a second call joins it.
   */
  flush(): Promise<void>;
  start(): void;
  stop(): Promise<void>;
  stats(): SenderStats;
}

export interface SenderStats {
  readonly queued: number;
  readonly sent: number;
  readonly dropped: number;
  readonly replays: number;
  readonly refused: number;
  readonly failures: number;
  /** Consecutive failed tries now (0: the last try went through). */
  readonly failing: number;
}

const MAX_REPLAYS_PER_FLUSH = 3;

interface Queued {
  counter: number;
  readonly body: Omit<HeartbeatBody, "counter">;
}

export function createHeartbeatSender(o: HeartbeatSenderOptions): HeartbeatSender {
  const intervalMs = o.intervalMs ?? 30_000;
  const maxQueue = o.maxQueue ?? 120;
  const minMs = o.backoffMinMs ?? 1000;
  const maxMs = Math.max(minMs, o.backoffMaxMs ?? 60_000);
  const random = o.random ?? Math.random;
  const queue: Queued[] = [];
  const stats = { sent: 0, dropped: 0, replays: 0, refused: 0, failures: 0, failing: 0 };
  let flushing: Promise<void> | undefined;
  let beatTimer: TimerHandle | undefined;
  let retryTimer: TimerHandle | undefined;
  let running = false;
  let stopping = false;

  const beat = () => {
    queue.push({ counter: o.counter.next(), body: o.snapshot() });
    while (queue.length > maxQueue) {
      // The oldest goes, unless it is being sent right now: then the one after it.
      queue.splice(flushing === undefined ? 0 : 1, 1);
      stats.dropped++;
    }
  };

  /** One try of the head of the queue: true when the queue may go on at once. */
  const sendHead = async (): Promise<boolean> => {
    const head = queue[0] as Queued;
    try {
      const reply = await o.send(o.sign({ counter: head.counter, ...head.body }));
      queue.shift();
      stats.sent++;
      stats.failing = 0;
      o.onReply?.(reply);
      return true;
    } catch (err) {
      if (isAgentdError(err) && err.code === "AGENTD_E_CP_REPLAY") {
        stats.replays++;
        o.onReplay?.(head.counter);
        o.counter.advancePast(head.counter);
        // The same snapshot again, with a counter above the old epoch, and above every
        // counter still queued behind it: they move on too, keeping their order.
        for (const q of queue) q.counter = o.counter.next();
        return true;
      }
      if (isAgentdError(err) && err.code === "AGENTD_E_CP_UNAUTHENTICATED") {
        stats.failures++;
        stats.failing++;
        try {
          await o.reauthenticate?.();
        } catch {
          // retried with backoff like any other failure
        }
        return false;
      }
      if (isRefusal(err)) {
        queue.shift();
        stats.refused++;
        o.onRefused?.(head.counter, err);
        return true;
      }
      stats.failures++;
      stats.failing++;
      return false;
    }
  };

  const scheduleRetry = () => {
    if (!running || retryTimer !== undefined) return;
    const base = Math.min(maxMs, minMs * 2 ** Math.min(stats.failing - 1, 20));
    retryTimer = o.timers.setTimeout(
      () => {
        retryTimer = undefined;
        void flush();
      },
      Math.round(base * (0.5 + random() / 2)),
    );
  };

  const flush = (): Promise<void> => {
    if (queue.length === 0) return flushing ?? Promise.resolve();
    flushing ??= (async () => {
      const replaysBefore = stats.replays;
      try {
        // Once stopped, what is in hand is finished and the rest stays queued.
        while (queue.length > 0 && (running || !stopping)) {
          // Replays again and again in one flush: something else is wrong (a clone racing
          // ahead); back off instead of spinning.
          const spinning = stats.replays - replaysBefore >= MAX_REPLAYS_PER_FLUSH;
          if (spinning || !(await sendHead())) {
            if (spinning) stats.failing++;
            scheduleRetry();
            return;
          }
        }
      } finally {
        flushing = undefined;
      }
    })();
    return flushing;
  };

  const scheduleBeat = () => {
    if (!running) return;
    beatTimer = o.timers.setTimeout(() => {
      beatTimer = undefined;
      beat();
      // While retries are pending the backoff decides when to send.
      if (stats.failing === 0) void flush();
      scheduleBeat();
    }, intervalMs);
  };

  return {
    beat,
    flush,
    start() {
      if (running) return;
      running = true;
      beat();
      void flush();
      scheduleBeat();
    },
    async stop() {
      running = false;
      stopping = true;
      for (const t of [beatTimer, retryTimer]) if (t !== undefined) o.timers.clearTimeout(t);
      beatTimer = undefined;
      retryTimer = undefined;
      await flushing;
    },
    stats: () => ({ queued: queue.length, ...stats }),
  };
}
