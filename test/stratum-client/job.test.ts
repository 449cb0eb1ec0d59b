import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isAgentdError } from "../../lib/errors.ts";
import {
  headerForSubmit,
  type JobFields,
  MAX_MERKLE_BRANCH,
  makeJob,
  notifyParams,
  parseNotify,
  validateWork,
} from "../../stratum-client/job.ts";
import {
  buildCoinbase,
  buildHeader,
  hashToBigInt,
  merkleRoot,
  sha256d,
} from "../../stratum-client/work.ts";

// The segwit block's job (stratum-real-blocks.json, height 542213).
const NOTIFY = [
  "d6d861ec",
  "b1eb8089ccba3612d547c466c51b96adccf9c04600085a380000000000000000",
  "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff5003054608174d696e656420627920416e74506f6f6c393b205ba350dffabe6d6d3a3e92d9efff857664de632e89fa3182f1e793d00be2e71a117b273145945a810400000000000000",
  "ffffffff028a8f814a000000001976a914edf10a7fac6b32e24daa5305c723f3de58db1bc888ac0000000000000000266a24aa21a9ed4a657fcaa2149342376247e2e283a55a6b92dcc35d4d89e4ac7b74488cb63be200000000",
  [
    "d7dadae1f07cb379e7812391eecaba37fdb41a23484482e9a19de94bebacbe66",
    "f3582962cbaaf6a1fd519a17eb98b5e0cc15a973d2c72886365b37f2fe5bb149",
  ],
  "20000000",
  "172819a1",
  "5ba350df",
  true,
] as const;

const withParam = (i: number, v: unknown) => NOTIFY.map((p, j) => (j === i ? v : p));

function expectInternal(f: () => unknown): void {
  let caught: unknown;
  try {
    f();
  } catch (err) {
    caught = err;
  }
  expect(isAgentdError(caught) && caught.code === "AGENTD_E_INTERNAL", String(caught)).toBe(true);
}

describe("parseNotify", () => {
  it("decodes the nine params into bytes and numbers", () => {
    const job = parseNotify([...NOTIFY]);
    expect(job).not.toBeNull();
    if (job === null) return;
    expect(job.jobId).toBe("d6d861ec");
    // header order: every 4-byte word of the Stratum form byte-swapped
    expect(job.prevhash.toString("hex")).toBe(
      "8980ebb11236bacc66c447d5ad961bc546c0f9cc385a08000000000000000000",
    );
    expect(job.coinb1.toString("hex")).toBe(NOTIFY[2]);
    expect(job.coinb2.toString("hex")).toBe(NOTIFY[3]);
    expect(job.branch.map((b) => b.toString("hex"))).toEqual(NOTIFY[4]);
    expect(job).toMatchObject({ version: 0x20000000, nbits: 0x172819a1, ntime: 0x5ba350df });
    expect(job.cleanJobs).toBe(true);
    expect(job.blockTarget).toBe(0x2819a1n << 160n);
    expect(Object.isFrozen(job)).toBe(true);
  });

  it("accepts upper-case hex and re-serialises it in lower case", () => {
    const upper = NOTIFY.map((p) =>
      typeof p === "string" && p !== NOTIFY[0]
        ? p.toUpperCase()
        : Array.isArray(p)
          ? p.map((s) => s.toUpperCase())
          : p,
    );
    const job = parseNotify(upper);
    expect(job).not.toBeNull();
    expect(notifyParams(job as NonNullable<typeof job>)).toEqual([...NOTIFY]);
  });

  const refused: ReadonlyArray<readonly [string, unknown]> = [
    ["not an array", { 0: "x" }],
    ["null", null],
    ["8 params", NOTIFY.slice(0, 8)],
    ["10 params", [...NOTIFY, "extra"]],
    ["empty job id", withParam(0, "")],
    ["65-char job id", withParam(0, "j".repeat(65))],
    ["numeric job id", withParam(0, 12)],
    ["prevhash 62 hex", withParam(1, "00".repeat(31))],
    ["prevhash non-hex", withParam(1, `${"00".repeat(31)}zz`)],
    ["coinb1 odd length", withParam(2, "010")],
    ["coinb2 non-hex", withParam(3, "ffffffgg")],
    ["coinb2 not a string", withParam(3, 5)],
    ["branch not an array", withParam(4, "d7dadae1")],
    ["branch entry 63 hex", withParam(4, ["0".repeat(63)])],
    ["branch entry 66 hex", withParam(4, ["0".repeat(66)])],
    ["branch entry a number", withParam(4, [7])],
    ["branch too deep", withParam(4, Array(MAX_MERKLE_BRANCH + 1).fill("00".repeat(32)))],
    ["version 7 hex", withParam(5, "2000000")],
    ["version 0x-prefixed", withParam(5, "0x200000")],
    ["version a number", withParam(5, 0x20000000)],
    ["nbits 9 hex", withParam(6, "172819a10")],
    ["nbits with the sign bit", withParam(6, "1b80ffff")],
    ["nbits overflowing", withParam(6, "ff123456")],
    ["nbits of target zero", withParam(6, "00000000")],
    ["ntime non-hex", withParam(7, "5ba350dg")],
    ["clean_jobs a string", withParam(8, "true")],
    ["clean_jobs missing", withParam(8, undefined)],
  ];
  it.each(refused)("refuses %s", (_, params) => {
    expect(parseNotify(params)).toBeNull();
  });

  it("accepts the longest job id and the deepest branch", () => {
    expect(parseNotify(withParam(0, "j".repeat(64)))).not.toBeNull();
    const deep = parseNotify(withParam(4, Array(MAX_MERKLE_BRANCH).fill("ab".repeat(32))));
    expect(deep?.branch.length).toBe(MAX_MERKLE_BRANCH);
  });
});

