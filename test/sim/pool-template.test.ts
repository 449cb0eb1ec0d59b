import { Transaction } from "bitcoinjs-lib";
import { describe, expect, it } from "vitest";
import type { SimPool } from "../../sim/pool/server.ts";
import { usePools } from "./pool-fixture.ts";
import { sha256d } from "./pool-helpers.ts";

const pools = usePools();

/** Bitcoin's merkle root, written here from scratch (odd levels duplicate their last node). */
function merkleRoot(leaves: Buffer[]): Buffer {
  let level = leaves;
  while (level.length > 1) {
    if (level.length % 2 === 1) level = [...level, level[level.length - 1] as Buffer];
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) {
      next.push(sha256d(Buffer.concat([level[i] as Buffer, level[i + 1] as Buffer])));
    }
    level = next;
  }
  return level[0] as Buffer;
}

function coinbaseOf(pool: SimPool, extranonce = "00".repeat(12)) {
  const job = pool.currentJob();
  if (!job) throw new Error("no job");
  const raw = Buffer.from(job.coinb1 + extranonce + job.coinb2, "hex");
  return { job, raw, tx: Transaction.fromBuffer(raw) };
}

describe("sim pool: the synthetic template", () => {
  it("builds a real coinbase: BIP 34 height, P2WPKH payout, witness commitment", async () => {
    const pool = await pools.start({ startHeight: 840_000 });
    const { tx, raw, job } = coinbaseOf(pool);
    expect(tx.isCoinbase()).toBe(true);
    const sig = Buffer.from(tx.ins[0]?.script ?? []);
    expect(sig.subarray(0, 4).toString("hex")).toBe("0340d10c"); // push of 840000, LE
    // the 4 + 8 extranonce bytes are one push right after the height: coinb1 ends there
    expect(sig[4]).toBe(12);
    expect(job.coinb1.length / 2).toBe(raw.indexOf(sig) + 5);
    expect(sig.length).toBeLessThanOrEqual(100);

    const [payout, commitment] = tx.outs;
    expect(Buffer.from(payout?.script ?? []).toString("hex")).toMatch(/^0014[0-9a-f]{40}$/);
    expect(payout?.value).toBeGreaterThanOrEqual(312_500_000n); // subsidy at 840000
    const c = Buffer.from(commitment?.script ?? []).toString("hex");
    expect(c).toMatch(/^6a24aa21a9ed[0-9a-f]{64}$/);
    expect(commitment?.value).toBe(0n);

    // BIP 141: SHA256d(witness merkle root ‖ 32 zero bytes), the coinbase's wtxid being zero
    const txs = job.transactions ?? [];
    const wtxids = txs.map((t) => sha256d(t.toBuffer()));
    expect(wtxids.some((w, i) => !w.equals(Buffer.from(txs[i]?.getHash() ?? [])))).toBe(true);
    const witnessRoot = merkleRoot([Buffer.alloc(32), ...wtxids]);
    expect(c.slice(12)).toBe(
      sha256d(Buffer.concat([witnessRoot, Buffer.alloc(32)])).toString("hex"),
    );
  });

  it("sends a real merkle branch: folding it gives the root of all the block's transactions", async () => {
    for (const txCount of [0, 1, 2, 40, 100]) {
      const pool = await pools.start({ txCount });
      const { job, raw } = coinbaseOf(pool);
      const txids = (job.transactions ?? []).map((t) => Buffer.from(t.getHash()));
      expect(txids).toHaveLength(txCount);
      const depth = txCount === 0 ? 0 : Math.ceil(Math.log2(txCount + 1));
      expect(job.merkleBranch).toHaveLength(depth);
      let root = sha256d(raw);
      for (const b of job.merkleBranch)
        root = sha256d(Buffer.concat([root, Buffer.from(b, "hex")]));
      expect(root.toString("hex")).toBe(merkleRoot([sha256d(raw), ...txids]).toString("hex"));
    }
  });

  it("encodes heights 1..16 as OP_N and advances the height with each new block", async () => {
    const pool = await pools.start({ startHeight: 16 });
    expect(coinbaseOf(pool).tx.ins[0]?.script[0]).toBe(0x60); // OP_16
    pool.newBlock();
    const sig = Buffer.from(coinbaseOf(pool).tx.ins[0]?.script ?? []);
    expect(sig.subarray(0, 2).toString("hex")).toBe("0111"); // push of 17
    expect(pool.currentJob()?.height).toBe(17);
  });

  it("makes the prevhash of a new block differ and keeps it for new jobs of the same block", async () => {
    const pool = await pools.start();
    const first = pool.currentJob();
    const sameBlock = pool.newJob();
    const nextBlock = pool.newBlock();
    expect(sameBlock.prevhash).toBe(first?.prevhash);
    expect(sameBlock.clean).toBe(false);
    expect(nextBlock.prevhash).not.toBe(first?.prevhash);
    expect(nextBlock.clean).toBe(true);
    expect(new Set([first?.id, sameBlock.id, nextBlock.id]).size).toBe(3);
  });
});
