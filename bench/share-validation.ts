/**
 * Share validation per core: a `mining.submit` line in, the verdict out, against the raw
 * SHA-256d work the share implies. Prints one line of JSON on stdout, then a table on stdout
 * (omitted with --json-only).
 *
 *   node bench/share-validation.ts [--shares N] [--warmup N] [--jobs N] [--branch N]
 *                                  [--seed N] [--json-only]
 *
 * Measured path (what the proxy does per submit): JSON.parse of the line, the params checked
 * and decoded (parseHex for extranonce2, parseU32Hex for ntime/nonce/version bits), the job
 * looked up by id, rollVersion (BIP 310), then validateWork: coinbase → sha256d → fold the
 * merkle branch → header → sha256d → compare with the share, upstream and block targets.
 * Baseline (same run, same lines, interleaved block by block, order alternating): JSON.parse
 * of the line, then node:crypto SHA-256d of exactly the bytes the share implies — the coinbase,
 * each 64-byte merkle step, the header — built before timing. Their ratio says what the
 * validation costs beyond the hashing it cannot avoid; the goal is ≥ 0.8.
 *
 * Inputs vary so that nothing is cached: several jobs (distinct coinbases, branches,
 * prevhashes; half with a regtest nbits so that blocks are found too), many sessions (each its
 * own extranonce1), a distinct extranonce2 per submit, random nonce, ntime and version bits.
 */
import { hash } from "node:crypto";
import { type Job, parseNotify, validateWork } from "../stratum-client/job.ts";
import {
  buildCoinbase,
  buildHeader,
  parseHex,
  parseU32Hex,
  prevhashToStratum,
  rollVersion,
  sha256d,
  targetForDifficulty,
  u32Hex,
} from "../stratum-client/work.ts";
import { benchArgs, integer } from "./args.ts";
import {
  type LatencySummary,
  machineInfo,
  rng,
  round,
  summarizeNs,
  sumNs,
  table,
} from "./machine.ts";

// ---- options --------------------------------------------------------------------------------

const args = benchArgs("share-validation", {
  shares: integer(100_000, 1, 100_000_000),
  warmup: integer(5000, 0, 100_000_000),
  jobs: integer(8, 1, 1000),
  branch: integer(12, 0, 32),
  seed: integer(1, 0, 2 ** 32 - 1),
});
const N = args.values.shares;
const WARMUP = args.values.warmup;
const JOBS = args.values.jobs;
const DEPTH = args.values.branch;
const SEED = args.values.seed;
const JSON_ONLY = args.jsonOnly;

const BLOCK = 2048;
const SESSIONS = 256;
const EN1_BYTES = 4;
const EN2_BYTES = 4;
const MASK = 0x1fffe000;
const SHARE_DIFFICULTY = 2 ** -31; // about half of random hashes meet it
const UPSTREAM_DIFFICULTY = 2 ** -28; // about 1 in 16
const NBITS = [0x17034219, 0x207fffff]; // a 2024 mainnet target (no blocks); regtest (half are)
const GOAL_RATIO = 0.8;
const SHARE_INTERVAL_S = 10; // what vardiff aims at per miner (PROTOCOLS.md: public-pool)
const SHA256D_PER_SHARE = DEPTH + 2;

const wallStart = process.hrtime.bigint();
const machine = machineInfo();

const rnd = rng(SEED);
const u32 = () => Math.floor(rnd() * 4_294_967_296);
const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
const randomBytes = (n: number) => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
};

// ---- jobs and sessions ----------------------------------------------------------------------

