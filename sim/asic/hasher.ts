/**
 * Real SHA-256d work on one job: extranonce2 as a little-endian counter, ntime rolled with
 * the clock (at most +60 s, as firmware does), the version rolled within the negotiated
 * mask, one rolled version per batch. Every share it reports meets the job's target.
 */
import {
  buildHeader,
  depositBits,
  hexToBuf,
  meetsTarget,
  merkleRoot,
  prevhashToHeaderBytes,
  sha256d,
  targetFromDifficulty,
  targetToLeBytes,
} from "./work.ts";

export interface Job {
  readonly jobId: string;
  readonly prevhash: string;
  readonly coinb1: string;
  readonly coinb2: string;
  readonly branch: readonly string[];
  readonly version: number;
  readonly nbits: number;
  readonly ntime: number;
  readonly clean: boolean;
  /** The difficulty in force for this job: set_difficulty takes effect at the next notify. */
  readonly difficulty: number;
  readonly extranonce1: string;
  readonly extranonce2Size: number;
  readonly receivedAt: number;
}

export interface FoundShare {
  readonly job: Job;
  readonly extranonce2: string;
  readonly ntime: number;
  readonly nonce: number;
  /** The header's full version. */
  readonly version: number;
  readonly header: Buffer;
  /** The header hash as display hex (reversed), for events. */
  readonly hash: string;
}

export interface HasherOptions {
  /** Version bits the miner may roll (0: none). */
  readonly mask: number;
  /** First extranonce2 value. */
  readonly extranonce2: bigint;
  readonly now: () => number;
}

const MAX_NTIME_ROLL_S = 60;

export class Hasher {
  readonly job: Job;
  readonly #mask: number;
  readonly #now: () => number;
  readonly #targetLe: Buffer;
  readonly #coinb1: Buffer;
  readonly #coinb2: Buffer;
  readonly #en1: Buffer;
  readonly #branch: Buffer[];
  readonly #prev: Buffer;
  #en2: bigint;
  #header: Buffer;
  #nonce = 0;
  #rollCounter = 0;

  constructor(job: Job, options: HasherOptions) {
    this.job = job;
    this.#mask = options.mask >>> 0;
    this.#now = options.now;
    this.#targetLe = targetToLeBytes(targetFromDifficulty(job.difficulty));
    this.#coinb1 = hexToBuf(job.coinb1);
    this.#coinb2 = hexToBuf(job.coinb2);
    this.#en1 = hexToBuf(job.extranonce1);
    this.#branch = job.branch.map(hexToBuf);
    this.#prev = prevhashToHeaderBytes(hexToBuf(job.prevhash));
    this.#en2 = options.extranonce2 & this.#en2Max();
    this.#header = this.#build();
  }

  /** The next extranonce2 value to hand to the following job. */
  get nextExtranonce2(): bigint {
    return (this.#en2 + 1n) & this.#en2Max();
  }

  /** Hashes `n` nonces with one rolled version; calls onShare for each that meets the target. */
  run(n: number, onShare: (s: FoundShare) => void): void {
    const header = this.#header;
    const version = this.#rolledVersion();
    const ntime = this.#ntime();
    header.writeUInt32LE(version, 0);
    header.writeUInt32LE(ntime, 68);
    for (let i = 0; i < n; i++) {
      const nonce = this.#nonce;
      header.writeUInt32LE(nonce, 76);
      const h = sha256d(header);
      if (meetsTarget(h, this.#targetLe)) {
        onShare({
          job: this.job,
          extranonce2: this.#en2Hex(),
          ntime,
          nonce,
          version,
          header: Buffer.from(header),
          hash: Buffer.from(h).reverse().toString("hex"),
        });
      }
      if (nonce === 0xffffffff) {
        // Nonce space exhausted: next extranonce2, new merkle root.
        this.#nonce = 0;
        this.#en2 = this.nextExtranonce2;
        this.#header = this.#build();
        return;
      }
      this.#nonce = nonce + 1;
    }
  }

  #rolledVersion(): number {
    if (this.#mask === 0) return this.job.version >>> 0;
    const bits = depositBits(this.#rollCounter++, this.#mask);
    return ((this.job.version & ~this.#mask) | bits) >>> 0;
  }

  #ntime(): number {
    const rolled = Math.floor((this.#now() - this.job.receivedAt) / 1000);
    return (this.job.ntime + Math.max(0, Math.min(MAX_NTIME_ROLL_S, rolled))) >>> 0;
  }

  #en2Max(): bigint {
    return (1n << BigInt(8 * this.job.extranonce2Size)) - 1n;
  }

  #en2Hex(): string {
    const size = this.job.extranonce2Size;
    const b = Buffer.alloc(size);
    let v = this.#en2;
    for (let i = 0; i < size; i++) {
      b[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    return b.toString("hex");
  }

  #build(): Buffer {
    const root = merkleRoot(
      this.#coinb1,
      this.#en1,
      hexToBuf(this.#en2Hex()),
      this.#coinb2,
      this.#branch,
    );
    return buildHeader(this.job.version, this.#prev, root, this.job.ntime, this.job.nbits, 0);
  }
}

/**
 * The same work with a nearby nonce whose hash misses the job's target: a genuine header that
 * is simply below the difficulty in force (the low-difficulty fault).
 */
export function lowDifficultyVariant(share: FoundShare): FoundShare {
  const target = targetToLeBytes(targetFromDifficulty(share.job.difficulty));
  const header = Buffer.from(share.header);
  for (let d = 1; d < 1_000_000; d++) {
    const nonce = (share.nonce + d) >>> 0;
    header.writeUInt32LE(nonce, 76);
    const h = sha256d(header);
    if (!meetsTarget(h, target)) {
      return { ...share, nonce, header, hash: Buffer.from(h).reverse().toString("hex") };
    }
  }
  // Only at difficulties so low that every hash meets them: then no nonce can miss.
  return share;
}
