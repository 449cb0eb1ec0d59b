/**
 * One miner connection's numbers for the operator (the local API's `/v1/miners`): the shares
 * it submitted on this connection, and its hashrate estimated from the difficulty of the
 * shares accepted in the last ten minutes (accepted difficulty × 2^32 per second, as the
 * proxy's whole telemetry does, agent/guarded-proxy.ts).
 *
 * Memory is fixed per miner whatever its share rate: ten one-minute sums, so the window is
 * the current minute and the nine before it (nine to ten minutes). A miner connected for less
 * than that is measured over the time it has been connected; under a second reads 0, as one
 * early share would otherwise read as an absurd rate.
 */

const BUCKET_MS = 60_000;
const BUCKETS = 10;
/** Far beyond the whole Bitcoin network: a bound, as the heartbeat's. */
const MAX_HASHRATE = 1e21;

export interface MinerShares {
  readonly accepted: number;
  /** Every rejected share, stale ones included. */
  readonly rejected: number;
  /** The rejected shares that were for a job no longer live (reject code 21). */
  readonly stale: number;
}

export class MinerStats {
  /** When the connection was accepted (Unix ms). */
  readonly connectedSince: number;
  #accepted = 0;
  #rejected = 0;
  #stale = 0;
  readonly #sums = new Float64Array(BUCKETS);
  /** The newest bucket's number (time / BUCKET_MS); its sum is at that number mod BUCKETS. */
  #bucket: number;

  constructor(now: number) {
    this.connectedSince = now;
    this.#bucket = Math.floor(now / BUCKET_MS);
  }

  accepted(difficulty: number, now: number): void {
    this.#accepted++;
    this.#roll(now);
    const i = this.#bucket % BUCKETS;
    this.#sums[i] = (this.#sums[i] ?? 0) + difficulty;
  }

  rejected(stale: boolean): void {
    this.#rejected++;
    if (stale) this.#stale++;
  }

  get shares(): MinerShares {
    return { accepted: this.#accepted, rejected: this.#rejected, stale: this.#stale };
  }

  /** Estimated H/s over the window. */
  hashrate(now: number): number {
    this.#roll(now);
    const windowStart = (this.#bucket - BUCKETS + 1) * BUCKET_MS;
    const seconds = (now - Math.max(windowStart, this.connectedSince)) / 1000;
    if (!(seconds >= 1)) return 0;
    let difficulty = 0;
    for (const d of this.#sums) difficulty += d;
    return Math.min(MAX_HASHRATE, (difficulty * 2 ** 32) / seconds);
  }

  /** Empties the buckets that fell out of the window since the newest. */
  #roll(now: number): void {
    const b = Math.floor(now / BUCKET_MS);
    if (b === this.#bucket) return;
    // The clock stepped back, or everything is older than the window: start afresh.
    if (b < this.#bucket || b - this.#bucket >= BUCKETS) this.#sums.fill(0);
    else for (let i = this.#bucket + 1; i <= b; i++) this.#sums[i % BUCKETS] = 0;
    this.#bucket = b;
  }
}
