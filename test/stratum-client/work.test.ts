import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isAgentdError } from "../../lib/errors.ts";
import {
  buildCoinbase,
  buildHeader,
  DIFF1_TARGET,
  displayHash,
  hashToBigInt,
  isHex,
  legacyMultiVersion,
  MAX_TARGET,
  merkleRoot,
  parseHex,
  parseU32Hex,
  prevhashFromStratum,
  prevhashToStratum,
  rollVersion,
  sha256d,
  targetForDifficulty,
  targetFromNbits,
  u32Hex,
} from "../../stratum-client/work.ts";

function expectInternal(f: () => unknown): void {
  let caught: unknown;
  try {
    f();
  } catch (err) {
    caught = err;
  }
  expect(isAgentdError(caught) && caught.code === "AGENTD_E_INTERNAL", String(caught)).toBe(true);
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();

describe("sha256d", () => {
  it("matches known digests", () => {
    expect(sha256d(Buffer.alloc(0)).toString("hex")).toBe(
      "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456",
    );
    expect(sha256d(Buffer.from("hello")).toString("hex")).toBe(
      "9595c9df90075148eb06860365df33584b75bff782a510c6cd4883a419833d50",
    );
  });

  it("is SHA-256 applied twice, for any bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        expect(sha256d(b).equals(sha(sha(b)))).toBe(true);
      }),
    );
  });
});

describe("hex", () => {
  it("parseHex decodes even-length hex in either case", () => {
    expect(parseHex("00ff7Fa0")?.toString("hex")).toBe("00ff7fa0");
    expect(parseHex("ABCDEF")?.toString("hex")).toBe("abcdef");
    expect(parseHex("")?.length).toBe(0);
    expect(parseHex("0a0b", 2)?.toString("hex")).toBe("0a0b");
  });

  it("parseHex refuses odd length, non-hex, non-ASCII look-alikes, wrong size, non-strings", () => {
    for (const s of ["0", "abc", "0g", "g0", "0x12", " 012", "01 ", "İ0", "0İ", "\u01300a", "zz"]) {
      expect(parseHex(s), s).toBeNull();
      expect(isHex(s), s).toBe(false);
    }
    // past 32 bytes a second decoder runs: it is just as strict
    const long = "00".repeat(40);
    for (const s of [`${long}0g`, `İ0${long}`, `${long}0`, `${long} 0`]) {
      expect(parseHex(s), s).toBeNull();
    }
    expect(parseHex(`${long}aB`)?.toString("hex")).toBe(`${long}ab`);
    expect(parseHex("0a0b", 3)).toBeNull();
    expect(parseHex("0a0b", 1)).toBeNull();
    for (const v of [null, undefined, 12, ["00"], { hex: "00" }]) expect(parseHex(v)).toBeNull();
  });

  it("parseHex agrees with Buffer's hex for every byte string, either case", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.boolean(), (b, upper) => {
        const hex = Buffer.from(b).toString("hex");
        const s = upper ? hex.toUpperCase() : hex;
        expect(parseHex(s)?.equals(b)).toBe(true);
        expect(parseHex(s, b.length)?.equals(b)).toBe(true);
      }),
    );
  });

  it("parseU32Hex reads exactly 8 hex digits as a big-endian uint32", () => {
    expect(parseU32Hex("00000000")).toBe(0);
    expect(parseU32Hex("00000001")).toBe(1);
    expect(parseU32Hex("7fffffff")).toBe(0x7fffffff);
    expect(parseU32Hex("80000000")).toBe(0x80000000); // not negative
    expect(parseU32Hex("FFFFFFFF")).toBe(0xffffffff);
    expect(parseU32Hex("5ba350df")).toBe(0x5ba350df);
    for (const s of ["", "0000000", "000000000", "0x000000", "+0000000", "-0000001", "0000000g"]) {
      expect(parseU32Hex(s), s).toBeNull();
    }
    expect(parseU32Hex("0000000İ")).toBeNull();
    expect(parseU32Hex(5)).toBeNull();
    expect(parseU32Hex(null)).toBeNull();
  });

  it("u32Hex and parseU32Hex are inverse over all uint32s", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (v) => {
        const s = u32Hex(v);
        expect(s).toMatch(/^[0-9a-f]{8}$/);
        expect(parseU32Hex(s)).toBe(v);
      }),
    );
    expectInternal(() => u32Hex(-1));
    expectInternal(() => u32Hex(2 ** 32));
    expectInternal(() => u32Hex(1.5));
  });
});

