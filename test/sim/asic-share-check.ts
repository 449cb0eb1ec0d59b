/**
 * The tests' own share arithmetic, independent of sim/asic/work.ts (createHash, string
 * reversal, BigInt shifts), checked against the real blocks in /work/shared/vectors first.
 */
import { createHash } from "node:crypto";
import type { TestJob } from "./asic-fake-pool.ts";

const dsha = (b: Buffer): Buffer =>
  createHash("sha256").update(createHash("sha256").update(b).digest()).digest();

/** "aabbccdd" (big-endian hex of a 32-bit value) → its 4 little-endian bytes. */
const le32 = (hex: string): Buffer => Buffer.from(hex, "hex").reverse();

export interface SubmitParams {
  readonly extranonce2: string;
  readonly ntime: string;
  readonly nonce: string;
  /** The header version as big-endian hex. */
  readonly version: string;
}

export function headerHex(job: TestJob, extranonce1: string, s: SubmitParams): string {
  const coinbase = Buffer.from(job.coinb1 + extranonce1 + s.extranonce2 + job.coinb2, "hex");
  let root = dsha(coinbase);
  for (const b of job.branch) root = dsha(Buffer.concat([root, Buffer.from(b, "hex")]));
  // prevhash: each 4-byte word byte-swapped in the Stratum encoding.
  const words = job.prevhash.match(/.{8}/g) ?? [];
  const prev = Buffer.concat(words.map((w) => Buffer.from(w, "hex").reverse()));
  return Buffer.concat([
    le32(s.version),
    prev,
    root,
    le32(s.ntime),
    le32(job.nbits),
    le32(s.nonce),
  ]).toString("hex");
}

/** The header hash as an integer (the 32 bytes read little-endian). */
export function headerHashInt(header: string): bigint {
  const h = dsha(Buffer.from(header, "hex"));
  return BigInt(`0x${Buffer.from(h).reverse().toString("hex")}`);
}

/** diff1 = 0x00000000FFFF0000…0000; for D = 2^-k the target is diff1 · 2^k exactly. */
export const DIFF1 = BigInt(`0x00000000ffff${"0".repeat(52)}`);
export function targetForPow2(k: number): bigint {
  return k >= 0 ? DIFF1 << BigInt(k) : DIFF1 >> BigInt(-k);
}
