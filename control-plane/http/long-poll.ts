import { systemTimers, type Timers } from "../../lib/timers.ts";
import type { Notifier } from "./notifier.ts";

/**
 * Long polls (`Prefer: wait=N`, RFC 7240): answer at once if there is something new, else hold
 * the request until the notifier fires for the key and `check` finds something, the wait runs
 * out, or the request's signal aborts (client gone, server closing). Whatever ends the wait,
 * the subscription, the timer and the abort listener are removed.
 *
 * The subscription is made before the first `check`, so a change landing between the check
 * and the subscription is not lost. Notifications that arrive while a check runs cause one
 * more check, never overlapping ones.
 */

export const MAX_WAIT_SECONDS = 60;

/** The `wait` preference in whole seconds, capped; 0 when absent or malformed (ignored). */
export function preferWait(
  header: string | readonly string[] | undefined,
  maxSeconds = MAX_WAIT_SECONDS,
): number {
  if (header === undefined) return 0;
  const text = typeof header === "string" ? header : header.join(",");
  for (const pref of text.split(",")) {
    const m = /^\s*wait\s*=\s*"?(\d{1,9})"?\s*(?:;.*)?$/i.exec(pref);
    if (m !== null) return Math.min(Number(m[1]), maxSeconds);
  }
  return 0;
}

export interface LongPollOptions<T> {
  readonly key: string;
  readonly notifier: Notifier;
  readonly waitSeconds: number;
  readonly signal: AbortSignal;
  /** Something to answer with now, or `undefined` to keep waiting. */
  check(): Promise<T | undefined>;
  /** Default: systemTimers (a held request keeps its process alive, as its socket does). */
  readonly timers?: Timers;
}

/** The first value `check` gives within the wait, or `undefined` (timeout or abort). */
export function longPoll<T>(options: LongPollOptions<T>): Promise<T | undefined> {
  const { notifier, signal, key } = options;
  const timers = options.timers ?? systemTimers;
  if (options.waitSeconds <= 0 || signal.aborted) return options.check();
  return new Promise<T | undefined>((resolve, reject) => {
    let done = false;
    let running = false;
    let again = false;
    const finish = (error: unknown, value?: T) => {
      if (done) return;
      done = true;
      unsubscribe();
      timers.clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      if (error === undefined) resolve(value);
      else reject(error);
    };
    const recheck = async () => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          const value = await options.check();
          if (done) return;
          if (value !== undefined) return finish(undefined, value);
        } while (again);
      } catch (e) {
        finish(e ?? new Error("check failed"));
      } finally {
        running = false;
      }
    };
    const onAbort = () => finish(undefined, undefined);
    const unsubscribe = notifier.subscribe(key, () => void recheck());
    const timer = timers.setTimeout(() => finish(undefined, undefined), options.waitSeconds * 1000);
    signal.addEventListener("abort", onAbort, { once: true });
    void recheck();
  });
}
