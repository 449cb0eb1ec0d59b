import { describe, expect, it } from "vitest";
import { parseFault } from "../../sim/asic/faults.ts";
import { apiJson, apiRequest } from "./asic-api-client.ts";
import { type Msg, paramsOf } from "./asic-fake-pool.ts";
import { isSubmit, JOB_A, JOB_B, sleep, useHarness, waitEvent } from "./asic-harness.ts";
import { headerHashInt, headerHex, targetForPow2 } from "./asic-share-check.ts";

const h = useHarness();
const K = 20;

async function faulty(fault: string, profile: "s9" | "s19" = "s9", rebootMs?: number) {
  const pool = await h.pool();
  const { miner, events } = h.miner(profile, [pool.url], {
    faults: [parseFault(fault)],
    ...(rebootMs === undefined ? {} : { rebootMs }),
  });
  const api = await h.api(miner);
  const c = await pool.conn(0);
  await c.waitFor((m) => m.method === "mining.authorize");
  c.setDifficulty(2 ** -K);
  c.notify(JOB_A);
  return { pool, c, miner, events, port: api.address.port };
}

/** The hash of an S9 submit (6th param: the full version), checked independently. */
function hashOf(en1: string, m: Msg, job = JOB_A): bigint {
  const p = paramsOf(m) as string[];
  return headerHashInt(
    headerHex(job, en1, {
      extranonce2: p[2] ?? "",
      ntime: p[3] ?? "",
      nonce: p[4] ?? "",
      version: p[5] ?? job.version,
    }),
  );
}