/** Jobs as an upstream would send them, parsed as the proxy does (untimed). */
function makeJobs(): Job[] {
  const out: Job[] = [];
  for (let j = 0; j < JOBS; j++) {
    const job = parseNotify([
      `job-${SEED}-${j}`,
      prevhashToStratum(randomBytes(32)),
      randomBytes(int(80, 110)).toString("hex"), // coinb1: version, input, height, tags
      randomBytes(int(120, 180)).toString("hex"), // coinb2: sequence, outputs, witness commitment
      Array.from({ length: DEPTH }, () => randomBytes(32).toString("hex")),
      "20000000",
      u32Hex(NBITS[j % NBITS.length] as number),
      u32Hex(1_750_000_000 + j * 30),
      true,
    ]);
    if (job === null) throw new Error("bench: a generated job was refused");
    out.push(job);
  }
  return out;
}
const jobs = makeJobs();
const jobById = new Map(jobs.map((j) => [j.jobId, j]));
const sessions = Array.from({ length: SESSIONS }, () => randomBytes(EN1_BYTES));
const coinbaseSizes = jobs.map((j) => j.coinb1.length + EN1_BYTES + EN2_BYTES + j.coinb2.length);
const shareTarget = targetForDifficulty(SHARE_DIFFICULTY);
const upstreamTarget = targetForDifficulty(UPSTREAM_DIFFICULTY);

// ---- inputs, per block (untimed) ------------------------------------------------------------

interface Inputs {
  /** The submit lines, as they arrive from miners. */
  readonly lines: string[];
  /** Each line's session extranonce1 (the proxy knows it from the connection). */
  readonly en1: Buffer[];
  /** The bytes the baseline hashes: coinbase, merkle steps (64 bytes each), header. */
  readonly coinbase: Buffer[];
  readonly steps: Buffer[][];
  readonly header: Buffer[];
}

let en2Counter = 0;

function makeInputs(n: number): Inputs {
  const inp: Inputs = { lines: [], en1: [], coinbase: [], steps: [], header: [] };
  for (let i = 0; i < n; i++) {
    const job = jobs[int(0, JOBS - 1)] as Job;
    const en1 = sessions[int(0, SESSIONS - 1)] as Buffer;
    const en2 = Buffer.alloc(EN2_BYTES);
    en2.writeUInt32LE(en2Counter++ >>> 0); // firmware counts extranonce2 little-endian
    const ntime = job.ntime + int(0, 60);
    const nonce = u32();
    const bits = (u32() & MASK) >>> 0;
    const withBits = rnd() < 0.8; // the rest submit without version rolling
    const params = [`owner.rig${int(0, 999)}`, job.jobId, en2.toString("hex"), u32Hex(ntime)];
    params.push(u32Hex(nonce));
    if (withBits) params.push(u32Hex(bits));
    inp.lines.push(JSON.stringify({ id: i + 1, method: "mining.submit", params }));
    inp.en1.push(en1);
    const coinbase = buildCoinbase(job.coinb1, en1, en2, job.coinb2);
    let root = sha256d(coinbase);
    const steps: Buffer[] = [];
    for (const b of job.branch) {
      const step = Buffer.concat([root, b]);
      steps.push(step);
      root = sha256d(step);
    }
    inp.coinbase.push(coinbase);
    inp.steps.push(steps);
    inp.header.push(
      buildHeader({
        version: withBits ? ((job.version & ~MASK) | bits) >>> 0 : job.version,
        prevhash: job.prevhash,
        merkleRoot: root,
        ntime,
        nbits: job.nbits,
        nonce,
      }),
    );
  }
  return inp;
}

// ---- the two series -------------------------------------------------------------------------

class Tally {
  meetsShare = 0;
  meetsUpstream = 0;
  blocks = 0;
  refused = 0;
  mismatch = 0;
  sink = 0;
}

/** The proxy's path for one submit line; null when refused (none are, here). */
function validateLine(line: string, en1: Buffer) {
  const msg = JSON.parse(line);
  const p: unknown = msg?.params;
  if (!Array.isArray(p) || p.length < 5 || p.length > 6) return null;
  const job = jobById.get(p[1]);
  if (job === undefined) return null;
  const en2 = parseHex(p[2], EN2_BYTES);
  const ntime = parseU32Hex(p[3]);
  const nonce = parseU32Hex(p[4]);
  const bits = p.length === 6 ? parseU32Hex(p[5]) : 0;
  if (en2 === null || ntime === null || nonce === null || bits === null) return null;
  const version = rollVersion(job.version, bits, MASK);
  if (version === null) return null;
  return validateWork(job, en1, en2, ntime, nonce, version, shareTarget, upstreamTarget);
}

