/**
 * A Stratum V1 job (`mining.notify`) decoded once into bytes, and the per-share work on it.
 *
 * Parsing does every hex decode and the nBits target up front, so that validating a share is
 * only: coinbase → hash → fold the branch → header → hash → compare (PROTOCOLS.md section 1,
 * "Share validation"). That path writes into module-level scratch buffers instead of
 * allocating: it is synchronous, so no two calls can interleave on them, and nothing that
 * escapes (the returned hash, headerForSubmit's header) is a scratch buffer.
 */
import { fail } from "../lib/errors.ts";
import {
  hashToBigInt,
  isU32,
  parseHex,
  parseU32Hex,
  prevhashFromStratum,
  prevhashToStratum,
  sha256d,
  targetFromNbits,
  u32Hex,
} from "./work.ts";

/** Longer ids are refused: they are echoed in every submit and used as map keys. */
export const MAX_JOB_ID_LENGTH = 64;

/**
 * A block holds at most ~2^17 transactions (4 MWU / the smallest transaction), so a real
 * branch is ≤ 17 deep; 32 refuses nonsense while bounding the work per share.
 */
export const MAX_MERKLE_BRANCH = 32;

/**
 * A job as bytes. Buffers are shared with every share validated against the job: never
 * mutate them.
 */
export interface Job {
  readonly jobId: string;
  /** The header's 32 bytes (Stratum's word-swapped form undone). */
  readonly prevhash: Buffer;
  readonly coinb1: Buffer;
  readonly coinb2: Buffer;
  /** Each 32 bytes, internal (header) byte order. */
  readonly branch: readonly Buffer[];
  readonly version: number;
  readonly nbits: number;
  readonly ntime: number;
  readonly cleanJobs: boolean;
  /** The block target from nbits (non-zero: parseNotify refuses a job no block can meet). */
  readonly blockTarget: bigint;
}

export type JobFields = Omit<Job, "blockTarget">;

/**
 * Builds a Job from decoded fields, checking them (a throw here is a caller's bug; untrusted
 * input goes through parseNotify, which returns null instead).
 */
export function makeJob(f: JobFields): Job {
  const bad = (what: string) => fail("AGENTD_E_INTERNAL", `bad job: ${what}`, { job_id: f.jobId });
  if (f.jobId.length === 0 || f.jobId.length > MAX_JOB_ID_LENGTH) throw bad("job id length");
  if (f.prevhash.length !== 32) throw bad("prevhash is not 32 bytes");
  if (f.branch.length > MAX_MERKLE_BRANCH) throw bad("merkle branch too deep");
  if (f.branch.some((b) => b.length !== 32)) throw bad("merkle branch entry is not 32 bytes");
  if (!isU32(f.version) || !isU32(f.nbits) || !isU32(f.ntime)) throw bad("not a uint32");
  const blockTarget = targetFromNbits(f.nbits);
  if (blockTarget === null || blockTarget === 0n) throw bad("nbits");
  return Object.freeze({
    jobId: f.jobId,
    prevhash: f.prevhash,
    coinb1: f.coinb1,
    coinb2: f.coinb2,
    branch: Object.freeze([...f.branch]),
    version: f.version,
    nbits: f.nbits,
    ntime: f.ntime,
    cleanJobs: f.cleanJobs,
    blockTarget,
  });
}

/**
 * The 9 `mining.notify` params, strictly: [job_id (1..64 chars), prevhash (64 hex),
 * coinb1 (hex), coinb2 (hex), merkle_branch (≤ 32 × 64 hex), version, nbits, ntime (8 hex
 * each), clean_jobs (boolean)]. Null for anything else, including an nbits Bitcoin Core
 * would refuse (negative, overflowing) or whose target is zero.
 */
export function parseNotify(params: unknown): Job | null {
  if (!Array.isArray(params) || params.length !== 9) return null;
  const [jobId, prev, c1, c2, branchHex, v, nb, nt, clean] = params as unknown[];
  if (typeof jobId !== "string" || jobId.length === 0 || jobId.length > MAX_JOB_ID_LENGTH) {
    return null;
  }
  if (typeof clean !== "boolean") return null;
  const prevhash = prevhashFromStratum(prev);
  const coinb1 = parseHex(c1);
  const coinb2 = parseHex(c2);
  const version = parseU32Hex(v);
  const nbits = parseU32Hex(nb);
  const ntime = parseU32Hex(nt);
  if (prevhash === null || coinb1 === null || coinb2 === null) return null;
  if (version === null || nbits === null || ntime === null) return null;
  if (!Array.isArray(branchHex) || branchHex.length > MAX_MERKLE_BRANCH) return null;
  const branch: Buffer[] = [];
  for (const h of branchHex as unknown[]) {
    const b = parseHex(h, 32);
    if (b === null) return null;
    branch.push(b);
  }
  const target = targetFromNbits(nbits);
  if (target === null || target === 0n) return null;
  return makeJob({
    jobId,
    prevhash,
    coinb1,
    coinb2,
    branch,
    version,
    nbits,
    ntime,
    cleanJobs: clean,
  });
}

