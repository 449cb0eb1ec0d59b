/**
 * The miner's own share arithmetic (PROTOCOLS.md "Share validation"), written apart from
 * stratum-client/ on purpose: a simulator sharing the proxy's code would share its bugs.
 */
import { hash } from "node:crypto";

/** Pool difficulty 1: 0x00000000FFFF0000…0000. */
export const DIFF1 = 0xffffn << 208n;
const MAX_TARGET = (1n << 256n) - 1n;

export function sha256d(data: Uint8Array): Buffer {
  return hash("sha256", hash("sha256", data, "buffer"), "buffer");
}

export function hexToBuf(hex: string): Buffer {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new TypeError(`not hex: ${JSON.stringify(hex.slice(0, 40))}`);
  }
  return Buffer.from(hex, "hex");
}

/** coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2, folded with the branch into the merkle root. */
export function merkleRoot(
  coinb1: Buffer,
  extranonce1: Buffer,
  extranonce2: Buffer,
  coinb2: Buffer,
  branch: readonly Buffer[],
): Buffer {
  let root = sha256d(Buffer.concat([coinb1, extranonce1, extranonce2, coinb2]));
  for (const b of branch) root = sha256d(Buffer.concat([root, b]));
  return root;
}

/** Undoes the Stratum prevhash encoding: every 4-byte word byte-swapped. */
export function prevhashToHeaderBytes(prevhash: Buffer): Buffer {
  const out = Buffer.allocUnsafe(32);
  for (let i = 0; i < 32; i += 4) out.writeUInt32LE(prevhash.readUInt32BE(i), i);
  return out;
}

/** The 80-byte header; version/ntime/nbits/nonce are 32-bit values written little-endian. */
export function buildHeader(
  version: number,
  prevhashHeaderBytes: Buffer,
  root: Buffer,
  ntime: number,
  nbits: number,
  nonce: number,
): Buffer {
  const h = Buffer.allocUnsafe(80);
  h.writeUInt32LE(version >>> 0, 0);
  prevhashHeaderBytes.copy(h, 4);
  root.copy(h, 36);
  h.writeUInt32LE(ntime >>> 0, 68);
  h.writeUInt32LE(nbits >>> 0, 72);
  h.writeUInt32LE(nonce >>> 0, 76);
  return h;
}

/** A hash read as the 256-bit little-endian integer that is compared with targets. */
export function hashToBigInt(h: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(h).reverse().toString("hex")}`);
}

/**
 * target = floor(DIFF1 / d), exactly: d is taken as the rational the double really is
 * (mantissa · 2^exponent), so fractional difficulties such as 2^-20 are not rounded.
 */
export function targetFromDifficulty(d: number): bigint {
  if (!Number.isFinite(d) || d <= 0) throw new RangeError(`difficulty must be > 0, got ${d}`);
  const { mantissa, exponent } = decomposeDouble(d);
  const t =
    exponent >= 0
      ? DIFF1 / (mantissa << BigInt(exponent))
      : (DIFF1 << BigInt(-exponent)) / mantissa;
  return t > MAX_TARGET ? MAX_TARGET : t;
}

/** d = mantissa · 2^exponent with an integer mantissa, exactly. */
function decomposeDouble(d: number): { mantissa: bigint; exponent: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, d);
  const bits = view.getBigUint64(0);
  const rawExp = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  return rawExp === 0
    ? { mantissa: frac, exponent: -1074 }
    : { mantissa: frac | (1n << 52n), exponent: rawExp - 1075 };
}

/** The 32-byte little-endian form of a target, for the byte-wise comparison in the hot loop. */
export function targetToLeBytes(target: bigint): Buffer {
  return Buffer.from(target.toString(16).padStart(64, "0"), "hex").reverse();
}

/** h ≤ target, both little-endian 32 bytes; compares from the most significant byte. */
export function meetsTarget(h: Uint8Array, targetLe: Uint8Array): boolean {
  for (let i = 31; i >= 0; i--) {
    const a = h[i] as number;
    const b = targetLe[i] as number;
    if (a !== b) return a < b;
  }
  return true;
}

/**
 * Spreads the low bits of `k` over the set bits of `mask` (a bit deposit), so that counting
 * k = 0, 1, 2… walks every version the negotiated mask allows.
 */
export function depositBits(k: number, mask: number): number {
  let out = 0;
  let bit = 1;
  for (let m = mask >>> 0; m !== 0; m &= m - 1) {
    const low = m & -m;
    if (k & bit) out |= low;
    bit <<= 1;
  }
  return out >>> 0;
}

export function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}