function timeValidate(inp: Inputs, from: number, to: number, out: Float64Array, t: Tally) {
  const hashes: (Buffer | null)[] = [];
  for (let i = from; i < to; i++) {
    const line = inp.lines[i - from] as string;
    const en1 = inp.en1[i - from] as Buffer;
    const t0 = process.hrtime.bigint();
    const r = validateLine(line, en1);
    const t1 = process.hrtime.bigint();
    out[i] = Number(t1 - t0);
    hashes.push(r === null ? null : r.hash);
    if (r === null) {
      t.refused++;
      continue;
    }
    if (r.meetsShare) t.meetsShare++;
    if (r.meetsUpstream) t.meetsUpstream++;
    if (r.isBlock) t.blocks++;
  }
  // Each verdict's hash against the baseline's hash of the same header, after the timing.
  for (let k = 0; k < hashes.length; k++) {
    const h = hashes[k];
    if (h === null || h === undefined) continue;
    if (!h.equals(raw(inp.header[k] as Buffer))) t.mismatch++;
    t.sink = (t.sink + (h[31] as number)) | 0;
  }
}

/** SHA-256d exactly as the baseline runs it: node:crypto one-shot, twice. */
function raw(b: Buffer): Buffer {
  return hash("sha256", hash("sha256", b, "buffer"), "buffer");
}

function timeRaw(inp: Inputs, from: number, to: number, out: Float64Array, t: Tally) {
  for (let i = from; i < to; i++) {
    const line = inp.lines[i - from] as string;
    const coinbase = inp.coinbase[i - from] as Buffer;
    const steps = inp.steps[i - from] as Buffer[];
    const header = inp.header[i - from] as Buffer;
    const t0 = process.hrtime.bigint();
    const msg = JSON.parse(line);
    let s = (msg.id as number) + (raw(coinbase)[0] as number);
    for (let k = 0; k < steps.length; k++) s += raw(steps[k] as Buffer)[0] as number;
    s += raw(header)[31] as number;
    const t1 = process.hrtime.bigint();
    out[i] = Number(t1 - t0);
    t.sink = (t.sink + s) | 0;
  }
}

/** Both series over the same lines, block by block, which goes first alternating. */
function run(n: number, vOut: Float64Array, rOut: Float64Array, vt: Tally, rt: Tally) {
  for (let b = 0, block = 0; b < n; b += BLOCK, block++) {
    const end = Math.min(n, b + BLOCK);
    const inp = makeInputs(end - b);
    if (block % 2 === 0) {
      timeValidate(inp, b, end, vOut, vt);
      timeRaw(inp, b, end, rOut, rt);
    } else {
      timeRaw(inp, b, end, rOut, rt);
      timeValidate(inp, b, end, vOut, vt);
    }
  }
}

if (WARMUP > 0) {
  const scratch = new Float64Array(WARMUP);
  run(WARMUP, scratch, scratch, new Tally(), new Tally());
}
const vOut = new Float64Array(N);
const rOut = new Float64Array(N);
const vTally = new Tally();
const rTally = new Tally();
const runStart = process.hrtime.bigint();
run(N, vOut, rOut, vTally, rTally);
const runWallS = Number(process.hrtime.bigint() - runStart) / 1e9;

// ---- report ---------------------------------------------------------------------------------

const ratio = (a: number, b: number) => round(a / b, 3);
const vStats = summarizeNs(vOut);
const rStats = summarizeNs(rOut);
const vPerS = round((N * 1e9) / sumNs(vOut), 1);
const rPerS = round((N * 1e9) / sumNs(rOut), 1);
const throughputRatio = ratio(vPerS, rPerS);
const coinbaseMin = Math.min(...coinbaseSizes);
const coinbaseMax = Math.max(...coinbaseSizes);

