import { isIPv4, isIPv6 } from "node:net";
import type { Clock } from "../clock.ts";
import { type ErrorCode, fail } from "../errors.ts";

/**
 * Token buckets keyed by caller (API key id, worker id) or client address.
 *
 * Memory is bounded two ways: a bucket that has been idle long enough to refill completely is
 * indistinguishable from a new one and is dropped; and past `maxBuckets` the least recently
 * used bucket is dropped (its owner gets a full bucket back: under a flood of distinct keys
 * the limiter errs towards letting a returning caller in, never towards unbounded memory).
 * The map is kept in least-recently-used order by re-inserting a bucket on every use, so both
 * evictions look only at the front.
 */

export interface RateLimitConfig {
  /** Tokens added per second. */
  readonly ratePerSecond: number;
  /** Bucket capacity: how many requests may come at once after a quiet period. */
  readonly burst: number;
  /** Most buckets kept (default 100,000). */
  readonly maxBuckets?: number;
}

export type TakeResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  last: number;
}

export class RateLimiter {
  readonly #rate: number;
  readonly #burst: number;
  readonly #max: number;
  readonly #fullAfterMs: number;
  readonly #clock: Clock;
  readonly #buckets = new Map<string, Bucket>();

  constructor(config: RateLimitConfig, clock: Clock) {
    if (!(config.ratePerSecond > 0) || !(config.burst >= 1)) {
      throw fail("AGENTD_E_INTERNAL", "rate limit needs ratePerSecond > 0 and burst ≥ 1");
    }
    this.#rate = config.ratePerSecond;
    this.#burst = config.burst;
    this.#max = Math.max(1, config.maxBuckets ?? 100_000);
    this.#fullAfterMs = (config.burst / config.ratePerSecond) * 1000;
    this.#clock = clock;
  }

  get size(): number {
    return this.#buckets.size;
  }

  take(key: string, cost = 1): TakeResult {
    const now = this.#clock.now();
    this.#evictIdle(now);
    let b = this.#buckets.get(key);
    if (b === undefined) {
      if (this.#buckets.size >= this.#max) {
        const oldest = this.#buckets.keys().next();
        if (oldest.done !== true) this.#buckets.delete(oldest.value);
      }
      b = { tokens: this.#burst, last: now };
    } else {
      // A clock that went backwards refills nothing (and takes nothing back).
      const elapsed = Math.max(0, now - b.last);
      b.tokens = Math.min(this.#burst, b.tokens + (elapsed / 1000) * this.#rate);
      b.last = Math.max(b.last, now);
      this.#buckets.delete(key);
    }
    this.#buckets.set(key, b);
    if (b.tokens >= cost) {
      b.tokens -= cost;
      return { ok: true };
    }
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((cost - b.tokens) / this.#rate)) };
  }

  #evictIdle(now: number): void {
    for (const [key, b] of this.#buckets) {
      if (now - b.last < this.#fullAfterMs) return;
      this.#buckets.delete(key);
    }
  }
}

/**
 * Throws `code` (429) with `message` when `key` has no token left; the seconds until one is
 * back go in the context (`retry_after_s`, the `Retry-After` header).
 */
export function enforce(
  limiter: RateLimiter | undefined,
  key: string,
  code: ErrorCode,
  message: string,
): void {
  if (limiter === undefined) return;
  const r = limiter.take(key);
  if (!r.ok) throw fail(code, message, { retry_after_s: r.retryAfterSeconds });
}

/**
 * The bucket key for a client address: IPv4 as is (IPv4-mapped IPv6 unwrapped), IPv6 by its
 * /64, since one host usually holds a whole /64 and could otherwise rotate through it.
 */
export function ipKey(address: string | undefined): string {
  if (address === undefined || address === "") return "ip:unknown";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped !== null) return `ip:${mapped[1]}`;
  if (isIPv4(address)) return `ip:${address}`;
  if (!isIPv6(address)) return `ip:${address}`;
  return `ip6:${expandIpv6(address).slice(0, 4).join(":")}::/64`;
}

function expandIpv6(address: string): string[] {
  const zoneless = address.split("%")[0] as string;
  const [head = "", tail] = zoneless.split("::");
  const h = head === "" ? [] : head.split(":");
  const t = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return groups.map((g) => Number.parseInt(g, 16).toString(16));
}
