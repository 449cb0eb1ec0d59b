import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  headerForSubmit,
  notifyParams,
  parseNotify,
  validateWork,
} from "../../stratum-client/job.ts";
import {
  buildCoinbase,
  buildHeader,
  DIFF1_TARGET,
  displayHash,
  hashToBigInt,
  legacyMultiVersion,
  merkleRoot,
  parseHex,
  parseU32Hex,
  prevhashFromStratum,
  prevhashToStratum,
  rollVersion,
  sha256d,
  targetForDifficulty,
  targetFromNbits,
} from "../../stratum-client/work.ts";

/**
 * Every vector in /work/shared/vectors, as its README states. Headers are always built from
 * the fields; header_hex is only ever the expectation.
 */

const DIR = "/work/shared/vectors";
const load = (name: string) => JSON.parse(readFileSync(`${DIR}/${name}`, "utf8"));

interface Notify {
  job_id: string;
  prevhash: string;
  coinb1: string;
  coinb2: string;
  merkle_branch: string[];
  version: string;
  nbits: string;
  ntime: string;
  clean_jobs: boolean;
}

const notifyArray = (n: Notify) => [
  n.job_id,
  n.prevhash,
  n.coinb1,
  n.coinb2,
  n.merkle_branch,
  n.version,
  n.nbits,
  n.ntime,
  n.clean_jobs,
];

function hex(s: string, bytes?: number): Buffer {
  const b = parseHex(s, bytes);
  if (b === null) throw new Error(`vector field is not hex: ${s}`);
  return b;
}

function u32(s: string): number {
  const v = parseU32Hex(s);
  if (v === null) throw new Error(`vector field is not 8 hex digits: ${s}`);
  return v;
}

function target(nbits: number): bigint {
  const t = targetFromNbits(nbits);
  if (t === null) throw new Error(`vector nbits refused: ${nbits}`);
  return t;
}

describe("stratum-real-blocks.json", () => {
  const file = load("stratum-real-blocks.json");
  interface Block {
    block_hash: string;
    extranonce1: string;
    extranonce2_size: number;
    notify: Notify;
    submit: { extranonce2: string; ntime: string; nonce: string };
    expect: {
      coinbase_txid: string;
      merkle_root: string;
      header_hex: string;
      share_difficulty_floor: string;
    };
  }
  const blocks = file.vectors as Block[];

  it("holds the nine blocks and the diff1 target the README states", () => {
    expect(blocks.length).toBe(9);
    expect(BigInt(`0x${file.diff1_target}`)).toBe(DIFF1_TARGET);
  });

  describe.each(blocks.map((b) => [b.block_hash, b] as const))("block %s", (_, v) => {
    const n = v.notify;
    const en1 = hex(v.extranonce1);
    const en2 = hex(v.submit.extranonce2, v.extranonce2_size);
    const ntime = u32(v.submit.ntime);
    const nonce = u32(v.submit.nonce);

    it("the header built from the fields is header_hex; its hash is block_hash", () => {
      const coinbase = buildCoinbase(hex(n.coinb1), en1, en2, hex(n.coinb2));
      const txid = sha256d(coinbase);
      expect(displayHash(txid)).toBe(v.expect.coinbase_txid);
      const root = merkleRoot(
        txid,
        n.merkle_branch.map((b) => hex(b, 32)),
      );
      expect(displayHash(root)).toBe(v.expect.merkle_root);
      const prevhash = prevhashFromStratum(n.prevhash);
      expect(prevhash).not.toBeNull();
      const header = buildHeader({
        version: u32(n.version),
        prevhash: prevhash as Buffer,
        merkleRoot: root,
        ntime,
        nbits: u32(n.nbits),
        nonce,
      });
      expect(header.toString("hex")).toBe(v.expect.header_hex);
      const h = sha256d(header);
      expect(displayHash(h)).toBe(v.block_hash);
      expect((DIFF1_TARGET / hashToBigInt(h)).toString()).toBe(v.expect.share_difficulty_floor);
      expect(hashToBigInt(h) <= target(u32(n.nbits))).toBe(true);
    });

    it("the job path (parseNotify, headerForSubmit, validateWork) agrees", () => {
      const job = parseNotify(notifyArray(n));
      expect(job).not.toBeNull();
      if (job === null) return;
      expect(job.blockTarget).toBe(target(u32(n.nbits)));
      const header = headerForSubmit(job, en1, en2, ntime, nonce, job.version);
      expect(header.toString("hex")).toBe(v.expect.header_hex);

      const floor = BigInt(v.expect.share_difficulty_floor);
      // floor(DIFF1/h) = F means h ≤ DIFF1/F and h > DIFF1/(F+1): difficulty F met, F+1 not.
      const atFloor = targetForDifficulty(Number(floor));
      const above = targetForDifficulty(Number(floor + 1n));
      const r = validateWork(job, en1, en2, ntime, nonce, job.version, atFloor, above);
      expect(displayHash(r.hash)).toBe(v.block_hash);
      expect(r.value).toBe(hashToBigInt(r.hash));
      expect(DIFF1_TARGET / r.value).toBe(floor);
      expect(r.meetsShare).toBe(true);
      expect(r.meetsUpstream).toBe(false);
      expect(r.isBlock).toBe(true);

      // One nonce further is another header, and not this block.
      const other = validateWork(job, en1, en2, ntime, (nonce + 1) >>> 0, job.version, 0n, 0n);
      expect(displayHash(other.hash)).not.toBe(v.block_hash);
      expect(other.isBlock).toBe(false);
    });

    it("notifyParams re-serialises the job as the pool sent it", () => {
      const job = parseNotify(notifyArray(n));
      expect(job).not.toBeNull();
      if (job === null) return;
      expect(notifyParams(job)).toEqual(notifyArray(n));
      expect(prevhashToStratum(job.prevhash)).toBe(n.prevhash);
    });
  });
});

