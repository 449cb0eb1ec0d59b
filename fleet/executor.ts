/**
 * Applies the planner's FleetActions to the miners through their drivers.
 *
 * Rules (the reasons are in the comments where they apply):
 * - One action per miner at a time; many miners at once, at most `concurrency` together.
 * - Each action ends confirmed (drivers resolve only once the firmware reads it back) or failed
 *   with its error code. A failed one stays pending and is retried after a capped exponential
 *   backoff (min·2^(n−1), up to max), until it is confirmed or superseded.
 *   AGENTD_E_MINER_UNSUPPORTED is final: the firmware has no such thing, retrying cannot help.
 * - Superseding: actions conflict by group — sleep/wake, power mode, power target, pools. A
 *   newer action replaces a waiting (queued or backing-off) one of its group, which ends
 *   `superseded`; one already sent cannot be called back, so it runs to its end and, if it
 *   fails, is not retried (`superseded`), the newer one following. The same action again (same
 *   kind and arguments: the planner repeats its plan every tick until a reading shows it) is a
 *   no-op, so a repeated plan never resets a backoff nor sends a write twice.
 * - A waiting action of one group never holds up another group's on the same miner: a pool
 *   write backing off must not delay a sleep.
 * - The pending list is written to the inventory when actions are submitted, before any is
 *   sent (one write for the whole plan), and rewritten as they end (attempts, removal), those
 *   writes coalesced to one per turn of the event loop: a revocation reaching a thousand
 *   miners is a few writes, not thousands. So a restart (`resume`) sends what was unconfirmed.
 *   A crash between a confirmation and the write that clears it sends it once more: every
 *   action is idempotent (sleeping a sleeping miner is confirmed by its first read-back).
 * - Each attempt first asks the miner who it is (`detect`, plugins/identity.ts): another machine
 *   at the adopted address (a DHCP lease handed on, a swapped unit) is never sent anything,
 *   even between two of the reader's rounds; nor is a miner the reader holds `blocked`. The
 *   attempt fails AGENTD_E_MINER_IDENTITY_CHANGED and is retried like any failure.
 * Every end is a `fleet.action` event for the audit log and the metrics: URLs and users of
 * pool slots, never their passwords.
 */
import type { Clock } from "../lib/clock.ts";
import { type AgentdError, isAgentdError } from "../lib/errors.ts";
import { canonicalize } from "../lib/json/canonical.ts";
import { nextTurn, type TimerHandle, type Timers } from "../lib/timers.ts";
import type { Confirmed, MinerDriver } from "../plugins/driver.ts";
import { assertSameMiner } from "../plugins/identity.ts";
import type { Pending, PendingStore } from "./inventory.ts";
import type { FleetAction, FleetMiner } from "./types.ts";

export type ActionResult = "confirmed" | "failed" | "superseded";

export interface FleetActionEvent {
  readonly type: "fleet.action";
  readonly miner: string;
  readonly kind: FleetAction["kind"];
  readonly why: string;
  readonly result: ActionResult;
  /** The error code of the last attempt (failed, or superseded after a failure). */
  readonly code?: string;
  readonly attempts: number;
  /** When failed: the backoff before the next attempt; absent when it will not be retried. */
  readonly retryInMs?: number;
  /** For `setPools`: what was asked, URLs and users only. */
  readonly slots?: readonly { readonly url: string; readonly user: string }[];
}

/** An action sent or waiting to be, for status and heartbeats ("unconfirmed actions"). */
export interface Unconfirmed {
  readonly miner: string;
  readonly kind: FleetAction["kind"];
  readonly since: number;
  readonly attempts: number;
  readonly lastCode: string | null;
}

export interface ExecutorOptions {
  readonly store: PendingStore;
  /** The adopted miner by id (undefined: forgotten, its actions are dropped). */
  readonly miner: (id: string) => FleetMiner | undefined;
  /** In production, the DriverHost's `driver(family, endpoint, credentials, limits)`. */
  readonly driverFor: (miner: FleetMiner) => MinerDriver;
  readonly clock: Clock;
  readonly timers: Timers;
  /** How many miners may have an action in flight at once (default 16). */
  readonly concurrency?: number;
  /** Retry backoff (default 5 s doubling up to 5 min). */
  readonly backoff?: { readonly minMs: number; readonly maxMs: number };
  /** Why this miner must not be acted on now (the reader's identity check), or null. */
  readonly blocked?: (id: string) => AgentdError | null;
  readonly onEvent?: (e: FleetActionEvent) => void;
  /** The pending list could not be written after an action ended (logged; retried next time). */
  readonly onWriteError?: (err: unknown) => void;
}

type Group = "power" | "mode" | "target" | "pools";

