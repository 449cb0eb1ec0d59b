import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { InjectedJob } from "../../sim/pool/jobs.ts";
import type { AcceptedShare } from "../../sim/pool/ledger.ts";
import { usePools } from "./pool-fixture.ts";
import { buildHeader, parseNotify } from "./pool-helpers.ts";

const VECTORS = "/work/shared/vectors";
interface RealBlock {
  block_hash: string;
  notify: InjectedJob;
  extranonce1: string;
  extranonce2_size: number;
  submit: { extranonce2: string; ntime: string; nonce: string };
  expect: { header_hex: string };
}
const blocks = (
  JSON.parse(readFileSync(`${VECTORS}/stratum-real-blocks.json`, "utf8")) as {
    vectors: RealBlock[];
  }
).vectors;
const rolling = JSON.parse(readFileSync(`${VECTORS}/version-rolling.json`, "utf8")) as {
  job: InjectedJob;
  extranonce1: string;
  submit: { extranonce2: string; ntime: string; nonce: string };
  negotiated_mask: string;
  cases: { version_bits: string; header_version: string; block_hash: string; valid: boolean }[];
};

const pools = usePools();

describe("sim pool: real blocks from the shared vectors", () => {
  it("the test's own header builder reproduces every vector's header", () => {
    for (const v of blocks) {
      const n = v.notify;
      const job = parseNotify({
        params: [
          n.job_id,
          n.prevhash,
          n.coinb1,
          n.coinb2,
          [...n.merkle_branch],
          n.version,
          n.nbits,
          n.ntime,
          n.clean_jobs,
        ],
      });
      const h = buildHeader(
        job,
        v.extranonce1,
        v.submit.extranonce2,
        v.submit.ntime,
        Number.parseInt(v.submit.nonce, 16),
        Number.parseInt(n.version, 16),
      );
      expect(h.toString("hex")).toBe(v.expect.header_hex);
    }
  });

  it.each(blocks.map((v) => [v.block_hash, v] as const))(
    "accepts the real submit of block %s as a block candidate",
    async (_hash, v) => {
      const shares: AcceptedShare[] = [];
      const pool = await pools.start({
        difficulty: 1,
        extranonce1Size: v.extranonce1.length / 2,
        extranonce2Size: v.extranonce2_size,
        advanceOnBlock: false,
        onShare: (s) => shares.push(s),
      });
      pool.injectJob(v.notify);
      pool.setNextExtranonce1(v.extranonce1);
      const m = await pools.miner(pool);
      expect(m.extranonce1).toBe(v.extranonce1);
      expect(m.extranonce2Size).toBe(v.extranonce2_size);
      expect(m.job).toEqual({
        jobId: v.notify.job_id,
        prevhash: v.notify.prevhash,
        coinb1: v.notify.coinb1,
        coinb2: v.notify.coinb2,
        branch: v.notify.merkle_branch,
        version: v.notify.version,
        nbits: v.notify.nbits,
        ntime: v.notify.ntime,
        clean: true,
      });
      const { extranonce2, ntime, nonce } = v.submit;
      const r = await m.client.request("mining.submit", [
        "alice",
        v.notify.job_id,
        extranonce2,
        ntime,
        nonce,
      ]);
      expect(r).toMatchObject({ result: true, error: null });
      expect(shares[0]).toMatchObject({ hash: v.block_hash, block: true, user: "alice" });
      expect(pool.stats().blocks).toEqual([{ user: "alice", hash: v.block_hash, height: null }]);

      // one nonce off is neither a block nor a difficulty-1 share
      const off = ((Number.parseInt(nonce, 16) ^ 1) >>> 0).toString(16).padStart(8, "0");
      const bad = await m.client.request("mining.submit", [
        "alice",
        v.notify.job_id,
        extranonce2,
        ntime,
        off,
      ]);
      expect(bad.error).toEqual([23, "Low difficulty share", null]);
    },
  );

  it("applies BIP 310 version bits as the vectors say and refuses bits outside the mask", async () => {
    const shares: AcceptedShare[] = [];
    const pool = await pools.start({
      // every hash meets a difficulty this small: only the version rule decides
      difficulty: 1e-12,
      extranonce1Size: rolling.extranonce1.length / 2,
      extranonce2Size: rolling.submit.extranonce2.length / 2,
      versionMask: Number.parseInt(rolling.negotiated_mask, 16),
      advanceOnBlock: false,
      onShare: (s) => shares.push(s),
    });
    pool.injectJob(rolling.job);
    pool.setNextExtranonce1(rolling.extranonce1);
    const m = await pools.miner(pool, "alice", [
      ["version-rolling"],
      { "version-rolling.mask": "ffffffff" },
    ]);
    const { extranonce2, ntime, nonce } = rolling.submit;
    expect(rolling.cases.some((c) => !c.valid)).toBe(true);
    for (const c of rolling.cases) {
      const r = await m.client.request("mining.submit", [
        "alice",
        rolling.job.job_id,
        extranonce2,
        ntime,
        nonce,
        c.version_bits,
      ]);
      if (c.valid) {
        expect(r.result).toBe(true);
        expect(shares.at(-1)).toMatchObject({ hash: c.block_hash, version: c.header_version });
      } else {
        expect(r.error).toEqual([20, "Version bits outside the mask", null]);
      }
    }
    expect(shares).toHaveLength(rolling.cases.filter((c) => c.valid).length);
  });
});
