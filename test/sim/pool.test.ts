import { describe, expect, it } from "vitest";
import type { AcceptedShare } from "../../sim/pool/ledger.ts";
import { EASY, type Miner, usePools } from "./pool-fixture.ts";
import { buildHeader, DIFF1, displayHash, hashInt, parseNotify, solve } from "./pool-helpers.ts";

const pools = usePools();
const TARGET = DIFF1 << 20n; // difficulty 2^-20, exactly

function en2(m: Miner, n = 1): string {
  return n.toString(16).padStart(m.extranonce2Size * 2, "0");
}

async function submit(m: Miner, params: (string | undefined)[], user = "alice") {
  const p = params.filter((x): x is string => x !== undefined);
  return m.client.request("mining.submit", [user, ...p]);
}

describe("sim pool: handshake and a real share", () => {
  it("subscribes, authorizes, sends set_difficulty then notify, and accepts a mined share", async () => {
    const shares: AcceptedShare[] = [];
    const pool = await pools.start({ onShare: (s) => shares.push(s) });
    const m = await pools.miner(pool);
    expect(m.extranonce1).toMatch(/^[0-9a-f]{8}$/);
    expect(m.extranonce2Size).toBe(8);
    expect(m.difficulty).toBe(EASY);
    // set_difficulty comes before the first notify, which is clean
    const methods = m.client.received.filter((x) => x.method).map((x) => x.method);
    expect(methods.slice(0, 2)).toEqual(["mining.set_difficulty", "mining.notify"]);
    expect(m.job.clean).toBe(true);
    expect(m.job.version).toBe("20000000");
    expect(m.job.branch).toHaveLength(6); // 40 transactions + coinbase

    const e2 = en2(m);
    const sol = solve(m.job, m.extranonce1, e2, TARGET);
    const r = await submit(m, [m.job.jobId, e2, m.job.ntime, sol.nonceHex]);
    expect(r).toMatchObject({ result: true, error: null });
    expect(shares).toHaveLength(1);
    expect(shares[0]).toMatchObject({
      user: "alice",
      job: m.job.jobId,
      extranonce1: m.extranonce1,
      extranonce2: e2,
      nonce: sol.nonceHex,
      version: "20000000",
      hash: sol.hash,
      difficulty: EASY,
      block: false,
      height: 840_000,
    });
    const stats = pool.stats();
    expect(stats.accepted).toBe(1);
    expect(stats.users.alice).toEqual({ accepted: 1, rejected: 0, difficulty: EASY, blocks: 0 });
  });

  it("gives every connection its own extranonce1 and honours the configured sizes", async () => {
    const pool = await pools.start({ extranonce1Size: 3, extranonce2Size: 4 });
    const a = await pools.miner(pool, "a");
    const b = await pools.miner(pool, "b");
    expect(a.extranonce1).toMatch(/^[0-9a-f]{6}$/);
    expect(b.extranonce1).not.toBe(a.extranonce1);
    expect(a.extranonce2Size).toBe(4);
    // the coinbase leaves exactly 3 + 4 bytes for the extranonces: a share over them is valid
    const sol = solve(b.job, b.extranonce1, "00000007", TARGET);
    const r = await b.client.request("mining.submit", [
      "b",
      b.job.jobId,
      "00000007",
      b.job.ntime,
      sol.nonceHex,
    ]);
    expect(r.result).toBe(true);
    expect(pool.stats().users.b?.accepted).toBe(1);
  });

  it("answers configure with pool mask & miner mask and false for other extensions", async () => {
    const pool = await pools.start({ versionMask: 0x1fffe000 });
    const c = await pools.client(pool);
    const r = await c.request("mining.configure", [
      ["version-rolling", "minimum-difficulty", "subscribe-extranonce"],
      { "version-rolling.mask": "00fff000", "version-rolling.min-bit-count": 2 },
    ]);
    expect(r.result).toEqual({
      "version-rolling": true,
      "version-rolling.mask": "00ffe000",
      "minimum-difficulty": false,
      "subscribe-extranonce": false,
    });
    const refusing = await pools.start({ versionMask: 0 });
    const c2 = await pools.client(refusing);
    const r2 = await c2.request("mining.configure", [["version-rolling"], {}]);
    expect(r2.result).toEqual({ "version-rolling": false });
  });

  it("accepts a share with rolled version bits inside the negotiated mask", async () => {
    const pool = await pools.start();
    const m = await pools.miner(pool, "alice", [
      ["version-rolling"],
      { "version-rolling.mask": "ffffffff" },
    ]);
    const bits = 0x1fffe000;
    const e2 = en2(m);
    const sol = solve(m.job, m.extranonce1, e2, TARGET, true, 0x20000000 | bits);
    const r = await submit(m, [m.job.jobId, e2, m.job.ntime, sol.nonceHex, "1fffe000"]);
    expect(r.result).toBe(true);
    expect(pool.stats().shares[0]).toMatchObject({ version: "3fffe000", hash: sol.hash });
  });

  it("answers extranonce.subscribe, suggest_difficulty and ping, and refuses unknown methods", async () => {
    const pool = await pools.start();
    const c = await pools.client(pool);
    expect((await c.request("mining.extranonce.subscribe", [])).result).toBe(true);
    expect((await c.request("mining.suggest_difficulty", [512])).result).toBe(true);
    expect((await c.request("mining.ping", [])).result).toBe("pong");
    const r = await c.request("mining.get_transactions", []);
    expect(r.error).toEqual([20, "Method not found: mining.get_transactions", null]);
  });

  it("applies suggest_difficulty only when configured to, with set_difficulty and a job", async () => {
    const pool = await pools.start({ honorSuggestedDifficulty: true });
    const m = await pools.miner(pool);
    await m.client.request("mining.suggest_difficulty", [2 ** -10]);
    const diff = await m.client.notification("mining.set_difficulty", 2);
    expect(diff.params).toEqual([2 ** -10]);
    const again = parseNotify(await m.client.notification("mining.notify", 2));
    expect(again.jobId).toBe(m.job.jobId);

    const ignoring = await pools.start();
    const m2 = await pools.miner(ignoring);
    await m2.client.request("mining.suggest_difficulty", [2 ** -10]);
    const e2 = en2(m2);
    // a share at the pool's difficulty is still accepted: the suggestion was not applied
    const sol = solve(m2.job, m2.extranonce1, e2, TARGET, true);
    expect((await submit(m2, [m2.job.jobId, e2, m2.job.ntime, sol.nonceHex])).result).toBe(true);
  });

  it("refuses authorization to users not allowed", async () => {
    const pool = await pools.start({ authorize: (u) => u === "alice" });
    const c = await pools.client(pool);
    await c.request("mining.subscribe", []);
    expect((await c.request("mining.authorize", ["mallory", "x"])).result).toBe(false);
    expect(c.received.some((x) => x.method === "mining.notify")).toBe(false);
    expect((await c.request("mining.authorize", ["alice", "x"])).result).toBe(true);
    await c.notification("mining.notify");
  });
});

