import { fail } from "../lib/errors.ts";

/**
 * Splitting an upstream session's extranonce space among miners. Each miner gets
 * extranonce1 = upstream extranonce1 ‖ a prefix unique within the session, and an
 * extranonce2 of (upstream size − prefix size) bytes, kept within 2..8 because cgminer-family
 * firmware rejects sizes outside 2..16 and will not submit with more than 8
 * (shared PROTOCOLS.md). Two miners of one session never share a prefix, so they can never
 * build the same coinbase, and so never the same header.
 *
 * A released prefix is not handed out again until every never-used one is gone (FIFO reuse),
 * so a prefix freed by a miner that just left is the last to be reused.
 */

export const MIN_MINER_EN2 = 2;
export const MAX_MINER_EN2 = 8;

export interface Split {
  /** Bytes of prefix each miner's extranonce1 gets appended. */
  readonly prefixBytes: number;
  /** The miners' extranonce2 size. */
  readonly minerEn2Size: number;
  /** How many miners one session holds. */
  readonly capacity: number;
}

/** How to split an upstream extranonce2 of `upstreamEn2Size` bytes; null if it cannot be. */
export function planSplit(upstreamEn2Size: number): Split | null {
  if (!Number.isInteger(upstreamEn2Size) || upstreamEn2Size < MIN_MINER_EN2 + 1) return null;
  // Two prefix bytes (65,536 miners per session) when the space allows, one otherwise; more if
  // needed to bring the miners' share down to 8 bytes.
  let prefixBytes = upstreamEn2Size >= MIN_MINER_EN2 + 2 ? 2 : 1;
  if (upstreamEn2Size - prefixBytes > MAX_MINER_EN2) prefixBytes = upstreamEn2Size - MAX_MINER_EN2;
  if (prefixBytes > 4) return null; // more than 2^32 miners per session is not a real case
  return {
    prefixBytes,
    minerEn2Size: upstreamEn2Size - prefixBytes,
    capacity: 2 ** (8 * prefixBytes),
  };
}

/** The prefixes of one upstream session. */
export class PrefixAllocator {
  readonly split: Split;
  #next = 0;
  readonly #released: number[] = [];
  readonly #inUse = new Set<number>();

  constructor(upstreamEn2Size: number) {
    const split = planSplit(upstreamEn2Size);
    if (split === null) {
      throw fail(
        "AGENTD_E_INTERNAL",
        `upstream extranonce2_size ${upstreamEn2Size} cannot be split among miners (need at least 3 bytes)`,
        { upstreamEn2Size },
      );
    }
    this.split = split;
  }

  get size(): number {
    return this.#inUse.size;
  }

  get full(): boolean {
    return this.#inUse.size >= this.split.capacity;
  }

  /** A prefix as bytes, or null when the session is full. */
  allocate(): Buffer | null {
    let n: number | undefined;
    if (this.#next < this.split.capacity) n = this.#next++;
    else n = this.#released.shift();
    if (n === undefined) return null;
    this.#inUse.add(n);
    return encode(n, this.split.prefixBytes);
  }

  release(prefix: Buffer): void {
    const n = prefix.readUIntBE(0, prefix.length);
    if (this.#inUse.delete(n)) this.#released.push(n);
  }
}

function encode(n: number, bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  b.writeUIntBE(n, 0, bytes);
  return b;
}
