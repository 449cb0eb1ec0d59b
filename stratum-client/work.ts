/**
 * Proof-of-work arithmetic for Stratum V1 share validation: SHA-256d, strict hex, targets
 * (from pool difficulty and from compact nBits), the header's pieces and BIP 310 version
 * rolling. Pure functions, no I/O. Encodings follow /work/shared/PROTOCOLS.md section 1 and
 * the vectors' README: 32-bit fields are big-endian hex on the wire and little-endian in the
 * header; hashes are compared as 256-bit little-endian integers.
 *
 * Miner and pool input is untrusted, so parsers return null instead of throwing; a throw
 * (AGENTD_E_INTERNAL) means a caller passed something it should have validated first.
 */
import { hash } from "node:crypto";
import { fail } from "../lib/errors.ts";

/** Double SHA-256. The one-shot `crypto.hash` avoids a Hash object per call (faster). */
export function sha256d(data: Uint8Array): Buffer {
  return hash("sha256", hash("sha256", data, "buffer"), "buffer");
}

// ---- hex ------------------------------------------------------------------------------------

/**
 * Value of one hex digit's char code, or -1. Written out rather than trusted to
 * Buffer.from(s, "hex"), which stops silently at a bad digit and reads a non-ASCII char by its
 * low byte ("İ0" decodes as 0x00).
 */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  if (c >= 97 && c <= 102) return c - 87; // a-f
  if (c >= 65 && c <= 70) return c - 55; // A-F
  return -1;
}

/** True when `s` is an even number of hex digits (either case). */
export function isHex(s: string): boolean {
  if ((s.length & 1) !== 0) return false;
  for (let i = 0; i < s.length; i++) if (hexDigit(s.charCodeAt(i)) < 0) return false;
  return true;
}

/**
 * Decodes strict hex (even length, digits 0-9 a-f A-F only); with `bytes`, exactly that many
 * bytes. Null for anything else, including non-strings.
 */
export function parseHex(s: unknown, bytes?: number): Buffer | null {
  if (typeof s !== "string") return null;
  if (bytes !== undefined && s.length !== bytes * 2) return null;
  if ((s.length & 1) !== 0) return null;
  if (s.length > 64) return isHex(s) ? Buffer.from(s, "hex") : null;
  // Short strings (extranonce2 on every submit): one pass checks and decodes, about twice
  // as fast as checking and then Buffer.from.
  const out = Buffer.allocUnsafe(s.length >> 1);
  for (let i = 0, j = 0; i < s.length; i += 2, j++) {
    const hi = hexDigit(s.charCodeAt(i));
    const lo = hexDigit(s.charCodeAt(i + 1));
    if (hi < 0 || lo < 0) return null;
    out[j] = (hi << 4) | lo;
  }
  return out;
}

/** Exactly 8 hex digits, read as a big-endian uint32 (how Stratum sends ntime, nonce…). */
export function parseU32Hex(s: unknown): number | null {
  if (typeof s !== "string" || s.length !== 8) return null;
  let v = 0;
  for (let i = 0; i < 8; i++) {
    const d = hexDigit(s.charCodeAt(i));
    if (d < 0) return null;
    v = v * 16 + d; // not `<<`: that would go negative past 2^31
  }
  return v;
}

/** A uint32 as the 8 lower-case hex digits Stratum uses. */
export function u32Hex(v: number): string {
  assertU32(v, "value");
  return v.toString(16).padStart(8, "0");
}