describe("sim pool: rejects", () => {
  it("21 for an unknown job", async () => {
    const m = await pools.miner(await pools.start());
    const r = await submit(m, ["ffff", en2(m), m.job.ntime, "00000000"]);
    expect(r.error).toEqual([21, "Job not found", null]);
  });

  it("21 for a job made stale by a new block, and the new job is clean", async () => {
    const pool = await pools.start();
    const m = await pools.miner(pool);
    const e2 = en2(m);
    const sol = solve(m.job, m.extranonce1, e2, TARGET);
    pool.newBlock();
    const next = parseNotify(await m.client.notification("mining.notify", 2));
    expect(next.clean).toBe(true);
    expect(next.prevhash).not.toBe(m.job.prevhash);
    const r = await submit(m, [m.job.jobId, e2, m.job.ntime, sol.nonceHex]);
    expect(r.error).toEqual([21, "Stale job", null]);
  });

  it("keeps earlier jobs valid after a new job that is not clean", async () => {
    const pool = await pools.start();
    const m = await pools.miner(pool);
    pool.newJob();
    const next = parseNotify(await m.client.notification("mining.notify", 2));
    expect(next.clean).toBe(false);
    expect(next.prevhash).toBe(m.job.prevhash);
    expect(next.branch).not.toEqual(m.job.branch); // new transactions
    const e2 = en2(m);
    const sol = solve(m.job, m.extranonce1, e2, TARGET);
    expect((await submit(m, [m.job.jobId, e2, m.job.ntime, sol.nonceHex])).result).toBe(true);
  });

  it("22 for a duplicate share", async () => {
    const pool = await pools.start();
    const m = await pools.miner(pool);
    const e2 = en2(m);
    const sol = solve(m.job, m.extranonce1, e2, TARGET);
    const params = [m.job.jobId, e2, m.job.ntime, sol.nonceHex];
    expect((await submit(m, params)).result).toBe(true);
    expect((await submit(m, params)).error).toEqual([22, "Duplicate share", null]);
    expect(pool.stats()).toMatchObject({ accepted: 1, rejected: { "22": 1 } });
  });

  it("23 for a hash above the target", async () => {
    const pool = await pools.start();
    const m = await pools.miner(pool);
    const e2 = en2(m);
    const miss = solve(m.job, m.extranonce1, e2, TARGET, false);
    const header = buildHeader(m.job, m.extranonce1, e2, m.job.ntime, miss.nonce, 0x20000000);
    expect(hashInt(header) > TARGET).toBe(true);
    const r = await submit(m, [m.job.jobId, e2, m.job.ntime, miss.nonceHex]);
    expect(r.error).toEqual([23, "Low difficulty share", null]);
    expect(pool.stats().users.alice).toMatchObject({ accepted: 0, rejected: 1 });
  });

  it("23 at a higher difficulty for a hash that only meets a lower one", async () => {
    const pool = await pools.start({ difficulty: 2 ** -12 });
    const m = await pools.miner(pool);
    const e2 = en2(m);
    // a nonce whose hash meets 2^-20 but not 2^-12
    let nonce = 0;
    for (; ; nonce++) {
      const h = hashInt(buildHeader(m.job, m.extranonce1, e2, m.job.ntime, nonce, 0x20000000));
      if (h <= TARGET && h > DIFF1 << 12n) break;
    }
    const hex = nonce.toString(16).padStart(8, "0");
    const r = await submit(m, [m.job.jobId, e2, m.job.ntime, hex]);
    expect(r.error).toEqual([23, "Low difficulty share", null]);
  });

  it("24 for a worker not authorized on this connection", async () => {
    const m = await pools.miner(await pools.start());
    const r = await submit(m, [m.job.jobId, en2(m), m.job.ntime, "00000000"], "bob");
    expect(r.error).toEqual([24, "Unauthorized worker", null]);
  });

  it("25 before subscribe", async () => {
    const pool = await pools.start();
    const c = await pools.client(pool);
    await c.request("mining.authorize", ["alice", "x"]);
    const job = pool.currentJob();
    const r = await c.request("mining.submit", [
      "alice",
      job?.id ?? "",
      "0000000000000000",
      job?.ntime ?? "",
      "00000000",
    ]);
    expect(r.error).toEqual([25, "Not subscribed", null]);
  });

  it("20 for version bits outside the mask, or any bits without configure", async () => {
    const pool = await pools.start();
    const m = await pools.miner(pool, "alice", [
      ["version-rolling"],
      { "version-rolling.mask": "ffffffff" },
    ]);
    const r = await submit(m, [m.job.jobId, en2(m), m.job.ntime, "00000000", "00000001"]);
    expect(r.error).toEqual([20, "Version bits outside the mask", null]);

    const plain = await pools.miner(pool, "bob");
    const e2 = en2(plain);
    const sol = solve(plain.job, plain.extranonce1, e2, TARGET, true, 0x20002000);
    const r2 = await submit(
      plain,
      [plain.job.jobId, e2, plain.job.ntime, sol.nonceHex, "00002000"],
      "bob",
    );
    expect(r2.error).toEqual([20, "Version bits outside the mask", null]);
  });

  it("20 for an ntime outside [job ntime, +7000] and a wrong extranonce2 size", async () => {
    const m = await pools.miner(await pools.start());
    const ntime = Number.parseInt(m.job.ntime, 16);
    const hex = (n: number) => n.toString(16).padStart(8, "0");
    const before = await submit(m, [m.job.jobId, en2(m), hex(ntime - 1), "00000000"]);
    expect(before.error).toEqual([20, "Ntime out of range", null]);
    const after = await submit(m, [m.job.jobId, en2(m), hex(ntime + 7001), "00000000"]);
    expect(after.error).toEqual([20, "Ntime out of range", null]);
    const short = await submit(m, [m.job.jobId, "0000", m.job.ntime, "00000000"]);
    expect(short.error).toEqual([20, "Invalid extranonce2 size", null]);
  });

  it("accepts ntime rolled forward within range", async () => {
    const m = await pools.miner(await pools.start());
    const rolled = (Number.parseInt(m.job.ntime, 16) + 60).toString(16).padStart(8, "0");
    const e2 = en2(m);
    const job = { ...m.job, ntime: rolled };
    const sol = solve(job, m.extranonce1, e2, TARGET);
    expect((await submit(m, [m.job.jobId, e2, rolled, sol.nonceHex])).result).toBe(true);
  });
});

