/**
 * What the pool accepted and refused, per user: the record tests and the CLI read
 * (`SimPool.stats()`, and one stdout line per accepted share).
 */

/** One accepted share; also the `share` object of the CLI's stdout line (sim/README.md). */
export interface AcceptedShare {
  readonly user: string;
  readonly job: string;
  readonly extranonce1: string;
  readonly extranonce2: string;
  readonly ntime: string;
  readonly nonce: string;
  /** The header version after rolling, 8 hex. */
  readonly version: string;
  /** The header hash in display order (big-endian hex). */
  readonly hash: string;
  /** The difficulty the share was credited at (the one in force when its job was sent). */
  readonly difficulty: number;
  /** The hash meets the job's nbits target: a block candidate. */
  readonly block: boolean;
  /** The BIP 34 height of the job, null for injected jobs. */
  readonly height: number | null;
}

export interface FoundBlock {
  readonly user: string;
  readonly hash: string;
  readonly height: number | null;
  /** The serialized block (pool-built jobs only). */
  readonly hex?: string;
}

export interface UserStats {
  accepted: number;
  rejected: number;
  /** Sum of the credited difficulties: the user's work in diff-1 units. */
  difficulty: number;
  blocks: number;
}

export interface PoolStats {
  readonly connections: number;
  readonly accepted: number;
  /** Rejected submits by reject code ("20".."25"). */
  readonly rejected: Readonly<Record<string, number>>;
  readonly users: Readonly<Record<string, Readonly<UserStats>>>;
  readonly blocks: readonly FoundBlock[];
  /** Lines read and discarded while the pool was silent (fault mode). */
  readonly ignored: number;
  /** The most recent accepted shares (at most RECENT_SHARES). */
  readonly shares: readonly AcceptedShare[];
}

const RECENT_SHARES = 1000;

export class Ledger {
  #accepted = 0;
  #ignored = 0;
  readonly #rejected = new Map<number, number>();
  readonly #users = new Map<string, UserStats>();
  readonly #blocks: FoundBlock[] = [];
  readonly #shares: AcceptedShare[] = [];

  accept(share: AcceptedShare, blockHex?: string): void {
    this.#accepted += 1;
    const u = this.#user(share.user);
    u.accepted += 1;
    u.difficulty += share.difficulty;
    this.#shares.push(share);
    if (this.#shares.length > RECENT_SHARES) this.#shares.shift();
    if (share.block) {
      u.blocks += 1;
      this.#blocks.push({
        user: share.user,
        hash: share.hash,
        height: share.height,
        ...(blockHex === undefined ? {} : { hex: blockHex }),
      });
    }
  }

  reject(user: string | undefined, code: number): void {
    this.#rejected.set(code, (this.#rejected.get(code) ?? 0) + 1);
    if (user !== undefined) this.#user(user).rejected += 1;
  }

  ignore(): void {
    this.#ignored += 1;
  }

  snapshot(connections: number): PoolStats {
    return {
      connections,
      accepted: this.#accepted,
      rejected: Object.fromEntries([...this.#rejected].map(([k, v]) => [String(k), v])),
      users: Object.fromEntries([...this.#users].map(([k, v]) => [k, { ...v }])),
      blocks: [...this.#blocks],
      ignored: this.#ignored,
      shares: [...this.#shares],
    };
  }

  #user(name: string): UserStats {
    let u = this.#users.get(name);
    if (!u) {
      u = { accepted: 0, rejected: 0, difficulty: 0, blocks: 0 };
      this.#users.set(name, u);
    }
    return u;
  }
}
