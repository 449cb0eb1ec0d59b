import { describe, expect, it } from "vitest";
import { MinerStats } from "../../stratum-client/miner-stats.ts";

/** One connection's numbers: counts, and a hashrate over ten one-minute sums. */

const T0 = 1_800_000_000_000; // a minute boundary
const H = 2 ** 32;

describe("MinerStats", () => {
  it("counts shares per connection, stale ones among the rejected", () => {
    const s = new MinerStats(T0);
    s.accepted(1, T0);
    s.accepted(1, T0);
    s.rejected(false);
    s.rejected(true);
    expect(s.shares).toEqual({ accepted: 2, rejected: 2, stale: 1 });
    expect(s.connectedSince).toBe(T0);
  });

  it("estimates over the time connected, then over the window; old shares fall out", () => {
    const s = new MinerStats(T0);
    expect(s.hashrate(T0 + 500)).toBe(0); // under a second: no estimate
    s.accepted(4, T0 + 1_000);
    s.accepted(4, T0 + 90_000);
    // Connected two minutes: 8 difficulty over 120 s.
    expect(s.hashrate(T0 + 120_000)).toBe((8 * H) / 120);
    // At 10:30 the window starts at minute 1: the share of minute 0 is out, 4 over 570 s.
    expect(s.hashrate(T0 + 630_000)).toBe((4 * H) / 570);
    // Eleven minutes without a share: nothing in the window.
    expect(s.hashrate(T0 + 660_000 + 90_000)).toBe(0);
    s.accepted(2, T0 + 800_000);
    expect(s.hashrate(T0 + 800_000)).toBe((2 * H) / (800 - 240));
  });

  it("caps the estimate, and starts afresh when the clock steps back", () => {
    const s = new MinerStats(T0);
    s.accepted(1e30, T0 + 60_000);
    expect(s.hashrate(T0 + 120_000)).toBe(1e21);
    s.accepted(1, T0 - 3_600_000);
    expect(s.hashrate(T0 - 3_600_000 + 30_000)).toBe(0); // before it connected
    // Forward again: what was summed before the step is gone with it.
    expect(s.hashrate(T0 + 120_000)).toBe(0);
  });
});
