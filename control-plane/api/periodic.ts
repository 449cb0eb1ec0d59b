import type { TimerHandle, Timers } from "../../lib/timers.ts";

/**
 * Background work on a timer (the re-issue of publications, maintenance): a tick every
 * `intervalMs`, never overlapping itself (the next is scheduled when one has finished), the
 * first delayed by a random part of the interval so that instances started together do not
 * tick in step. A failed tick is reported and the next one comes as usual. `stop` cancels the
 * pending tick and waits for a running one.
 */
export interface PeriodicOptions {
  readonly timers: Timers;
  readonly intervalMs: number;
  /** In [0, 1): the first tick's delay as a fraction of the interval. */
  readonly random: () => number;
  readonly tick: () => Promise<unknown>;
  readonly onError: (err: unknown) => void;
}

export interface Periodic {
  start(): void;
  stop(): Promise<void>;
}

export function periodic(o: PeriodicOptions): Periodic {
  let timer: TimerHandle;
  let running: Promise<unknown> | undefined;
  let stopped = true;

  function schedule(delayMs: number): void {
    if (stopped) return;
    timer = o.timers.setTimeout(() => {
      timer = undefined;
      running = o
        .tick()
        .catch(o.onError)
        .finally(() => {
          running = undefined;
          schedule(o.intervalMs);
        });
    }, delayMs);
  }

  return {
    start() {
      if (!stopped) return;
      stopped = false;
      schedule(Math.floor(o.random() * o.intervalMs));
    },
    async stop() {
      stopped = true;
      if (timer !== undefined) o.timers.clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}
