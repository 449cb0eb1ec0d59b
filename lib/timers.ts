import type { Clock } from "./clock.ts";

/**
 * The one time seam for waiting (lib/clock.ts is the one for reading the time). Every part
 * that waits takes a `Timers`; nothing outside `lib/` calls `setTimeout`, `setInterval`,
 * `setImmediate`, `Date.now`, `performance.now` or `AbortSignal.timeout` itself
 * (test/architecture.test.ts fails when something does). Production passes `systemTimers`
 * or `backgroundTimers`; tests pass `fakeTime(…).timers`, which fire when the test moves the
 * fake clock, so a test of "the grace ends after a day" takes no day and no sleep.
 */

/** Opaque: only the `Timers` that made it can clear it. */
export type TimerHandle = unknown;

export interface Timers {
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  setInterval(fn: () => void, ms: number): TimerHandle;
  clearInterval(handle: TimerHandle): void;
}

type NodeTimer = ReturnType<typeof globalThis.setTimeout>;

function nodeTimers(unref: boolean): Timers {
  const own = (t: NodeTimer): NodeTimer => (unref ? t.unref() : t);
  return Object.freeze({
    setTimeout: (fn: () => void, ms: number) => own(globalThis.setTimeout(fn, ms)),
    clearTimeout: (h: TimerHandle) => globalThis.clearTimeout(h as NodeTimer),
    setInterval: (fn: () => void, ms: number) => own(globalThis.setInterval(fn, ms)),
    clearInterval: (h: TimerHandle) => globalThis.clearInterval(h as NodeTimer),
  });
}

/** Node's timers: a pending one keeps the process alive (the CLI's waits, request deadlines). */
export const systemTimers: Timers = nodeTimers(false);

/**
 * Node's timers, unref'd: a pending one never keeps the process alive. For a daemon's
 * periodic work, whose lifetime its listeners own (the agent, the control plane), so that a
 * forgotten timer can never hold up an exit.
 */
export const backgroundTimers: Timers = nodeTimers(true);

/**
 * Resolves after `ms`, or at once when `signal` is (or becomes) aborted. Never rejects: the
 * caller checks `signal.aborted` afterwards.
 */