describe("notifyParams", () => {
  it("round-trips through parseNotify, and takes a new id or clean flag", () => {
    const job = parseNotify([...NOTIFY]);
    if (job === null) throw new Error("refused");
    expect(parseNotify([...notifyParams(job)])).toEqual(job);
    const p = notifyParams(job, { jobId: "local-7", cleanJobs: false });
    expect(p[0]).toBe("local-7");
    expect(p[8]).toBe(false);
    expect(p.slice(1, 8)).toEqual(NOTIFY.slice(1, 8));
  });
});

describe("makeJob", () => {
  const ok: JobFields = {
    jobId: "a",
    prevhash: Buffer.alloc(32),
    coinb1: Buffer.alloc(4),
    coinb2: Buffer.alloc(4),
    branch: [],
    version: 1,
    nbits: 0x1d00ffff,
    ntime: 0,
    cleanJobs: false,
  };

  it("refuses fields a caller should have validated", () => {
    expect(makeJob(ok).blockTarget).toBe(0xffffn << 208n);
    expectInternal(() => makeJob({ ...ok, jobId: "" }));
    expectInternal(() => makeJob({ ...ok, prevhash: Buffer.alloc(31) }));
    expectInternal(() => makeJob({ ...ok, branch: [Buffer.alloc(31)] }));
    expectInternal(() => makeJob({ ...ok, version: -1 }));
    expectInternal(() => makeJob({ ...ok, nbits: 0x1b80ffff }));
    expectInternal(() => makeJob({ ...ok, nbits: 0 }));
  });

  it("copies the branch array so the caller's array cannot change the job", () => {
    const branch = [Buffer.alloc(32, 1)];
    const job = makeJob({ ...ok, branch });
    branch.push(Buffer.alloc(32, 2));
    expect(job.branch.length).toBe(1);
  });
});

/** The slow reference path: work.ts's allocating helpers, one step at a time. */
function referenceHeader(
  f: JobFields,
  en1: Uint8Array,
  en2: Uint8Array,
  ntime: number,
  nonce: number,
  version: number,
): Buffer {
  const coinbase = buildCoinbase(f.coinb1, Buffer.from(en1), Buffer.from(en2), f.coinb2);
  return buildHeader({
    version,
    prevhash: f.prevhash,
    merkleRoot: merkleRoot(sha256d(coinbase), f.branch),
    ntime,
    nbits: f.nbits,
    nonce,
  });
}