export type NotifyParams = readonly [
  jobId: string,
  prevhash: string,
  coinb1: string,
  coinb2: string,
  merkleBranch: readonly string[],
  version: string,
  nbits: string,
  ntime: string,
  cleanJobs: boolean,
];

/**
 * The job as `mining.notify` params again (lower-case hex), for re-sending to miners; the
 * proxy may give it its own id or clean flag. Encodes hex: call it once per job, not per miner.
 */
export function notifyParams(
  job: Job,
  override: { readonly jobId?: string; readonly cleanJobs?: boolean } = {},
): NotifyParams {
  return [
    override.jobId ?? job.jobId,
    prevhashToStratum(job.prevhash),
    job.coinb1.toString("hex"),
    job.coinb2.toString("hex"),
    job.branch.map((b) => b.toString("hex")),
    u32Hex(job.version),
    u32Hex(job.nbits),
    u32Hex(job.ntime),
    override.cleanJobs ?? job.cleanJobs,
  ];
}

// ---- per share ------------------------------------------------------------------------------

let coinbaseScratch = Buffer.allocUnsafeSlow(512);
const stepScratch = Buffer.allocUnsafeSlow(64);
const headerScratch = Buffer.allocUnsafeSlow(80);

/** The header for a submit, in headerScratch (valid until the next call). */
function fillHeader(
  job: Job,
  en1: Uint8Array,
  en2: Uint8Array,
  ntime: number,
  nonce: number,
  version: number,
): Buffer {
  if (!isU32(ntime) || !isU32(nonce) || !isU32(version)) {
    throw fail("AGENTD_E_INTERNAL", "ntime, nonce and version must be parsed uint32s");
  }
  const c1 = job.coinb1;
  const c2 = job.coinb2;
  const size = c1.length + en1.length + en2.length + c2.length;
  if (size > coinbaseScratch.length) coinbaseScratch = Buffer.allocUnsafeSlow(size * 2);
  const cb = coinbaseScratch;
  let at = c1.copy(cb, 0);
  cb.set(en1, at);
  at += en1.length;
  cb.set(en2, at);
  at += en2.length;
  c2.copy(cb, at);
  let root = sha256d(cb.subarray(0, size));
  const step = stepScratch;
  for (const b of job.branch) {
    root.copy(step, 0);
    b.copy(step, 32);
    root = sha256d(step);
  }
  const h = headerScratch;
  h.writeUInt32LE(version, 0);
  job.prevhash.copy(h, 4);
  root.copy(h, 36);
  h.writeUInt32LE(ntime, 68);
  h.writeUInt32LE(job.nbits, 72);
  h.writeUInt32LE(nonce, 76);
  return h;
}

/**
 * The 80-byte header a submit describes: coinbase = coinb1 ‖ en1 ‖ en2 ‖ coinb2, its hash
 * folded with the branch, then version (already rolled), prevhash, root, ntime, nbits, nonce.
 * Lengths of en1/en2 and the ntime window are the caller's to check. A fresh buffer.
 */
export function headerForSubmit(
  job: Job,
  extranonce1: Uint8Array,
  extranonce2: Uint8Array,
  ntime: number,
  nonce: number,
  version: number,
): Buffer {
  return Buffer.from(fillHeader(job, extranonce1, extranonce2, ntime, nonce, version));
}

export interface WorkResult {
  /** sha256d(header), internal byte order (displayHash() for the explorer form). */
  readonly hash: Buffer;
  /** The hash as the 256-bit little-endian integer compared with targets. */
  readonly value: bigint;
  readonly meetsShare: boolean;
  readonly meetsUpstream: boolean;
  /** Meets the job's own nbits target: a block. */
  readonly isBlock: boolean;
}

/**
 * Hashes a submit's header and compares it with the miner's share target, the upstream's
 * share target and the block target (meets iff value ≤ target; see targetForDifficulty).
 */
export function validateWork(
  job: Job,
  extranonce1: Uint8Array,
  extranonce2: Uint8Array,
  ntime: number,
  nonce: number,
  version: number,
  shareTarget: bigint,
  upstreamTarget: bigint,
): WorkResult {
  const hash = sha256d(fillHeader(job, extranonce1, extranonce2, ntime, nonce, version));
  const value = hashToBigInt(hash);
  return {
    hash,
    value,
    meetsShare: value <= shareTarget,
    meetsUpstream: value <= upstreamTarget,
    isBlock: value <= job.blockTarget,
  };
}
