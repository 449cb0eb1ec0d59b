/**
 * Time is injected everywhere (jose's `currentDate`, undici's timers): nothing reads
 * `Date.now()` directly except `systemClock`, so tests can put any module at any instant.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = Object.freeze({ now: () => Date.now() });

/** A clock that stands still until moved: for tests and for `--now` on the CLI. */
export function fixedClock(
  epochMs: number,
): Clock & { set(ms: number): void; advance(ms: number): void } {
  let t = epochMs;
  return {
    now: () => t,
    set: (ms: number) => {
      t = ms;
    },
    advance: (ms: number) => {
      t += ms;
    },
  };
}

/** Integer Unix seconds, the unit of every time inside a signed document. */
export function unixSeconds(clock: Clock): number {
  return Math.floor(clock.now() / 1000);
}
