/**
 * Jobs: what `mining.notify` carries, made from synthetic templates (or injected by tests),
 * and the book of jobs a submit may name. A clean job (a new block) makes every earlier job
 * stale; the book forgets the oldest jobs beyond a bound so a long run stays small.
 */
import type { Transaction } from "bitcoinjs-lib";
import { crypto as bcrypto } from "bitcoinjs-lib";
import { type Clock, unixSeconds } from "../../lib/clock.ts";
import { concatBytes, parseHex, toHex, u32Hex, wordSwap } from "./hex.ts";
import { buildTemplate } from "./template.ts";

/** A job in `mining.notify` encodings (PROTOCOLS.md §1). */
export interface Job {
  readonly id: string;
  /** Header prev hash with every 4-byte word byte-swapped, as Stratum sends it. */
  readonly prevhash: string;
  readonly coinb1: string;
  readonly coinb2: string;
  readonly merkleBranch: readonly string[];
  readonly version: string;
  readonly nbits: string;
  readonly ntime: string;
  readonly clean: boolean;
  /** The BIP 34 height, when the pool built the coinbase itself. */
  readonly height: number | null;
  /** The block's other transactions; absent for injected jobs (branch only). */
  readonly transactions?: readonly Transaction[];
}

/** The fields of a job given from outside (test vectors): the `mining.notify` object. */
export interface InjectedJob {
  readonly job_id: string;
  readonly prevhash: string;
  readonly coinb1: string;
  readonly coinb2: string;
  readonly merkle_branch: readonly string[];
  readonly version: string;
  readonly nbits: string;
  readonly ntime: string;
  readonly clean_jobs: boolean;
}

export function notifyParams(job: Job, clean: boolean): (string | boolean | string[])[] {
  return [
    job.id,
    job.prevhash,
    job.coinb1,
    job.coinb2,
    [...job.merkleBranch],
    job.version,
    job.nbits,
    job.ntime,
    clean,
  ];
}

export function jobFromInjected(j: InjectedJob): Job {
  const fixed = [
    ["prevhash", j.prevhash, 32],
    ["version", j.version, 4],
    ["nbits", j.nbits, 4],
    ["ntime", j.ntime, 4],
  ] as const;
  for (const [name, value, bytes] of fixed) {
    if (parseHex(value, bytes) === undefined) throw new Error(`injected job: bad ${name}`);
  }
  if (parseHex(j.coinb1) === undefined || parseHex(j.coinb2) === undefined) {
    throw new Error("injected job: bad coinbase hex");
  }
  if (!j.merkle_branch.every((b) => parseHex(b, 32) !== undefined)) {
    throw new Error("injected job: bad merkle branch");
  }
  return {
    id: j.job_id,
    prevhash: j.prevhash,
    coinb1: j.coinb1,
    coinb2: j.coinb2,
    merkleBranch: [...j.merkle_branch],
    version: j.version,
    nbits: j.nbits,
    ntime: j.ntime,
    clean: j.clean_jobs,
    height: null,
  };
}

export interface JobFactoryOptions {
  readonly clock: Clock;
  readonly txCount: number;
  readonly extranonceSize: number;
  readonly startHeight: number;
  readonly seed: string;
  readonly version: number;
  readonly nbits: number;
}

/** Makes jobs on a synthetic chain: a height and a previous block hash that advance. */
export class JobFactory {
  #height: number;
  #prevHash: Uint8Array;
  #seq = 0;
  #nbits: number;
  readonly #o: JobFactoryOptions;

  constructor(o: JobFactoryOptions) {
    this.#o = o;
    this.#height = o.startHeight;
    this.#prevHash = bcrypto.hash256(new TextEncoder().encode(`${o.seed}/genesis`));
    this.#nbits = o.nbits;
  }

  get height(): number {
    return this.#height;
  }

  /** Takes effect from the next job (nbits is part of the job). */
  setNbits(nbits: number): void {
    this.#nbits = nbits;
  }

  /**
   * Moves to the next height on top of `prevHash` (a block the pool found), or on top of a
   * made-up block someone else found.
   */
  advance(prevHash?: Uint8Array): void {
    this.#prevHash =
      prevHash ?? bcrypto.hash256(concatBytes(this.#prevHash, new TextEncoder().encode("next")));
    this.#height += 1;
  }

  make(clean: boolean): Job {
    this.#seq += 1;
    const id = this.#seq.toString(16);
    const t = buildTemplate({
      height: this.#height,
      prevHash: this.#prevHash,
      txCount: this.#o.txCount,
      seed: `${this.#o.seed}/${this.#height}/${id}`,
      extranonceSize: this.#o.extranonceSize,
    });
    return {
      id,
      prevhash: toHex(wordSwap(this.#prevHash)),
      coinb1: toHex(t.coinb1),
      coinb2: toHex(t.coinb2),
      merkleBranch: t.merkleBranch.map(toHex),
      version: u32Hex(this.#o.version),
      nbits: u32Hex(this.#nbits),
      ntime: u32Hex(unixSeconds(this.#o.clock)),
      clean,
      height: t.height,
      transactions: t.transactions,
    };
  }
}

export interface BookEntry {
  readonly job: Job;
  stale: boolean;
  /** Keys of the shares accepted for this job, to refuse duplicates. */
  readonly accepted: Set<string>;
}

export class JobBook {
  readonly #entries = new Map<string, BookEntry>();
  readonly #max: number;
  #current: Job | undefined;

  constructor(max = 64) {
    this.#max = max;
  }

  get current(): Job | undefined {
    return this.#current;
  }

  add(job: Job): void {
    if (job.clean) for (const e of this.#entries.values()) e.stale = true;
    this.#entries.delete(job.id);
    this.#entries.set(job.id, { job, stale: false, accepted: new Set() });
    this.#current = job;
    for (const id of this.#entries.keys()) {
      if (this.#entries.size <= this.#max) break;
      this.#entries.delete(id);
    }
  }

  get(id: string): BookEntry | undefined {
    return this.#entries.get(id);
  }

  has(id: string): boolean {
    return this.#entries.has(id);
  }
}
