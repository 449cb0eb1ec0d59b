/**
 * Timers are injected like the clock (lib/clock.ts): the codec's watchdog, request timeouts
 * and the upstream pool's backoff go through this interface, so tests can record or fire
 * them by hand instead of waiting.
 */
export type TimerHandle = unknown;

export interface Timers {
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  setInterval(fn: () => void, ms: number): TimerHandle;
  clearInterval(handle: TimerHandle): void;
}

export const systemTimers: Timers = Object.freeze({
  setTimeout: (fn: () => void, ms: number): TimerHandle => setTimeout(fn, ms),
  clearTimeout: (handle: TimerHandle): void => {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
  setInterval: (fn: () => void, ms: number): TimerHandle => setInterval(fn, ms),
  clearInterval: (handle: TimerHandle): void => {
    clearInterval(handle as ReturnType<typeof setInterval>);
  },
});
