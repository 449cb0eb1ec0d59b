/**
 * Per-miner variable difficulty: aims at one share per `targetIntervalS` (default 10 s) by
 * retargeting every `retargetS` seconds (or sooner when shares arrive far too fast), in
 * power-of-two steps, within [min, max]. A new difficulty is announced together with a clean
 * job, because firmware applies set_difficulty only at the next notify (PROTOCOLS.md).
 *
 * Pure arithmetic over an injected clock: the server owns the timers.
 */

export interface VardiffOptions {
  readonly targetIntervalS: number;
  readonly retargetS: number;
  readonly min: number;
  readonly max: number;
  readonly initial: number;
}

export const DEFAULT_VARDIFF: VardiffOptions = Object.freeze({
  targetIntervalS: 10,
  retargetS: 60,
  min: 1 / 1024,
  max: 2 ** 40,
  initial: 1024,
});

/** The power of two nearest to `d` (in log scale), clamped. */
export function powerOfTwo(d: number, min: number, max: number): number {
  if (!(d > 0) || !Number.isFinite(d)) return min;
  const p = 2 ** Math.round(Math.log2(d));
  return Math.min(max, Math.max(min, p));
}

export class Vardiff {
  readonly #o: VardiffOptions;
  #difficulty: number;
  #windowStart: number;
  #shares = 0;

  constructor(options: VardiffOptions, nowMs: number, suggested?: number) {
    this.#o = options;
    this.#difficulty = powerOfTwo(suggested ?? options.initial, options.min, options.max);
    this.#windowStart = nowMs;
  }

  get difficulty(): number {
    return this.#difficulty;
  }

  /** The miner asked for a difficulty (mining.suggest_difficulty): honoured within bounds. */
  suggest(d: number, nowMs: number): number | null {
    const next = powerOfTwo(d, this.#o.min, this.#o.max);
    return this.#set(next, nowMs);
  }

  /**
   * Records an accepted share; returns the new difficulty when it is time to change, else null.
   */
  onShare(nowMs: number): number | null {
    this.#shares++;
    const elapsedS = (nowMs - this.#windowStart) / 1000;
    // Far too fast (a miner that starts at a low difficulty): retarget early.
    const tooFast = this.#shares >= 4 * Math.max(1, this.#o.retargetS / this.#o.targetIntervalS);
    if (elapsedS < this.#o.retargetS && !tooFast) return null;
    return this.#retarget(nowMs, Math.max(elapsedS, 0.001));
  }

  /** Called on a timer: a miner that stopped finding shares gets an easier difficulty. */
  onTick(nowMs: number): number | null {
    const elapsedS = (nowMs - this.#windowStart) / 1000;
    if (elapsedS < this.#o.retargetS) return null;
    return this.#retarget(nowMs, elapsedS);
  }

  #retarget(nowMs: number, elapsedS: number): number | null {
    // Observed shares per target interval; with no share at all, assume half of one.
    const observed = Math.max(this.#shares, 0.5);
    const wanted = (this.#difficulty * observed * this.#o.targetIntervalS) / elapsedS;
    return this.#set(powerOfTwo(wanted, this.#o.min, this.#o.max), nowMs);
  }

  #set(next: number, nowMs: number): number | null {
    this.#windowStart = nowMs;
    this.#shares = 0;
    if (next === this.#difficulty) return null;
    this.#difficulty = next;
    return next;
  }
}