const GROUP: Readonly<Record<FleetAction["kind"], Group>> = {
  sleep: "power",
  wake: "power",
  setPowerMode: "mode",
  setPowerTarget: "target",
  setPools: "pools",
};

interface Entry {
  readonly seq: number;
  readonly action: FleetAction;
  readonly since: number;
  attempts: number;
  notBefore: number;
  lastCode: string | null;
  timer: TimerHandle | null;
  running: boolean;
  superseded: boolean;
}

interface MinerQueue {
  entries: Entry[];
  busy: boolean;
}

export class FleetExecutor {
  readonly #o: ExecutorOptions;
  readonly #limit: number;
  readonly #minMs: number;
  readonly #maxMs: number;
  readonly #queues = new Map<string, MinerQueue>();
  #active = 0;
  #seq: number;
  #closed = false;
  /** Miners whose pending list changed since the last write. */
  readonly #dirty = new Set<string>();
  #flushQueued = false;

  constructor(o: ExecutorOptions) {
    this.#o = o;
    this.#limit = Math.max(1, o.concurrency ?? 16);
    this.#minMs = o.backoff?.minMs ?? 5_000;
    this.#maxMs = o.backoff?.maxMs ?? 300_000;
    this.#seq = o.store.nextSeq();
  }

  /** Sends what the inventory says was pending when the agent stopped (attempts kept). */
  resume(): void {
    const now = this.#o.clock.now();
    for (const [id, list] of Object.entries(this.#o.store.allPending())) {
      const q = this.#queue(id);
      for (const p of list) {
        if (q.entries.some((e) => e.seq === p.seq)) continue;
        q.entries.push(entry(p.seq, p.action, p.since, p.attempts, now));
        this.#seq = Math.max(this.#seq, p.seq + 1);
      }
      q.entries.sort((a, b) => a.seq - b.seq);
    }
    this.#pump();
  }

  /**
   * Takes the planner's actions (repeats of pending ones are ignored). Throws, sending none of
   * them, when they cannot be written to the inventory (a full disk): an action not written
   * could be lost or repeated by a restart.
   */
  submit(actions: readonly FleetAction[]): void {
    if (this.#closed) return;
    const added: Entry[] = [];
    for (const action of actions) {
      const q = this.#queue(action.miner);
      const live = q.entries.filter((e) => !e.superseded);
      if (live.some((e) => sameAction(e.action, action))) continue;
      for (const e of live) {
        if (GROUP[e.action.kind] !== GROUP[action.kind]) continue;
        e.superseded = true;
        if (e.running) continue; // ends (and is reported) when its driver call returns
        this.#drop(q, e);
        this.#emit(e, "superseded");
      }
      const now = this.#o.clock.now();
      const e = entry(this.#seq++, action, now, 0, now);
      q.entries.push(e);
      added.push(e);
      this.#dirty.add(action.miner);
    }
    // Written before anything is sent: a restart from here resumes these.
    try {
      this.#flush();
    } catch (err) {
      for (const e of added) {
        const q = this.#queues.get(e.action.miner);
        if (q !== undefined) this.#drop(q, e);
      }
      throw err;
    }
    this.#pump();
  }

  /** The miner was forgotten: nothing more is sent to it (what is in flight still ends). */
  forget(id: string): void {
    const q = this.#queues.get(id);
    if (q === undefined) return;
    for (const e of q.entries) {
      e.superseded = true;
      if (e.timer !== null) this.#o.timers.clearTimeout(e.timer);
    }
    this.#queues.delete(id);
  }

  unconfirmed(): Unconfirmed[] {
    const out: Unconfirmed[] = [];
    for (const [miner, q] of this.#queues) {
      for (const e of q.entries) {
        if (e.superseded) continue;
        out.push({
          miner,
          kind: e.action.kind,
          since: e.since,
          attempts: e.attempts,
          lastCode: e.lastCode,
        });
      }
    }
    return out;
  }

  /** Stops retrying (what is in flight finishes; nothing new is sent). Pending stays written. */
  close(): void {
    this.#closed = true;
    this.#flushSafely();
    for (const q of this.#queues.values()) {
      for (const e of q.entries) if (e.timer !== null) this.#o.timers.clearTimeout(e.timer);
    }
  }

  #queue(id: string): MinerQueue {
    let q = this.#queues.get(id);
    if (q === undefined) {
      q = { entries: [], busy: false };
      this.#queues.set(id, q);
    }
    return q;
  }

  #pump(): void {
    if (this.#closed) return;
    const now = this.#o.clock.now();
    for (const [id, q] of this.#queues) {
      if (this.#active >= this.#limit) return;
      if (q.busy) continue;
      // Oldest first among those due: submission order within a miner (wake before the
      // power mode that follows it), a backing-off one skipped.
      const next = q.entries.find((e) => !e.superseded && e.notBefore <= now);
      if (next !== undefined) void this.#run(id, q, next);
    }
  }

  async #run(id: string, q: MinerQueue, e: Entry): Promise<void> {
    this.#active++;
    q.busy = true;
    e.running = true;
    e.attempts++;
    try {
      const miner = this.#o.miner(id);
      if (miner === undefined) {
        this.forget(id);
        return;
      }
      this.#changed(id); // its attempt count, for status after a restart
      let failure: unknown = null;
      try {
        const blocked = this.#o.blocked?.(id) ?? null;
        if (blocked !== null) throw blocked;
        const driver = this.#o.driverFor(miner);
        assertSameMiner(miner, await driver.detect());
        await call(driver, e.action);
      } catch (err) {
        failure = err;
      }
      e.running = false;
      if (failure === null) {
        this.#drop(q, e);
        this.#changed(id);
        this.#emit(e, "confirmed");
        return;
      }
      const code = isAgentdError(failure) ? failure.code : "AGENTD_E_INTERNAL";
      e.lastCode = code;
      if (e.superseded || code === "AGENTD_E_MINER_UNSUPPORTED" || this.#closed) {
        if (e.superseded || code === "AGENTD_E_MINER_UNSUPPORTED") this.#drop(q, e);
        this.#changed(id);
        this.#emit(e, e.superseded ? "superseded" : "failed", code);
        return;
      }
      const delay = Math.min(this.#maxMs, this.#minMs * 2 ** Math.min(e.attempts - 1, 30));
      e.notBefore = this.#o.clock.now() + delay;
      e.timer = this.#o.timers.setTimeout(() => {
        e.timer = null;
        this.#pump();
      }, delay);
      this.#changed(id); // its attempt count
      this.#emit(e, "failed", code, delay);
    } finally {
      e.running = false;
      q.busy = false;
      this.#active--;
      this.#pump();
    }
  }

  #drop(q: MinerQueue, e: Entry): void {
    if (e.timer !== null) this.#o.timers.clearTimeout(e.timer);
    e.timer = null;
    q.entries = q.entries.filter((x) => x !== e);
  }

