/**
 * Difficulty and targets, computed exactly with BigInt. Pool difficulty 1 is
 * `diff1 = 0x00000000FFFF0000…` (PROTOCOLS.md §1); a share meets difficulty D iff its hash,
 * read as a 256-bit little-endian integer, is ≤ diff1 / D. Fractional difficulties (the
 * simulator's CPU miners use ~1e-5) are taken as the exact rational value of the double, so
 * the target never depends on float rounding.
 */
import { fail } from "../../lib/errors.ts";

export const DIFF1 = 0xffffn << 208n;
const MAX_TARGET = (1n << 256n) - 1n;

/** The exact value of a finite positive double as numerator / 2^k. */
function exactRational(value: number): { num: bigint; den: bigint } {
  let x = value;
  let den = 1n;
  // Doubling a double is exact (no rounding) until it is an integer: at most 1074 steps.
  while (!Number.isInteger(x)) {
    x *= 2;
    den *= 2n;
  }
  return { num: BigInt(x), den };
}

export function isValidDifficulty(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value > 0;
}

/** floor(diff1 / D): for integer hashes, `hash ≤ floor(x)` iff `hash ≤ x`. */
export function difficultyTarget(difficulty: number): bigint {
  if (!isValidDifficulty(difficulty)) {
    throw fail("AGENTD_E_USAGE", `difficulty must be a finite number > 0, got ${difficulty}`);
  }
  const { num, den } = exactRational(difficulty);
  return (DIFF1 * den) / num;
}

/**
 * The compact `nBits` encoding of a target, rounded down as Bitcoin Core's GetCompact does
 * (so the compact target never exceeds the one asked for). Targets beyond 256 bits are capped.
 */
export function targetToCompact(target: bigint): number {
  if (target <= 0n) throw fail("AGENTD_E_USAGE", "target must be positive");
  const t = target > MAX_TARGET ? MAX_TARGET : target;
  let size = Math.ceil(t.toString(16).length / 2);
  let mantissa = size <= 3 ? t << BigInt(8 * (3 - size)) : t >> BigInt(8 * (size - 3));
  // The mantissa's top bit is a sign bit: shift it out rather than encode a negative target.
  if ((mantissa & 0x800000n) !== 0n) {
    mantissa >>= 8n;
    size += 1;
  }
  return ((size << 24) | Number(mantissa)) >>> 0;
}

/** The target a compact `nBits` encodes (sign bit and overflow are refused). */
export function compactToTarget(bits: number): bigint {
  const size = bits >>> 24;
  const mantissa = BigInt(bits & 0x007fffff);
  if ((bits & 0x00800000) !== 0) throw fail("AGENTD_E_USAGE", "nbits has the sign bit set");
  return size <= 3 ? mantissa >> BigInt(8 * (3 - size)) : mantissa << BigInt(8 * (size - 3));
}

/** A header hash (internal byte order) as the 256-bit little-endian integer compared to targets. */
export function hashValue(hashInternal: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(hashInternal).reverse().toString("hex") || "0"}`);
}