const report = {
  bench: "share-validation",
  machine,
  config: {
    shares: N,
    warmup_shares: WARMUP,
    block: BLOCK,
    jobs: JOBS,
    branch_depth: DEPTH,
    sessions: SESSIONS,
    extranonce1_bytes: EN1_BYTES,
    extranonce2_bytes: EN2_BYTES,
    coinbase_bytes: { min: coinbaseMin, max: coinbaseMax },
    version_mask: u32Hex(MASK),
    version_rolling_share: 0.8,
    share_difficulty: SHARE_DIFFICULTY,
    upstream_difficulty: UPSTREAM_DIFFICULTY,
    nbits: NBITS.map(u32Hex),
    seed: SEED,
    timer: "process.hrtime.bigint() around each share; nothing subtracted",
    measured:
      "JSON.parse(submit line), params decoded, job lookup, rollVersion, validateWork (coinbase, merkle fold, header, sha256d, three target comparisons)",
    baseline:
      "JSON.parse(submit line), then node:crypto sha256d of the prebuilt coinbase, each 64-byte merkle step and the header",
  },
  results: {
    validate: {
      ...vStats,
      shares_per_s: vPerS,
      meets_share: vTally.meetsShare,
      meets_upstream: vTally.meetsUpstream,
      blocks: vTally.blocks,
      refused: vTally.refused,
      hash_mismatch: vTally.mismatch,
    },
  },
  baseline: {
    raw_sha256d: {
      ...rStats,
      shares_per_s: rPerS,
      sha256d_per_share: SHA256D_PER_SHARE,
      sha256d_per_s: round(rPerS * SHA256D_PER_SHARE, 1),
    },
  },
  ratios: {
    throughput_validate_over_raw: throughputRatio,
    p50_raw_over_validate: ratio(rStats.p50_us, vStats.p50_us),
    p99_raw_over_validate: ratio(rStats.p99_us, vStats.p99_us),
    overhead_us_per_share: round(vStats.mean_us - rStats.mean_us, 3),
  },
  goal: { min_ratio: GOAL_RATIO, met: throughputRatio >= GOAL_RATIO },
  capacity: {
    share_interval_s: SHARE_INTERVAL_S,
    miners_per_core: Math.floor(vPerS * SHARE_INTERVAL_S),
    core_fraction_for_10000_miners: round(10_000 / SHARE_INTERVAL_S / vPerS, 4),
  },
  wall_s: {
    total: round(Number(process.hrtime.bigint() - wallStart) / 1e9, 2),
    series: round(runWallS, 2),
  },
  sink: (vTally.sink + rTally.sink) & 0xffff,
};

process.stdout.write(`${JSON.stringify(report)}\n`);

if (!JSON_ONLY) {
  const row = (name: string, s: LatencySummary, perS: number) =>
    [name, s.count, s.p50_us, s.p90_us, s.p99_us, s.p99_9_us, s.max_us, s.mean_us, perS] as const;
  const m = machine;
  const lines = [
    "",
    `machine: ${m.cpu}, ${m.cores} cores, ${m.memory_gib} GiB, Node ${m.node}, ${m.os} ${m.arch}, load ${m.loadavg_1m}`,
    `shares: ${N}, ${JOBS} jobs, merkle branch ${DEPTH} deep, coinbase ${coinbaseMin}..${coinbaseMax} bytes, ${SESSIONS} sessions`,
    "",
    table(
      ["µs per share", "count", "p50", "p90", "p99", "p99.9", "max", "mean", "shares/s"],
      [
        row("submit line → validateWork", vStats, vPerS),
        row(`JSON.parse + raw sha256d ×${SHA256D_PER_SHARE} (baseline)`, rStats, rPerS),
      ],
    ),
    table(
      ["ratio", "value"],
      [
        ["throughput validate / raw", throughputRatio],
        ["p50 raw / validate", report.ratios.p50_raw_over_validate],
        ["p99 raw / validate", report.ratios.p99_raw_over_validate],
        ["overhead µs per share (mean)", report.ratios.overhead_us_per_share],
      ],
    ),
    `verdicts: ${vTally.meetsShare} met the share target, ${vTally.meetsUpstream} the upstream's, ${vTally.blocks} blocks, ${vTally.refused} refused, ${vTally.mismatch} hash mismatches`,
    `capacity: ${report.capacity.miners_per_core} miners per core at one share per ${SHARE_INTERVAL_S} s; 10,000 miners use ${round(100 * report.capacity.core_fraction_for_10000_miners, 1)}% of a core`,
    `goal: validation throughput >= ${GOAL_RATIO} x raw SHA-256d: ${report.goal.met ? "met" : "NOT met"} (${throughputRatio})`,
    "",
  ];
  process.stdout.write(lines.join("\n"));
}