  /** The pending list of `id` changed: written at the end of this turn, with the others. */
  #changed(id: string): void {
    this.#dirty.add(id);
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    nextTurn(() => this.#flushSafely());
  }

  /** Writes the changed lists; on failure they stay dirty for the next write, and it throws. */
  #flush(): void {
    this.#flushQueued = false;
    if (this.#dirty.size === 0) return;
    const lists: Record<string, Pending[]> = {};
    for (const id of this.#dirty) {
      lists[id] = (this.#queues.get(id)?.entries ?? [])
        .filter((e) => !e.superseded)
        .map((e) => ({ seq: e.seq, action: e.action, since: e.since, attempts: e.attempts }));
    }
    this.#o.store.setPending(lists);
    this.#dirty.clear();
  }

  /**
   * For the writes after an action ended: a failure there must not crash the agent, and costs
   * at most a repeat after a restart (a cleared action still written is resent, idempotent).
   */
  #flushSafely(): void {
    try {
      this.#flush();
    } catch (err) {
      this.#o.onWriteError?.(err);
    }
  }

  #emit(e: Entry, result: ActionResult, code?: string, retryInMs?: number): void {
    const a = e.action;
    this.#o.onEvent?.({
      type: "fleet.action",
      miner: a.miner,
      kind: a.kind,
      why: a.why,
      result,
      attempts: e.attempts,
      ...(code === undefined ? {} : { code }),
      ...(retryInMs === undefined ? {} : { retryInMs }),
      ...(a.kind === "setPools"
        ? { slots: a.slots.map((s) => ({ url: s.url, user: s.user })) }
        : {}),
    });
  }
}

function entry(
  seq: number,
  action: FleetAction,
  since: number,
  attempts: number,
  now: number,
): Entry {
  return {
    seq,
    action,
    since,
    attempts,
    notBefore: now,
    lastCode: null,
    timer: null,
    running: false,
    superseded: false,
  };
}

/** Same kind and arguments: `why` is the planner's wording and may change between ticks. */
function sameAction(a: FleetAction, b: FleetAction): boolean {
  const { why: _a, ...x } = a;
  const { why: _b, ...y } = b;
  // Canonical: an action read back from the inventory has its keys in another order.
  return canonicalize(x) === canonicalize(y);
}

function call(d: MinerDriver, a: FleetAction): Promise<Confirmed> {
  switch (a.kind) {
    case "sleep":
      return d.sleep();
    case "wake":
      return d.wake();
    case "setPools":
      return d.setPools(a.slots);
    case "setPowerMode":
      return d.setPowerMode(a.mode);
    case "setPowerTarget":
      return d.setPowerTarget(a.watts);
  }
}