/**
 * The exact rational value of a double, found independently of work.ts: doubling a finite
 * double is exact, so double it (doubling the denominator) until it is an integer.
 */
function exactRational(d: number): { num: bigint; den: bigint } {
  let x = d;
  let den = 1n;
  while (!Number.isInteger(x)) {
    x *= 2;
    den *= 2n;
  }
  return { num: BigInt(x), den };
}

function expectedTarget(d: number): bigint {
  const { num, den } = exactRational(d);
  const t = (DIFF1_TARGET * den) / num;
  return t > MAX_TARGET ? MAX_TARGET : t;
}

describe("targets from difficulty", () => {
  it("DIFF1_TARGET is 0x00000000FFFF0000…0000", () => {
    expect(DIFF1_TARGET.toString(16).padStart(64, "0")).toBe(`00000000ffff${"0".repeat(52)}`);
    expect(MAX_TARGET).toBe(2n ** 256n - 1n);
  });

  it("difficulty 1, 2, 0.5, 3, 2^-20, 2^16", () => {
    expect(targetForDifficulty(1)).toBe(DIFF1_TARGET);
    expect(targetForDifficulty(2)).toBe(DIFF1_TARGET / 2n);
    expect(targetForDifficulty(0.5)).toBe(DIFF1_TARGET * 2n);
    expect(targetForDifficulty(3)).toBe(DIFF1_TARGET / 3n);
    expect(targetForDifficulty(2 ** -20)).toBe(DIFF1_TARGET << 20n);
    expect(targetForDifficulty(65536)).toBe(0xffffn << 192n);
  });

  it("0.001 is the double's exact rational, not 1/1000 and not a float division", () => {
    const exact = expectedTarget(0.001);
    expect(targetForDifficulty(0.001)).toBe(exact);
    // 0.001 as a double is slightly above 1/1000, so the target is slightly below DIFF1·1000.
    expect(exact).toBeLessThan(DIFF1_TARGET * 1000n);
    expect(DIFF1_TARGET * 1000n - exact).toBeGreaterThan(10n ** 50n);
    // A float division loses the low digits altogether.
    const naive = BigInt(Math.floor(Number(DIFF1_TARGET) / 0.001));
    expect(naive).not.toBe(exact);
    // The exact value is the floor: t·num ≤ DIFF1·den < (t+1)·num.
    const { num, den } = exactRational(0.001);
    expect(exact * num <= DIFF1_TARGET * den).toBe(true);
    expect((exact + 1n) * num > DIFF1_TARGET * den).toBe(true);
  });

  it("caps at 2^256 − 1 and reaches 0 for huge difficulties", () => {
    expect(targetForDifficulty(Number.MIN_VALUE)).toBe(MAX_TARGET);
    expect(targetForDifficulty(2 ** -33)).toBe(MAX_TARGET); // DIFF1·2^33 ≥ 2^256
    expect(targetForDifficulty(2 ** -32)).toBe(DIFF1_TARGET << 32n);
    expect(targetForDifficulty(Number.MAX_VALUE)).toBe(0n);
  });

  it("refuses d ≤ 0, NaN and infinities", () => {
    for (const d of [0, -0, -1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      expectInternal(() => targetForDifficulty(d));
    }
  });

  it("is exact for any positive finite double, subnormals included", () => {
    const positive = fc.double({ min: Number.MIN_VALUE, max: Number.MAX_VALUE, noNaN: true });
    fc.assert(
      fc.property(positive, (d) => {
        const t = targetForDifficulty(d);
        expect(t).toBe(expectedTarget(d));
        if (t < MAX_TARGET) {
          const { num, den } = exactRational(d);
          expect(t * num <= DIFF1_TARGET * den && (t + 1n) * num > DIFF1_TARGET * den).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("is monotonic: a higher difficulty never has a higher target", () => {
    // Above 2^-32 nothing is capped, and targets (≈ 2^224 / d) are large enough for every step
    // between neighbouring doubles to show: strictly decreasing.
    const share = fc.double({ min: 2 ** -32, max: 1e15, noNaN: true });
    fc.assert(
      fc.property(share, share, (a, b) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        const tLo = targetForDifficulty(lo);
        const tHi = targetForDifficulty(hi);
        expect(lo < hi ? tLo > tHi : tLo === tHi).toBe(true);
      }),
      { numRuns: 500 },
    );
    // neighbouring doubles
    for (const d of [2 ** -32, 0.001, 1, 3, 1e15]) {
      const next = d + d * Number.EPSILON;
      expect(next > d && targetForDifficulty(next) < targetForDifficulty(d)).toBe(true);
    }
  });
});

describe("targets from nbits (Bitcoin Core SetCompact)", () => {
  // Bitcoin Core's arith_uint256 tests (bignum_SetCompact): null where Core sets fNegative or
  // fOverflow.
  const cases: ReadonlyArray<readonly [number, bigint | null]> = [
    [0x00000000, 0n],
    [0x00123456, 0n],
    [0x01003456, 0n],
    [0x02000056, 0n],
    [0x03000000, 0n],
    [0x04000000, 0n],
    [0x00923456, 0n], // sign bit, but the mantissa shifted out: not negative
    [0x01803456, 0n],
    [0x02800056, 0n],
    [0x03800000, 0n],
    [0x04800000, 0n],
    [0x01123456, 0x12n],
    [0x01fedcba, null], // 0x7e, negative
    [0x02123456, 0x1234n],
    [0x03123456, 0x123456n],
    [0x04123456, 0x12345600n],
    [0x04923456, null],
    [0x05009234, 0x92340000n],
    [0x20123456, 0x123456n << 232n],
    [0xff123456, null],
    [0x1d00ffff, DIFF1_TARGET],
  ];
  it.each(cases)("%i", (nbits, expected) => {
    expect(targetFromNbits(nbits)).toBe(expected);
  });

  it("overflow is exactly 'does not fit in 256 bits'", () => {
    expect(targetFromNbits(0x220000ff)).toBe(0xffn << 248n); // size 34, one byte: fits
    expect(targetFromNbits(0x22000100)).toBeNull();
    expect(targetFromNbits(0x2100ffff)).toBe(0xffffn << 240n);
    expect(targetFromNbits(0x21010000)).toBeNull();
    expect(targetFromNbits(0x207fffff)).toBe(0x7fffffn << 232n);
    expect(targetFromNbits(0x23000001)).toBeNull();
    expect(targetFromNbits(0x23000000)).toBe(0n); // zero mantissa never overflows
  });

  it("refuses values that are not uint32s", () => {
    for (const v of [-1, 2 ** 32, 1.5, Number.NaN]) expect(targetFromNbits(v)).toBeNull();
  });
});

describe("hash as a number", () => {
  it("is little-endian over all 32 bytes", () => {
    const h = Buffer.alloc(32);
    h[0] = 1;
    expect(hashToBigInt(h)).toBe(1n);
    h[0] = 0;
    h[31] = 0x80;
    expect(hashToBigInt(h)).toBe(1n << 255n);
    h[8] = 2;
    expect(hashToBigInt(h)).toBe((1n << 255n) | (2n << 64n));
  });

  it("equals the display hex read as a big-endian number", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (b) => {
        const h = Buffer.from(b);
        const before = h.toString("hex");
        expect(hashToBigInt(h)).toBe(BigInt(`0x${displayHash(h)}`));
        expect(h.toString("hex")).toBe(before); // displayHash does not reverse in place
      }),
    );
    expectInternal(() => hashToBigInt(Buffer.alloc(31)));
  });
});

describe("prevhash", () => {
  it("swaps every 4-byte word", () => {
    const s = `000102030405060708090a0b${"0c0d0e0f".repeat(5)}`;
    const b = prevhashFromStratum(s);
    expect(b?.toString("hex")).toBe(`03020100070605040b0a0908${"0f0e0d0c".repeat(5)}`);
  });

  it("round-trips, and refuses anything but 64 hex digits", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (b) => {
        const header = Buffer.from(b);
        const s = prevhashToStratum(header);
        expect(prevhashFromStratum(s)?.equals(header)).toBe(true);
        expect(header.equals(b)).toBe(true); // not swapped in place
      }),
    );
    expect(prevhashFromStratum("00".repeat(31))).toBeNull();
    expect(prevhashFromStratum("00".repeat(33))).toBeNull();
    expect(prevhashFromStratum(`${"00".repeat(31)}0g`)).toBeNull();
    expectInternal(() => prevhashToStratum(Buffer.alloc(31)));
  });
});