describe("headers.json", () => {
  const file = load("headers.json");
  const vectors = file.vectors as { block_hash: string; header_hex: string; valid: boolean }[];

  it("holds valid headers and the one with a changed nonce", () => {
    expect(vectors.length).toBe(3);
    expect(vectors.filter((v) => !v.valid).length).toBe(1);
  });

  it.each(vectors.map((v) => [v.block_hash, v] as const))("%s", (_, v) => {
    const raw = hex(v.header_hex, 80);
    const nbits = raw.readUInt32LE(72);
    // Rebuilt from its parsed fields, the header is the same bytes.
    const rebuilt = buildHeader({
      version: raw.readUInt32LE(0),
      prevhash: raw.subarray(4, 36),
      merkleRoot: raw.subarray(36, 68),
      ntime: raw.readUInt32LE(68),
      nbits,
      nonce: raw.readUInt32LE(76),
    });
    expect(rebuilt.equals(raw)).toBe(true);
    const h = sha256d(rebuilt);
    expect(displayHash(h)).toBe(v.block_hash);
    expect(hashToBigInt(h) <= target(nbits)).toBe(v.valid);
  });
});

describe("nbits-targets.json", () => {
  const file = load("nbits-targets.json");
  const vectors = file.vectors as { bits: string; expected: string; sign_bit_set?: boolean }[];

  it("holds six entries, two with the sign bit set", () => {
    expect(vectors.length).toBe(6);
    expect(vectors.filter((v) => v.sign_bit_set === true).length).toBe(2);
  });

  it.each(vectors.map((v) => [v.bits, v] as const))("%s", (_, v) => {
    const bits = u32(v.bits);
    const t = targetFromNbits(bits);
    if (v.sign_bit_set === true) {
      expect(t).toBeNull();
      // Refused for the sign bit alone: without it, the mantissa reads as bitcoinjs-lib does.
      expect(
        targetFromNbits((bits & ~0x00800000) >>> 0)
          ?.toString(16)
          .padStart(64, "0"),
      ).toBe(v.expected);
    } else {
      expect(t?.toString(16).padStart(64, "0")).toBe(v.expected);
    }
  });
});

describe("version-rolling.json", () => {
  const file = load("version-rolling.json");
  const mask = u32(file.negotiated_mask);
  interface Case {
    version_bits: string;
    header_version?: string;
    header_hex?: string;
    block_hash?: string;
    valid: boolean;
  }
  const cases = file.cases as Case[];
  const job = parseNotify(notifyArray(file.job as Notify));
  const en1 = hex(file.extranonce1);
  const en2 = hex(file.submit.extranonce2);
  const ntime = u32(file.submit.ntime);
  const nonce = u32(file.submit.nonce);

  it("holds five valid cases and two refused ones", () => {
    expect(job).not.toBeNull();
    expect(mask).toBe(0x1fffe000);
    expect(cases.filter((c) => c.valid).length).toBe(5);
    expect(cases.filter((c) => !c.valid).length).toBe(2);
  });

  it.each(cases.map((c) => [c.version_bits, c] as const))("bits %s", (_, c) => {
    if (job === null) throw new Error("job refused");
    const bits = u32(c.version_bits);
    const version = rollVersion(job.version, bits, mask);
    if (!c.valid) {
      expect(version).toBeNull();
      return;
    }
    expect(version).toBe(u32(c.header_version as string));
    const v = version as number;
    const header = headerForSubmit(job, en1, en2, ntime, nonce, v);
    expect(header.toString("hex")).toBe(c.header_hex);
    const r = validateWork(job, en1, en2, ntime, nonce, v, DIFF1_TARGET, DIFF1_TARGET);
    expect(displayHash(r.hash)).toBe(c.block_hash);
    // Only the real block (no rolled bits) meets the block target.
    expect(r.isBlock).toBe(bits === 0);
    // The legacy dialect sends the whole version: the same header version is accepted.
    expect(legacyMultiVersion(job.version, v, mask)).toBe(v);
  });
});
