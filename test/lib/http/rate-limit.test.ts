import { describe, expect, it } from "vitest";
import { fixedClock } from "../../../lib/clock.ts";
import { isAgentdError } from "../../../lib/errors.ts";
import { enforce, ipKey, RateLimiter } from "../../../lib/http/rate-limit.ts";

describe("token buckets", () => {
  it("allows the burst, then refuses with the seconds until a token is back", () => {
    const clock = fixedClock(1_000_000);
    const rl = new RateLimiter({ ratePerSecond: 0.5, burst: 3 }, clock);
    expect([rl.take("a"), rl.take("a"), rl.take("a")].every((r) => r.ok)).toBe(true);
    expect(rl.take("a")).toEqual({ ok: false, retryAfterSeconds: 2 });
    // Other keys have their own bucket.
    expect(rl.take("b").ok).toBe(true);
    clock.advance(1999);
    expect(rl.take("a").ok).toBe(false);
    clock.advance(2);
    expect(rl.take("a").ok).toBe(true);
    expect(rl.take("a").ok).toBe(false);
  });

  it("refills no more than the burst, and not at all when the clock goes back", () => {
    const clock = fixedClock(10_000_000);
    const rl = new RateLimiter({ ratePerSecond: 10, burst: 2, maxBuckets: 10 }, clock);
    rl.take("a");
    rl.take("a");
    clock.set(5_000_000);
    expect(rl.take("a").ok).toBe(false);
    clock.set(10_000_000 + 3600_000);
    expect(rl.take("a").ok).toBe(true);
    expect(rl.take("a").ok).toBe(true);
    expect(rl.take("a").ok).toBe(false);
  });

  it("drops buckets that refilled while idle, and caps how many are kept", () => {
    const clock = fixedClock(0);
    const rl = new RateLimiter({ ratePerSecond: 1, burst: 2, maxBuckets: 3 }, clock);
    for (const k of ["a", "b", "c", "d", "e"]) rl.take(k);
    expect(rl.size).toBe(3);
    clock.advance(2000);
    rl.take("z");
    // a…e were idle for burst/rate seconds: all gone; only z remains.
    expect(rl.size).toBe(1);
  });

  it("evicts the least recently used bucket at the cap", () => {
    const clock = fixedClock(0);
    const rl = new RateLimiter({ ratePerSecond: 1, burst: 1, maxBuckets: 2 }, clock);
    rl.take("a");
    rl.take("b");
    rl.take("a"); // a is now the most recent, refused
    rl.take("c"); // evicts b
    expect(rl.size).toBe(2);
    expect(rl.take("a").ok).toBe(false); // still limited: a was kept
  });
});

describe("enforce", () => {
  it("throws the server's code with the seconds until a token is back", () => {
    const rl = new RateLimiter({ ratePerSecond: 0.25, burst: 1 }, fixedClock(0));
    enforce(rl, "k", "AGENTD_E_API_RATE_LIMITED", "slow down");
    let caught: unknown;
    try {
      enforce(rl, "k", "AGENTD_E_API_RATE_LIMITED", "slow down");
    } catch (e) {
      caught = e;
    }
    expect(isAgentdError(caught)).toBe(true);
    if (!isAgentdError(caught)) return;
    expect([caught.code, caught.message, caught.context]).toEqual([
      "AGENTD_E_API_RATE_LIMITED",
      "slow down",
      { retry_after_s: 4 },
    ]);
    // no limiter: no limit
    for (let i = 0; i < 10; i++) enforce(undefined, "k", "AGENTD_E_CP_RATE_LIMITED", "x");
  });
});

describe("ipKey", () => {
  it("unwraps IPv4-mapped addresses and groups IPv6 by /64", () => {
    expect(ipKey("::ffff:192.0.2.1")).toBe(ipKey("192.0.2.1"));
    expect(ipKey("2001:db8:1:2::1")).toBe(ipKey("2001:db8:1:2:ffff:ffff:ffff:ffff"));
    expect(ipKey("2001:db8:1:2::1")).not.toBe(ipKey("2001:db8:1:3::1"));
    expect(ipKey("2001:0db8:0001:0002::1")).toBe(ipKey("2001:db8:1:2::9"));
    expect(ipKey("::1")).toBe("ip6:0:0:0:0::/64");
    expect(ipKey(undefined)).toBe("ip:unknown");
  });
});