describe("sim pool: blocks", () => {
  it("marks a share meeting the block target as a block, with a valid block, then a clean job on it", async () => {
    const pool = await pools.start({ difficulty: 2 ** -24, blockTargetDifficulty: 2 ** -20 });
    const m = await pools.miner(pool);
    expect(m.job.nbits).toBe("1f0ffff0"); // compact of DIFF1 << 20
    const e2 = en2(m);
    const sol = solve(m.job, m.extranonce1, e2, TARGET);
    const r = await submit(m, [m.job.jobId, e2, m.job.ntime, sol.nonceHex]);
    expect(r.result).toBe(true);
    const stats = pool.stats();
    expect(stats.shares[0]).toMatchObject({ block: true, hash: sol.hash });
    expect(stats.blocks).toHaveLength(1);
    const block = stats.blocks[0];
    expect(block).toMatchObject({ user: "alice", hash: sol.hash, height: 840_000 });
    // the serialized block: its header hashes to the share (checked independently here)
    const hex = block?.hex ?? "";
    expect(displayHash(Buffer.from(hex.slice(0, 160), "hex"))).toBe(sol.hash);

    const next = parseNotify(await m.client.notification("mining.notify", 2));
    expect(next.clean).toBe(true);
    // the next job builds on the found block: prevhash is its hash, word-swapped
    const internal = Buffer.from(sol.hash, "hex").reverse().toString("hex");
    const swapped = (internal.match(/.{8}/g) ?? [])
      .map((w) => (w.match(/../g) ?? []).reverse().join(""))
      .join("");
    expect(next.prevhash).toBe(swapped);
    expect(stats.users.alice?.blocks).toBe(1);
  });

  it("counts no block with the default (mainnet-like) nbits", async () => {
    const pool = await pools.start();
    const m = await pools.miner(pool);
    expect(m.job.nbits).toBe("17034219");
    const e2 = en2(m);
    const sol = solve(m.job, m.extranonce1, e2, TARGET);
    await submit(m, [m.job.jobId, e2, m.job.ntime, sol.nonceHex]);
    expect(pool.stats()).toMatchObject({ accepted: 1, blocks: [] });
  });
});

