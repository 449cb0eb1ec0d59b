import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  compactToTarget,
  DIFF1,
  difficultyTarget,
  targetToCompact,
} from "../../sim/pool/target.ts";
import { sha256d } from "./pool-helpers.ts";

const VECTORS = "/work/shared/vectors";
const blocks = JSON.parse(readFileSync(`${VECTORS}/stratum-real-blocks.json`, "utf8")) as {
  vectors: { block_hash: string; expect: { header_hex: string; share_difficulty_floor: string } }[];
};
const nbits = JSON.parse(readFileSync(`${VECTORS}/nbits-targets.json`, "utf8")) as {
  vectors: { bits: string; expected: string; sign_bit_set?: boolean }[];
};

/** The exact rational value of a double, read from its IEEE 754 bits (a second method). */
function ieee(d: number): { num: bigint; den: bigint } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, d);
  const bits = view.getBigUint64(0);
  const exp = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  const mantissa = exp === 0 ? frac : frac | (1n << 52n);
  const e = (exp === 0 ? 1 : exp) - 1075; // value = mantissa · 2^e
  return e >= 0
    ? { num: mantissa << BigInt(e), den: 1n }
    : { num: mantissa, den: 1n << BigInt(-e) };
}

describe("sim pool: targets", () => {
  it("is diff1 / D exactly, for integer, power-of-two and fractional difficulties", () => {
    expect(difficultyTarget(1)).toBe(DIFF1);
    expect(difficultyTarget(2 ** -20)).toBe(DIFF1 << 20n);
    expect(difficultyTarget(4096)).toBe(DIFF1 / 4096n);
    for (const d of [1e-5, 0.0005, 3.7, 1e-12, 0.1, 65536.5]) {
      const { num, den } = ieee(d);
      expect(difficultyTarget(d)).toBe((DIFF1 * den) / num);
    }
    // 0.1 is not 1/10 in binary: the target differs from DIFF1 * 10 by the double's error
    expect(difficultyTarget(0.1)).not.toBe(DIFF1 * 10n);
    expect(() => difficultyTarget(0)).toThrow(/difficulty/);
    expect(() => difficultyTarget(Number.NaN)).toThrow(/difficulty/);
  });

  it("puts every real block's hash at its share-difficulty floor and not one above", () => {
    for (const v of blocks.vectors) {
      const hash = BigInt(
        `0x${Buffer.from(sha256d(Buffer.from(v.expect.header_hex, "hex")))
          .reverse()
          .toString("hex")}`,
      );
      expect(hash.toString(16).padStart(64, "0")).toBe(v.block_hash);
      const floor = Number(v.expect.share_difficulty_floor);
      expect(Number.isSafeInteger(floor)).toBe(true);
      expect(hash <= difficultyTarget(floor)).toBe(true);
      expect(hash <= difficultyTarget(floor + 1)).toBe(false);
    }
  });

  it("converts compact nBits both ways as Bitcoin Core does", () => {
    for (const v of nbits.vectors.filter((x) => !x.sign_bit_set)) {
      const bits = Number.parseInt(v.bits, 16);
      expect(compactToTarget(bits)).toBe(BigInt(`0x${v.expected}`));
      expect(
        targetToCompact(BigInt(`0x${v.expected}`))
          .toString(16)
          .padStart(8, "0"),
      ).toBe(v.bits);
    }
    for (const v of nbits.vectors.filter((x) => x.sign_bit_set)) {
      expect(() => compactToTarget(Number.parseInt(v.bits, 16))).toThrow(/sign bit/);
    }
    // rounds down, and moves a would-be sign bit into the exponent
    expect(targetToCompact(0x80n)).toBe(0x02008000);
    expect(targetToCompact(DIFF1 + 1n)).toBe(0x1d00ffff);
    expect(targetToCompact(1n << 300n)).toBe(0x2100ffff);
  });
});
