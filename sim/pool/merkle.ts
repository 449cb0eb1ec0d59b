/**
 * The Stratum merkle branch: the sibling hashes on the coinbase's path to the root, so a miner
 * can recompute the root from the coinbase alone. Hashing is bitcoinjs-lib's SHA-256d; the
 * pool later checks every share's root against bitcoinjs-lib's own full-block merkle root
 * (validate.ts), which cross-checks this code.
 */
import { crypto as bcrypto } from "bitcoinjs-lib";
import { concatBytes } from "./hex.ts";

/**
 * Branch for the coinbase given the other transactions' txids (internal byte order, block
 * order). At each level the coinbase's path is the leftmost node, so its sibling is element 1;
 * an odd level duplicates its last element, as Bitcoin's merkle tree does.
 */
export function merkleBranch(txids: readonly Uint8Array[]): Uint8Array[] {
  const branch: Uint8Array[] = [];
  // `null` stands for the node on the coinbase's path, unknown until the coinbase is final.
  let level: (Uint8Array | null)[] = [null, ...txids];
  while (level.length > 1) {
    const sibling = level[1];
    if (sibling === undefined || sibling === null) break;
    branch.push(sibling);
    if (level.length % 2 === 1) level.push(level[level.length - 1] ?? null);
    const next: (Uint8Array | null)[] = [null];
    for (let i = 2; i < level.length; i += 2) {
      const a = level[i];
      const b = level[i + 1];
      if (!a || !b) throw new Error("merkle level has a hole");
      next.push(bcrypto.hash256(concatBytes(a, b)));
    }
    level = next;
  }
  return branch;
}

/** The merkle root from the coinbase txid and the branch (what a miner computes). */
export function foldBranch(coinbaseTxid: Uint8Array, branch: readonly Uint8Array[]): Uint8Array {
  let root = coinbaseTxid;
  for (const sibling of branch) root = bcrypto.hash256(concatBytes(root, sibling));
  return root;
}
