import { describe, expect, it } from "vitest";
import { PrefixAllocator, planSplit } from "../../stratum-client/extranonce.ts";

describe("planSplit", () => {
  it.each([
    [2, null],
    [3, { prefixBytes: 1, minerEn2Size: 2, capacity: 256 }],
    [4, { prefixBytes: 2, minerEn2Size: 2, capacity: 65536 }],
    [8, { prefixBytes: 2, minerEn2Size: 6, capacity: 65536 }],
    [12, { prefixBytes: 4, minerEn2Size: 8, capacity: 2 ** 32 }],
    [13, null],
  ])("upstream extranonce2_size %i → %j", (size, expected) => {
    expect(planSplit(size)).toEqual(expected);
  });

  it("always leaves miners 2..8 bytes", () => {
    for (let s = 3; s <= 12; s++) {
      const split = planSplit(s);
      expect(split).not.toBeNull();
      expect(split?.minerEn2Size).toBeGreaterThanOrEqual(2);
      expect(split?.minerEn2Size).toBeLessThanOrEqual(8);
      expect((split?.prefixBytes ?? 0) + (split?.minerEn2Size ?? 0)).toBe(s);
    }
  });
});

describe("PrefixAllocator", () => {
  it("hands out unique prefixes until full, then none", () => {
    const a = new PrefixAllocator(3); // 256 prefixes of 1 byte
    const seen = new Set<string>();
    for (let i = 0; i < 256; i++) {
      const p = a.allocate();
      expect(p).not.toBeNull();
      expect(p?.length).toBe(1);
      seen.add(p?.toString("hex") ?? "");
    }
    expect(seen.size).toBe(256);
    expect(a.full).toBe(true);
    expect(a.allocate()).toBeNull();
  });

  it("reuses released prefixes only after every fresh one, oldest first", () => {
    const a = new PrefixAllocator(3);
    const first = a.allocate() as Buffer;
    const second = a.allocate() as Buffer;
    a.release(first);
    a.release(second);
    const fresh: string[] = [];
    for (let i = 0; i < 254; i++) fresh.push((a.allocate() as Buffer).toString("hex"));
    expect(fresh).not.toContain(first.toString("hex"));
    expect(a.allocate()?.toString("hex")).toBe(first.toString("hex"));
    expect(a.allocate()?.toString("hex")).toBe(second.toString("hex"));
    expect(a.allocate()).toBeNull();
  });

  it("ignores a double release", () => {
    const a = new PrefixAllocator(3);
    const p = a.allocate() as Buffer;
    a.release(p);
    a.release(p);
    expect(a.size).toBe(0);
    for (let i = 0; i < 255; i++) a.allocate();
    expect(a.allocate()?.equals(p)).toBe(true);
    expect(a.allocate()).toBeNull();
  });

  it("refuses an upstream space too small to split", () => {
    expect(() => new PrefixAllocator(2)).toThrow(/cannot be split/);
  });
});