export function isU32(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

function assertU32(v: number, name: string): void {
  if (!isU32(v)) throw fail("AGENTD_E_INTERNAL", `${name} is not a uint32`, { [name]: v });
}

// ---- targets --------------------------------------------------------------------------------

/** Pool difficulty 1: 0x00000000FFFF0000…0000 (0xFFFF · 2^208). */
export const DIFF1_TARGET: bigint = 0xffffn << 208n;

export const MAX_TARGET: bigint = (1n << 256n) - 1n;

const f64 = new DataView(new ArrayBuffer(8));

/**
 * The share target for pool difficulty `d`: floor(DIFF1 / d), computed exactly. A double is
 * m · 2^e with integer m and e, so DIFF1 / d = DIFF1 · 2^-e / m: integer arithmetic, no float
 * division (which would be off for any d that is not a power of two, and for 0.001 — not
 * exactly 1/1000 as a double). Capped at 2^256 − 1 for tiny difficulties. Since hashes are
 * integers, `hash <= targetForDifficulty(d)` iff `hash <= DIFF1 / d` exactly.
 */
export function targetForDifficulty(d: number): bigint {
  if (!(d > 0) || !Number.isFinite(d)) {
    throw fail("AGENTD_E_INTERNAL", "difficulty must be a positive finite number", {
      difficulty: String(d),
    });
  }
  f64.setFloat64(0, d);
  const hi = f64.getUint32(0);
  const lo = f64.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  const fraction = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  // Normal: (2^52 + fraction) · 2^(biased − 1075); subnormal: fraction · 2^−1074.
  const m = biased === 0 ? fraction : fraction | (1n << 52n);
  const e = biased === 0 ? -1074 : biased - 1075;
  const t = e >= 0 ? DIFF1_TARGET / (m << BigInt(e)) : (DIFF1_TARGET << BigInt(-e)) / m;
  return t > MAX_TARGET ? MAX_TARGET : t;
}

/**
 * The target encoded by compact `nBits`, exactly as Bitcoin Core's `arith_uint256::SetCompact`
 * reads it; null where Core's proof-of-work check refuses it: the sign bit set with a non-zero
 * mantissa (negative), or a value that does not fit in 256 bits (overflow). Zero stays 0n
 * (no hash meets it); also null for a number that is not a uint32.
 */
export function targetFromNbits(nbits: number): bigint | null {
  if (!isU32(nbits)) return null;
  const size = nbits >>> 24;
  let word = nbits & 0x007fffff;
  let target: bigint;
  if (size <= 3) {
    // Core shifts the mantissa itself here, so bytes shifted out do not count as negative.
    word >>>= 8 * (3 - size);
    target = BigInt(word);
  } else {
    target = BigInt(word) << BigInt(8 * (size - 3));
  }
  if (word !== 0 && (nbits & 0x00800000) !== 0) return null;
  if (word !== 0 && (size > 34 || (word > 0xff && size > 33) || (word > 0xffff && size > 32))) {
    return null;
  }
  return target;
}

// ---- hashes ---------------------------------------------------------------------------------

/** A 32-byte hash as the 256-bit little-endian integer compared against targets. */
export function hashToBigInt(hash32: Buffer): bigint {
  if (hash32.length !== 32) throw fail("AGENTD_E_INTERNAL", "a hash is 32 bytes");
  // Four 64-bit reads instead of a hex string: this runs once per share.
  return (
    (hash32.readBigUInt64LE(24) << 192n) |
    (hash32.readBigUInt64LE(16) << 128n) |
    (hash32.readBigUInt64LE(8) << 64n) |
    hash32.readBigUInt64LE(0)
  );
}

/** The hash as block explorers show it: bytes reversed, hex. */
export function displayHash(hash32: Buffer): string {
  return Buffer.from(hash32).reverse().toString("hex");
}

// ---- prevhash -------------------------------------------------------------------------------

/**
 * Stratum's prevhash (64 hex: the header's 32 bytes with every 4-byte word byte-swapped) to the
 * header's bytes. Null when not exactly 64 hex digits.
 */
export function prevhashFromStratum(hex: unknown): Buffer | null {
  const b = parseHex(hex, 32);
  return b === null ? null : b.swap32();
}

/** The inverse of prevhashFromStratum: the header's 32 bytes to Stratum's hex. */
export function prevhashToStratum(headerBytes32: Buffer): string {
  if (headerBytes32.length !== 32) throw fail("AGENTD_E_INTERNAL", "a prevhash is 32 bytes");
  return Buffer.from(headerBytes32).swap32().toString("hex");
}

// ---- coinbase, merkle root, header ----------------------------------------------------------

export function buildCoinbase(
  coinb1: Buffer,
  extranonce1: Buffer,
  extranonce2: Buffer,
  coinb2: Buffer,
): Buffer {
  return Buffer.concat([coinb1, extranonce1, extranonce2, coinb2]);
}

/** root = sha256d(root ‖ branch_i) from the coinbase's hash, all in internal byte order. */
export function merkleRoot(coinbaseHash: Buffer, branch: readonly Buffer[]): Buffer {
  let root = coinbaseHash;
  for (const b of branch) root = sha256d(Buffer.concat([root, b]));
  return root;
}

export interface HeaderFields {
  readonly version: number;
  /** The header's 32 bytes (not Stratum's word-swapped form). */
  readonly prevhash: Buffer;
  readonly merkleRoot: Buffer;
  readonly ntime: number;
  readonly nbits: number;
  readonly nonce: number;
}

/** The 80-byte header: LE32 version ‖ prevhash ‖ merkle root ‖ LE32 ntime, nbits, nonce. */
export function buildHeader(f: HeaderFields): Buffer {
  for (const k of ["version", "ntime", "nbits", "nonce"] as const) assertU32(f[k], k);
  if (f.prevhash.length !== 32 || f.merkleRoot.length !== 32) {
    throw fail("AGENTD_E_INTERNAL", "prevhash and merkle root are 32 bytes each");
  }
  const h = Buffer.allocUnsafe(80);
  h.writeUInt32LE(f.version, 0);
  f.prevhash.copy(h, 4);
  f.merkleRoot.copy(h, 36);
  h.writeUInt32LE(f.ntime, 68);
  h.writeUInt32LE(f.nbits, 72);
  h.writeUInt32LE(f.nonce, 76);
  return h;
}

// ---- version rolling ------------------------------------------------------------------------

/**
 * BIP 310: the header version `(job & ~mask) | (bits & mask)`; null when the miner set bits
 * outside the negotiated mask (the share must be refused, not silently masked).
 */
export function rollVersion(jobVersion: number, bits: number, mask: number): number | null {
  assertU32(jobVersion, "jobVersion");
  assertU32(bits, "bits");
  assertU32(mask, "mask");
  if ((bits & ~mask) !== 0) return null;
  return ((jobVersion & ~mask) | bits) >>> 0;
}

/**
 * Legacy Bitmain `mining.multi_version`: the submit's 6th param is the whole version. Valid iff
 * it differs from the job's only inside `mask`; returns the version to hash, or null.
 */
export function legacyMultiVersion(
  jobVersion: number,
  version: number,
  mask: number,
): number | null {
  assertU32(jobVersion, "jobVersion");
  assertU32(version, "version");
  assertU32(mask, "mask");
  return (version & ~mask) === (jobVersion & ~mask) ? version : null;
}
