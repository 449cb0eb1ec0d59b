import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  buildHeader,
  DIFF1,
  depositBits,
  hashToBigInt,
  hexToBuf,
  merkleRoot,
  prevhashToHeaderBytes,
  sha256d,
  targetFromDifficulty,
} from "../../sim/asic/work.ts";
import {
  headerHashInt,
  headerHex,
  DIFF1 as TEST_DIFF1,
  targetForPow2,
} from "./asic-share-check.ts";

interface Vector {
  block_hash: string;
  notify: {
    job_id: string;
    prevhash: string;
    coinb1: string;
    coinb2: string;
    merkle_branch: string[];
    version: string;
    nbits: string;
    ntime: string;
  };
  extranonce1: string;
  submit: { extranonce2: string; ntime: string; nonce: string };
  expect: { header_hex: string; share_difficulty_floor: string };
}

const blocks = JSON.parse(
  readFileSync("/work/shared/vectors/stratum-real-blocks.json", "utf8"),
) as { diff1_target: string; vectors: Vector[] };

describe("the tests' own share check", () => {
  it("rebuilds every real block's header and hash from its Stratum job", () => {
    expect(TEST_DIFF1).toBe(BigInt(`0x${blocks.diff1_target}`));
    for (const v of blocks.vectors) {
      const n = v.notify;
      const job = { ...n, jobId: n.job_id, branch: n.merkle_branch };
      const header = headerHex(job, v.extranonce1, { ...v.submit, version: n.version });
      expect(header).toBe(v.expect.header_hex);
      const h = headerHashInt(header);
      expect(h.toString(16).padStart(64, "0")).toBe(v.block_hash);
      expect((TEST_DIFF1 / h).toString()).toBe(v.expect.share_difficulty_floor);
    }
  });
});

describe("sim/asic/work.ts", () => {
  it("builds the same headers as the real blocks", () => {
    for (const v of blocks.vectors) {
      const n = v.notify;
      const root = merkleRoot(
        hexToBuf(n.coinb1),
        hexToBuf(v.extranonce1),
        hexToBuf(v.submit.extranonce2),
        hexToBuf(n.coinb2),
        n.merkle_branch.map(hexToBuf),
      );
      const header = buildHeader(
        Number.parseInt(n.version, 16),
        prevhashToHeaderBytes(hexToBuf(n.prevhash)),
        root,
        Number.parseInt(v.submit.ntime, 16),
        Number.parseInt(n.nbits, 16),
        Number.parseInt(v.submit.nonce, 16),
      );
      expect(header.toString("hex")).toBe(v.expect.header_hex);
      expect(hashToBigInt(sha256d(header)).toString(16).padStart(64, "0")).toBe(v.block_hash);
    }
  });

  it("takes the target from the difficulty exactly, fractions included", () => {
    expect(DIFF1).toBe(TEST_DIFF1);
    expect(targetFromDifficulty(1)).toBe(DIFF1);
    expect(targetFromDifficulty(2 ** -20)).toBe(targetForPow2(20));
    expect(targetFromDifficulty(65536)).toBe(targetForPow2(-16));
    expect(targetFromDifficulty(3)).toBe(DIFF1 / 3n);
    // 0.1 is not 1/10 as a double: the target must be floor(DIFF1 / m·2^e) for the double's
    // exact mantissa and exponent, i.e. t·m ≤ DIFF1·2^-e < (t+1)·m.
    for (const d of [0.1, 1e-6, 1234.5678, 2 ** -30 * 3]) {
      const t = targetFromDifficulty(d);
      const { m, e } = exact(d);
      const scaled = e < 0 ? DIFF1 << BigInt(-e) : DIFF1 >> BigInt(e);
      expect(t * m <= scaled && scaled < (t + 1n) * m).toBe(true);
    }
    expect(() => targetFromDifficulty(0)).toThrow(RangeError);
    expect(targetFromDifficulty(Number.MIN_VALUE)).toBe((1n << 256n) - 1n);
  });

  it("walks the negotiated mask's bits when rolling versions", () => {
    expect(depositBits(0, 0x1fffe000)).toBe(0);
    expect(depositBits(1, 0x1fffe000)).toBe(0x2000);
    expect(depositBits(3, 0x1fffe000)).toBe(0x6000);
    expect(depositBits(0xffff, 0x1fffe000)).toBe(0x1fffe000);
    expect(depositBits(5, 0x00c00000)).toBe(0x00400000);
    expect(depositBits(0xffffffff, 0xffffffff)).toBe(0xffffffff);
  });
});

/** d = m · 2^e with m odd or e at its minimum (test-side decomposition via string math). */
function exact(d: number): { m: bigint; e: number } {
  let e = 0;
  let x = d;
  while (!Number.isInteger(x)) {
    x *= 2;
    e--;
  }
  return { m: BigInt(x), e };
}
