/**
 * Share validation with bitcoinjs-lib, independently of the proxy's code: the coinbase is
 * parsed as a real transaction, the block is assembled as a bitcoinjs-lib `Block` (with all
 * its transactions when the pool built the template, so the merkle root is bitcoinjs-lib's
 * own and not the branch the pool sent), and the header hash and the proof of work against
 * `nbits` are bitcoinjs-lib's. Only the pool-difficulty comparison is ours (target.ts).
 */
import { Block, Transaction } from "bitcoinjs-lib";
import { concatBytes, parseHex, reversed, toHex, wordSwap } from "./hex.ts";
import type { Job } from "./jobs.ts";
import { foldBranch } from "./merkle.ts";
import { hashValue } from "./target.ts";

export interface ShareWork {
  readonly extranonce1: Uint8Array;
  readonly extranonce2: Uint8Array;
  readonly ntime: number;
  readonly nonce: number;
  /** The full header version after rolling. */
  readonly version: number;
}

export interface ShareResult {
  /** Block-hash display order (big-endian hex), as explorers show it. */
  readonly hash: string;
  /** The header hash as the 256-bit integer compared with targets. */
  readonly value: bigint;
  /** The 80-byte header. */
  readonly header: Uint8Array;
  /** The hash meets the job's `nbits` target (bitcoinjs-lib's checkProofOfWork). */
  readonly block: boolean;
  /** The whole serialized block, for block candidates of pool-built jobs. */
  readonly blockHex?: string;
}

export class MalformedCoinbase extends Error {}

export function checkShare(job: Job, work: ShareWork): ShareResult {
  const bytes = concatBytes(
    hexOf(job.coinb1),
    work.extranonce1,
    work.extranonce2,
    hexOf(job.coinb2),
  );
  let coinbase: Transaction;
  try {
    coinbase = Transaction.fromBuffer(bytes);
  } catch (err) {
    throw new MalformedCoinbase(`coinbase does not parse: ${(err as Error).message}`);
  }
  if (!coinbase.isCoinbase()) throw new MalformedCoinbase("first transaction is not a coinbase");

  const block = new Block();
  // bitcoinjs-lib writes the version as a signed 32-bit integer.
  block.version = work.version | 0;
  block.prevHash = wordSwap(hexOf(job.prevhash));
  block.timestamp = work.ntime;
  block.bits = Number.parseInt(job.nbits, 16);
  block.nonce = work.nonce;
  if (job.transactions) {
    // The witness reserved value (BIP 141) that the block's coinbase would carry; it does not
    // change the txid, so the merkle root is the one miners computed.
    coinbase.setWitness(0, [new Uint8Array(32)]);
    block.transactions = [coinbase, ...job.transactions];
    block.merkleRoot = Block.calculateMerkleRoot(block.transactions);
  } else {
    block.merkleRoot = foldBranch(coinbase.getHash(), job.merkleBranch.map(hexOf));
  }

  const hashInternal = block.getHash();
  const isBlock = block.checkProofOfWork();
  let blockHex: string | undefined;
  if (isBlock && block.transactions) {
    // The block must be valid as a whole: merkle root and witness commitment (which
    // bitcoinjs-lib reads from the coinbase only when parsing a block, so it is set here).
    const commit = block.getWitnessCommit();
    if (commit) block.witnessCommit = commit;
    if (!block.checkTxRoots()) throw new Error("block candidate fails its merkle/witness roots");
    blockHex = block.toHex();
  }
  const header = block.toBuffer(true);
  return {
    hash: toHex(reversed(hashInternal)),
    value: hashValue(hashInternal),
    header,
    block: isBlock,
    ...(blockHex === undefined ? {} : { blockHex }),
  };
}

function hexOf(text: string): Uint8Array {
  const b = parseHex(text);
  if (b === undefined) throw new MalformedCoinbase(`not hex: ${text.slice(0, 16)}`);
  return b;
}