export function sleep(timers: Timers, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted === true) return resolve();
    const done = () => {
      timers.clearTimeout(handle);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const handle = timers.setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** An AbortSignal that aborts after `ms` on `timers` (AbortSignal.timeout on the seam). */
export function timeoutSignal(timers: Timers, ms: number): AbortSignal {
  const ac = new AbortController();
  timers.setTimeout(
    () => ac.abort(new DOMException(`timed out after ${ms} ms`, "TimeoutError")),
    ms,
  );
  return ac.signal;
}

/**
 * A timeout for one request: its signal aborts after `ms`, and `clear` cancels the timer once
 * the request is done, so that thousands of finished requests leave no timer behind (nor keep
 * a one-shot process alive for the rest of their timeout).
 */
export function requestDeadline(
  timers: Timers,
  ms: number,
): { signal: AbortSignal; clear(): void } {
  const ac = new AbortController();
  const handle = timers.setTimeout(
    () => ac.abort(new DOMException(`timed out after ${ms} ms`, "TimeoutError")),
    ms,
  );
  return { signal: ac.signal, clear: () => timers.clearTimeout(handle) };
}

/**
 * Runs `fn` after the current turn of the event loop (I/O callbacks first): for work split
 * into slices so that one large job does not starve sockets, and for batching what callers
 * submit within one turn. Not time: fake time does not hold it back.
 */
export function nextTurn(fn: () => void): void {
  globalThis.setImmediate(fn);
}

/**
 * A monotonic stopwatch for durations that become metrics (latencies): unaffected by clock
 * steps, and never a source of behaviour. Returns the seconds since it was started.
 */
export function stopwatch(): () => number {
  const t0 = process.hrtime.bigint();
  return () => Number(process.hrtime.bigint() - t0) / 1e9;
}

/**
 * Fake time: a wall clock and timers that fire only when the test moves time.
 *
 * Timers run on their own monotonic time, as Node's do: `advance` and `jump` move it (and the
 * wall clock with it); `clock.set` steps only the wall clock (an operator or NTP setting the
 * clock back or forward), which moves no timer, as on a real machine.
 */
export interface FakeTime {
  readonly clock: Clock & { set(epochMs: number): void; advance(ms: number): void };
  readonly timers: Timers;
  /** How many timers are pending. */
  pending(): number;
  /** The delays (ms from now) of the pending timers, soonest first. */
  delays(): number[];
  /**
   * Moves time forward by `ms`, firing every timer occurrence that falls due on the way, in
   * order (an interval fires once per period), with a turn of the event loop after each, so
   * that what a timer started (I/O, promises) can run before the next fires.
   */
  advance(ms: number): Promise<void>;
  /**
   * Moves time forward by `ms` at once, as a machine that was suspended: every timer due by
   * then fires once, in due order (an interval once, then again a period after the jump).
   */
  jump(ms: number): Promise<void>;
  /** Moves time to the next pending timer and fires it; its delay. Throws when none. */
  runNext(): Promise<number>;
}

interface FakeTimer {
  readonly id: number;
  at: number;
  readonly fn: () => void;
  /** The period of an interval; null for a timeout. */
  readonly every: number | null;
}

/** A bound on one advance: a timer that keeps re-arming itself at zero delay is a bug. */
const MAX_FIRES = 1_000_000;
const runaway = "fake time: timers keep falling due (a timer re-arming itself at zero delay?)";

export function fakeTime(startMs: number): FakeTime {
  let mono = 0;
  let wallShift = 0;
  let nextId = 1;
  const timers = new Map<number, FakeTimer>();

  const add = (fn: () => void, ms: number, every: number | null): number => {
    const id = nextId++;
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    timers.set(id, { id, at: mono + delay, fn, every });
    return id;
  };
  const clear = (h: TimerHandle) => {
    if (typeof h === "number") timers.delete(h);
  };
  const due = (by: number): FakeTimer | undefined => {
    let best: FakeTimer | undefined;
    for (const t of timers.values()) {
      if (t.at > by) continue;
      if (best === undefined || t.at < best.at || (t.at === best.at && t.id < best.id)) best = t;
    }
    return best;
  };
  const fire = (t: FakeTimer) => {
    if (t.every === null) timers.delete(t.id);
    else t.at = Math.max(t.at + Math.max(1, t.every), mono);
    t.fn();
  };
  const turn = () => new Promise<void>((r) => globalThis.setImmediate(r));

  const clock = {
    now: () => startMs + mono + wallShift,
    set: (epochMs: number) => {
      wallShift = epochMs - (startMs + mono);
    },
    advance: (ms: number) => {
      wallShift += ms;
    },
  };

  return {
    clock,
    timers: {
      setTimeout: (fn, ms) => add(fn, ms, null),
      clearTimeout: clear,
      setInterval: (fn, ms) => add(fn, ms, ms),
      clearInterval: clear,
    },
    pending: () => timers.size,
    delays: () => [...timers.values()].map((t) => t.at - mono).sort((a, b) => a - b),
    async advance(ms) {
      const target = mono + ms;
      let n = 0;
      for (let t = due(target); t !== undefined; t = due(target)) {
        if (++n > MAX_FIRES) throw new Error(runaway);
        mono = Math.max(mono, t.at);
        fire(t);
        await turn();
      }
      mono = target;
      await turn();
    },
    async jump(ms) {
      mono += ms;
      let n = 0;
      for (let t = due(mono); t !== undefined; t = due(mono)) {
        if (++n > MAX_FIRES) throw new Error(runaway);
        if (t.every !== null) t.at = mono; // the next period counts from the jump
        fire(t);
        await turn();
      }
      await turn();
    },
    async runNext() {
      let next: FakeTimer | undefined;
      for (const t of timers.values()) {
        if (next === undefined || t.at < next.at || (t.at === next.at && t.id < next.id)) next = t;
      }
      if (next === undefined) throw new Error("no timer is pending");
      const delay = next.at - mono;
      mono = Math.max(mono, next.at);
      fire(next);
      await turn();
      return delay;
    },
  };
}