const bytes = (min: number, max: number) =>
  fc.uint8Array({ minLength: min, maxLength: max }).map((b) => Buffer.from(b));
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const jobFields = fc.record({
  jobId: fc.string({ minLength: 1, maxLength: 64 }),
  prevhash: bytes(32, 32),
  // up to 1500 bytes: past the scratch buffer's first size, so it must grow
  coinb1: bytes(0, 1500),
  coinb2: bytes(0, 300),
  branch: fc.array(bytes(32, 32), { maxLength: 14 }),
  version: u32,
  nbits: fc.constantFrom(0x1d00ffff, 0x172819a1, 0x207fffff, 0x1b04864c),
  ntime: u32,
  cleanJobs: fc.boolean(),
});
const submit = fc.record({
  en1: bytes(0, 8),
  en2: bytes(0, 16),
  ntime: u32,
  nonce: u32,
  version: u32,
});

describe("per-share work", () => {
  it("equals the reference path for any job and submit, in any order of sizes", () => {
    fc.assert(
      fc.property(jobFields, fc.array(submit, { minLength: 1, maxLength: 4 }), (f, subs) => {
        const job = makeJob(f);
        for (const s of subs) {
          const expected = referenceHeader(f, s.en1, s.en2, s.ntime, s.nonce, s.version);
          const header = headerForSubmit(job, s.en1, s.en2, s.ntime, s.nonce, s.version);
          expect(header.equals(expected)).toBe(true);
          const r = validateWork(job, s.en1, s.en2, s.ntime, s.nonce, s.version, 0n, 0n);
          expect(r.hash.equals(sha256d(expected))).toBe(true);
          expect(r.value).toBe(hashToBigInt(r.hash));
        }
      }),
      { numRuns: 150 },
    );
  });

  it("never hands out its scratch buffers", () => {
    const job = parseNotify([...NOTIFY]);
    if (job === null) throw new Error("refused");
    const en1 = Buffer.from("db250000", "hex");
    const en2 = Buffer.from("acba0500", "hex");
    const a = headerForSubmit(job, en1, en2, 0x5ba350df, 0x01e39613, 0x20000000);
    const aHex = a.toString("hex");
    const r = validateWork(job, en1, en2, 0x5ba350df, 0x01e39613, 0x20000000, 0n, 0n);
    const rHex = r.hash.toString("hex");
    const b = headerForSubmit(job, en1, en2, 0x5ba350df, 1, 0x20002000);
    validateWork(job, en1, en2, 0x5ba350df, 2, 0x20004000, 0n, 0n);
    expect(b).not.toBe(a);
    expect(a.toString("hex")).toBe(aHex);
    expect(r.hash.toString("hex")).toBe(rHex);
    expect(aHex.endsWith("1396e301")).toBe(true);
  });

  it("compares with ≤: a target equal to the hash is met, one below is not", () => {
    const job = parseNotify([...NOTIFY]);
    if (job === null) throw new Error("refused");
    const en1 = Buffer.from("db250000", "hex");
    const en2 = Buffer.from("acba0500", "hex");
    const first = validateWork(job, en1, en2, 0x5ba350df, 7, 0x20000000, 0n, 0n);
    const v = first.value;
    const eq = validateWork(job, en1, en2, 0x5ba350df, 7, 0x20000000, v, v - 1n);
    expect(eq.meetsShare).toBe(true);
    expect(eq.meetsUpstream).toBe(false);
    expect(eq.isBlock).toBe(v <= job.blockTarget);
    expect(first.meetsShare).toBe(false);
  });

  it("refuses unparsed numbers", () => {
    const job = parseNotify([...NOTIFY]);
    if (job === null) throw new Error("refused");
    const e = Buffer.alloc(4);
    expectInternal(() => validateWork(job, e, e, -1, 0, 0x20000000, 0n, 0n));
    expectInternal(() => validateWork(job, e, e, 0, 2 ** 32, 0x20000000, 0n, 0n));
    expectInternal(() => headerForSubmit(job, e, e, 0, 0, 0.5));
  });
});