describe("coinbase, merkle root, header", () => {
  it("concatenates the coinbase pieces", () => {
    const cb = buildCoinbase(
      Buffer.from("aa", "hex"),
      Buffer.from("bbcc", "hex"),
      Buffer.from("dd", "hex"),
      Buffer.from("ee", "hex"),
    );
    expect(cb.toString("hex")).toBe("aabbccddee");
  });

  it("folds the branch left to right, the running root first", () => {
    const c = sha256d(Buffer.from("coinbase"));
    const b1 = sha256d(Buffer.from("one"));
    const b2 = sha256d(Buffer.from("two"));
    const expected = sha(sha(Buffer.concat([sha(sha(Buffer.concat([c, b1]))), b2])));
    expect(merkleRoot(c, [b1, b2]).equals(expected)).toBe(true);
    expect(merkleRoot(c, []).equals(c)).toBe(true);
  });

  it("lays the header out as LE32 version, prevhash, root, LE32 ntime, nbits, nonce", () => {
    const prevhash = Buffer.alloc(32, 0x11);
    const root = Buffer.alloc(32, 0x22);
    const h = buildHeader({
      version: 0x20000000,
      prevhash,
      merkleRoot: root,
      ntime: 0x5ba350df,
      nbits: 0x172819a1,
      nonce: 0x01e39613,
    });
    expect(h.toString("hex")).toBe(
      `00000020${"11".repeat(32)}${"22".repeat(32)}df50a35ba11928171396e301`,
    );
  });

  it("refuses fields it cannot encode", () => {
    const ok = {
      version: 1,
      prevhash: Buffer.alloc(32),
      merkleRoot: Buffer.alloc(32),
      ntime: 0,
      nbits: 0x1d00ffff,
      nonce: 0,
    };
    expect(buildHeader(ok).length).toBe(80);
    expectInternal(() => buildHeader({ ...ok, nonce: -1 }));
    expectInternal(() => buildHeader({ ...ok, version: 2 ** 32 }));
    expectInternal(() => buildHeader({ ...ok, ntime: 0.5 }));
    expectInternal(() => buildHeader({ ...ok, prevhash: Buffer.alloc(31) }));
    expectInternal(() => buildHeader({ ...ok, merkleRoot: Buffer.alloc(33) }));
  });
});