/** The first nonce whose hash meets 2^-20 but not 2^-12. */
function easyButNotHard(m: Miner, job: Miner["job"], e2: string): string {
  for (let nonce = 0; ; nonce++) {
    const h = hashInt(buildHeader(job, m.extranonce1, e2, job.ntime, nonce, 0x20000000));
    if (h <= TARGET && h > DIFF1 << 12n) return nonce.toString(16).padStart(8, "0");
  }
}

describe("sim pool: difficulty, dialects and timers", () => {
  it("credits shares at the difficulty their job was sent with", async () => {
    const pool = await pools.start();
    const m = await pools.miner(pool);
    pool.setDifficulty(2 ** -12);
    expect((await m.client.notification("mining.set_difficulty", 2)).params).toEqual([2 ** -12]);
    const resent = parseNotify(await m.client.notification("mining.notify", 2));
    expect(resent).toMatchObject({ jobId: m.job.jobId, clean: true });
    pool.newJob();
    const newer = parseNotify(await m.client.notification("mining.notify", 3));
    const e2 = en2(m);
    // the job sent before the change still takes the easier shares (in flight on a miner)
    const old = await submit(m, [m.job.jobId, e2, m.job.ntime, easyButNotHard(m, m.job, e2)]);
    expect(old.result).toBe(true);
    const fresh = await submit(m, [newer.jobId, e2, newer.ntime, easyButNotHard(m, newer, e2)]);
    expect(fresh.error).toEqual([23, "Low difficulty share", null]);
    expect(pool.stats().shares[0]?.difficulty).toBe(2 ** -20);
  });

  it("takes the legacy multi_version dialect: the 6th param is the whole version", async () => {
    const pool = await pools.start();
    const m = await pools.miner(pool);
    expect((await m.client.request("mining.multi_version", [1])).result).toBe(true);
    const e2 = en2(m);
    const sol = solve(m.job, m.extranonce1, e2, TARGET, true, 0x20004000);
    expect((await submit(m, [m.job.jobId, e2, m.job.ntime, sol.nonceHex, "20004000"])).result).toBe(
      true,
    );
    const outside = await submit(m, [m.job.jobId, e2, m.job.ntime, sol.nonceHex, "60004000"]);
    expect(outside.error).toEqual([20, "Invalid version", null]);
  });

  it("handles a pipelined handshake (Bitaxe) and a bosminer [agent, null] subscribe", async () => {
    const pool = await pools.start();
    const c = await pools.client(pool);
    const ids = [
      c.send({
        method: "mining.configure",
        params: [["version-rolling"], { "version-rolling.mask": "ffffffff" }],
      }),
      c.send({ method: "mining.subscribe", params: ["bOS_am1-s9-20210101", null] }),
      c.send({ method: "mining.authorize", params: ["alice", ""] }),
      c.send({ method: "mining.suggest_difficulty", params: [1000] }),
    ];
    const replies = await Promise.all(ids.map((id) => c.waitFor((x) => x.id === id)));
    expect(replies.map((r) => r.error)).toEqual([null, null, null, null]);
    expect(replies[2]?.result).toBe(true);
    const notify = await c.notification("mining.notify");
    expect(notify.params?.[8]).toBe(true);
  });

  it("sends new jobs and new blocks by itself at the configured intervals", async () => {
    const pool = await pools.start({ jobIntervalMs: 5 });
    const m = await pools.miner(pool);
    expect(parseNotify(await m.client.notification("mining.notify", 2)).clean).toBe(false);
    const blocks = await pools.start({ jobIntervalMs: 0, blockIntervalMs: 5 });
    const b = await pools.miner(blocks);
    const next = parseNotify(await b.client.notification("mining.notify", 2));
    expect(next.clean).toBe(true);
    expect(next.prevhash).not.toBe(b.job.prevhash);
  });
});