describe("fault injection, as seen on the wire", () => {
  it("duplicate: the same share is submitted twice", async () => {
    const { c } = await faulty("duplicate:2");
    const subs = await c.waitForCount(isSubmit, 4);
    expect(paramsOf(subs[1])).toEqual(paramsOf(subs[2]));
    expect(subs[1]?.id).not.toEqual(subs[2]?.id);
    expect(paramsOf(subs[0])).not.toEqual(paramsOf(subs[1]));
  });

  it("lowdiff: a genuine header whose hash misses the difficulty in force", async () => {
    const { c, pool, events } = await faulty("lowdiff:2");
    const subs = await c.waitForCount(isSubmit, 4);
    // The event reports the hash of what was sent, which misses the target.
    const ev = events.find((e) => e.type === "submitted" && e.fault === "lowdiff");
    expect(ev?.type === "submitted" && BigInt(`0x${ev.hash}`) > targetForPow2(K)).toBe(true);
    const ok = (m: Msg | undefined) =>
      m !== undefined && hashOf(pool.extranonce1, m) <= targetForPow2(K);
    expect(ok(subs[0])).toBe(true);
    expect(ok(subs[1])).toBe(false);
    expect(ok(subs[2])).toBe(true);
    expect(ok(subs[3])).toBe(false);
  });

  it("malformed: submits with bad parameters, in rotation", async () => {
    const { c } = await faulty("malformed:1");
    const subs = await c.waitForCount(isSubmit, 3);
    expect(paramsOf(subs[0])[4]).toBe("zzzzzzzz");
    expect(String(paramsOf(subs[1])[2])).toHaveLength(6); // extranonce2 one byte short
    expect(paramsOf(subs[2])).toHaveLength(3);
  });

  it("stale: the share is held back and sent after the next clean job", async () => {
    const { c, pool, events } = await faulty("stale:1");
    await waitEvent(events, (e) => e.type === "fault" && e.kind === "stale");
    // Every share is held: nothing is submitted while job A is current.
    expect(c.messages.filter(isSubmit)).toHaveLength(0);
    const mark = c.messages.length;
    c.notify(JOB_B, true);
    const late = await c.waitFor((m) => isSubmit(m) && paramsOf(m)[1] === JOB_A.jobId, mark);
    expect(c.messages.indexOf(late)).toBeGreaterThanOrEqual(mark);
    // Valid work, only late.
    expect(hashOf(pool.extranonce1, late) <= targetForPow2(K)).toBe(true);
  });

  it("hostile: an oversized line, then binary garbage, reach the pool", async () => {
    const { c } = await faulty("hostile:1");
    const deadline = Date.now() + 15_000;
    while (c.garbage.length < 2 && Date.now() < deadline) await sleep(10);
    expect(c.garbage[0]).toBe("A".repeat(256 * 1024));
    expect(c.garbage[1]).toContain("\u00ff");
  });

  it("disconnect: the miner drops the connection and comes back", async () => {
    const { c, pool } = await faulty("disconnect:2");
    await c.waitClosed();
    expect(c.messages.filter(isSubmit).length).toBeGreaterThanOrEqual(2);
    const c1 = await pool.conn(1);
    await c1.waitFor((m) => m.method === "mining.authorize");
  });

  it("overheat: chips over the limit in the API, no more shares", async () => {
    const { c, port, miner } = await faulty("overheat:2");
    await c.waitForCount(isSubmit, 2);
    while (miner.hashing) await sleep(5);
    const st = (await apiJson(port, "stats")).STATS as Record<string, number>[];
    expect(st[1]?.temp2_6).toBeGreaterThan(miner.profile.temps.limitChip);
    const n = c.messages.filter(isSubmit).length;
    await sleep(400);
    expect(c.messages.filter(isSubmit).length).toBe(n);
    expect(Number((st[1] as Record<string, unknown>)["GHS 5s"])).toBe(0);
  });

  it("fan: a fan reads 0 RPM and the miner stops hashing", async () => {
    const { c, port, miner } = await faulty("fan:1", "s19");
    await c.waitForCount(isSubmit, 1);
    while (miner.hashing) await sleep(5);
    const st = ((await apiJson(port, "stats")).STATS as Record<string, number>[])[1];
    expect(st?.fan1).toBe(0);
    expect(st?.fan2).toBeGreaterThan(0);
    const n = c.messages.filter(isSubmit).length;
    await sleep(400);
    expect(c.messages.filter(isSubmit).length).toBe(n);
  });

  it("reboot: pool connection and API go down, then it boots fresh on slot 1", async () => {
    const { c, pool, port, events } = await faulty("reboot:2", "s9", 500);
    await c.waitClosed();
    await waitEvent(events, (e) => e.type === "reboot");
    await expect(apiRequest(port, "summary")).rejects.toThrow(/ECONNREFUSED/);
    const c1 = await pool.conn(1);
    // A fresh boot: no session to resume.
    expect(paramsOf(await c1.waitFor((m) => m.method === "mining.subscribe"))).toEqual([
      "bmminer/2.0.0",
    ]);
    await waitEvent(events, (e) => e.type === "boot");
    let sum: Record<string, unknown> | undefined;
    for (let i = 0; i < 100 && sum === undefined; i++) {
      sum = await apiJson(port, "summary")
        .then((d) => (d.SUMMARY as Record<string, unknown>[])[0])
        .catch(() => undefined);
      if (sum === undefined) await sleep(20);
    }
    expect(sum?.Accepted).toBe(0);
    expect(sum?.Elapsed).toBe(0);
  });

  it("api-glitch: S9 stats with }{ between the STATS objects", async () => {
    const { port } = await faulty("api-glitch");
    const r = await apiRequest(port, JSON.stringify({ command: "stats" }));
    expect(r.text).toContain("}{");
    expect(() => JSON.parse(r.text)).toThrow();
    expect(JSON.parse(r.text.replace("}{", "},{")).STATS).toHaveLength(2);
  });
});

describe("parseFault", () => {
  it("takes KIND[:N] and refuses anything else", () => {
    expect(parseFault("stale:4")).toEqual({ kind: "stale", every: 4 });
    expect(parseFault("overheat")).toEqual({ kind: "overheat", every: 0 });
    expect(() => parseFault("stale:0")).toThrow(/N must be/);
    expect(() => parseFault("melt")).toThrow(/KIND/);
  });
});