describe("version rolling", () => {
  const MASK = 0x1fffe000;

  it("BIP 310: job bits outside the mask, miner bits inside", () => {
    expect(rollVersion(0x20000000, 0x00002000, MASK)).toBe(0x20002000);
    expect(rollVersion(0x20000000, 0x1fffe000, MASK)).toBe(0x3fffe000);
    // job bits inside the mask are replaced, not OR-ed
    expect(rollVersion(0x20004000, 0x00002000, MASK)).toBe(0x20002000);
    expect(rollVersion(0x20000000, 0, 0)).toBe(0x20000000);
    expect(rollVersion(0xffffffff, 0, MASK)).toBe(0xe0001fff); // unsigned, not negative
  });

  it("refuses bits outside the mask", () => {
    expect(rollVersion(0x20000000, 0x00001000, MASK)).toBeNull();
    expect(rollVersion(0x20000000, 0xe0000000, MASK)).toBeNull();
    expect(rollVersion(0x20000000, 0x00000001, 0)).toBeNull();
    expectInternal(() => rollVersion(0x20000000, -1, MASK));
  });

  it("keeps the job's bits outside the mask and takes the miner's inside, for any input", () => {
    const u32 = fc.integer({ min: 0, max: 0xffffffff });
    fc.assert(
      fc.property(u32, u32, u32, (job, bits, mask) => {
        const v = rollVersion(job, bits, mask);
        if ((bits & ~mask) !== 0) {
          expect(v).toBeNull();
          return;
        }
        expect(v).not.toBeNull();
        const r = v as number;
        expect(r >= 0 && r <= 0xffffffff).toBe(true);
        expect((r & ~mask) >>> 0).toBe((job & ~mask) >>> 0);
        expect((r & mask) >>> 0).toBe(bits >>> 0);
      }),
    );
  });

  it("legacy multi_version: the full version may differ only inside the mask", () => {
    expect(legacyMultiVersion(0x20000000, 0x3fffe000, MASK)).toBe(0x3fffe000);
    expect(legacyMultiVersion(0x20000000, 0x20000000, MASK)).toBe(0x20000000);
    expect(legacyMultiVersion(0x20000000, 0x20001000, MASK)).toBeNull();
    expect(legacyMultiVersion(0x20000000, 0x00002000, MASK)).toBeNull(); // top bit dropped
    expect(legacyMultiVersion(0x20000000, 0xa0000000, MASK)).toBeNull();
    expect(legacyMultiVersion(0xe0000000, 0xe0002000, MASK)).toBe(0xe0002000);
  });
});
