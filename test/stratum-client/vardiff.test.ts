import { describe, expect, it } from "vitest";
import { DEFAULT_VARDIFF, powerOfTwo, Vardiff } from "../../stratum-client/vardiff.ts";

const opts = { ...DEFAULT_VARDIFF, min: 1 / 16, max: 65536, initial: 16 };

describe("powerOfTwo", () => {
  it("rounds in log scale and clamps", () => {
    expect(powerOfTwo(16, 1, 1024)).toBe(16);
    expect(powerOfTwo(23, 1, 1024)).toBe(32); // log2 23 = 4.52
    expect(powerOfTwo(22, 1, 1024)).toBe(16); // log2 22 = 4.46
    expect(powerOfTwo(0.3, 1 / 16, 1024)).toBe(0.25);
    expect(powerOfTwo(1e9, 1, 1024)).toBe(1024);
    expect(powerOfTwo(0, 1, 1024)).toBe(1);
    expect(powerOfTwo(Number.NaN, 1, 1024)).toBe(1);
  });
});

describe("Vardiff", () => {
  it("raises the difficulty when shares come faster than one per 10 s", () => {
    const v = new Vardiff(opts, 0);
    let changed: number | null = null;
    // 24 shares in 60 s: 4 per 10 s → 4× the difficulty.
    for (let i = 1; i <= 24 && changed === null; i++) changed = v.onShare(i * 2500);
    expect(changed).toBe(64);
    expect(v.difficulty).toBe(64);
  });

  it("keeps the difficulty when the rate is on target", () => {
    const v = new Vardiff(opts, 0);
    const results = [];
    for (let i = 1; i <= 6; i++) results.push(v.onShare(i * 10_000));
    expect(results.every((r) => r === null)).toBe(true);
    expect(v.difficulty).toBe(16);
  });

  it("lowers it for a miner that finds nothing, on the timer", () => {
    const v = new Vardiff(opts, 0);
    expect(v.onTick(30_000)).toBeNull();
    expect(v.onTick(60_000)).toBe(1); // half a share assumed in 60 s → 16 × 0.5 × 10 / 60
  });

  it("retargets early when shares flood in, and never leaves [min, max]", () => {
    const v = new Vardiff({ ...opts, max: 128 }, 0);
    let changed: number | null = null;
    for (let i = 1; i <= 24 && changed === null; i++) changed = v.onShare(i * 10);
    expect(changed).toBe(128);
  });

  it("honours a suggested difficulty as a power of two within bounds", () => {
    const v = new Vardiff(opts, 0, 1000);
    expect(v.difficulty).toBe(1024);
    expect(v.suggest(5000, 1)).toBe(4096);
    expect(v.suggest(1e12, 2)).toBe(65536);
    expect(v.suggest(65536, 3)).toBeNull();
  });
});
