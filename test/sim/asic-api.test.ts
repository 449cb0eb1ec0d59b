import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { apiJson, apiRequest } from "./asic-api-client.ts";
import type { Msg } from "./asic-fake-pool.ts";
import { isSubmit, JOB_A, JOB_B, sleep, useHarness, waitEvent } from "./asic-harness.ts";

const h = useHarness();
type Row = Record<string, unknown>;
const rows = (r: Record<string, unknown>, key: string) => r[key] as Row[];

async function minerWithApi(
  profile: "s9" | "s19" | "bosminer",
  allow?: string[],
  extraPools: string[] = [],
) {
  const pool = await h.pool();
  const { miner, events } = h.miner(profile, [pool.url, ...extraPools]);
  const api = await h.api(miner, allow === undefined ? {} : { allow });
  const c = await pool.conn(0);
  await c.waitFor((m) => m.method === "mining.authorize");
  c.setDifficulty(2 ** -20);
  c.notify(JOB_A);
  await c.waitFor(isSubmit);
  return { pool, c, miner, events, port: api.address.port };
}

describe("the 4028 API envelope", () => {
  it("answers one request per connection, NUL-terminated, then closes", async () => {
    const { port } = await minerWithApi("s9");
    const r = await apiRequest(port, JSON.stringify({ command: "summary" }));
    expect(r.raw.at(-1)).toBe(0);
    expect(r.raw.indexOf(0)).toBe(r.raw.length - 1);
    const doc = JSON.parse(r.text);
    expect(doc.STATUS[0]).toMatchObject({
      STATUS: "S",
      Code: 11,
      Msg: "Summary",
      Description: "bmminer 2.0.0",
    });
    expect(doc.id).toBe(1);

    // A second request on the same connection gets nothing: the server has closed it.
    const got = await new Promise<Buffer>((resolve) => {
      const s = connect({ host: "127.0.0.1", port });
      const chunks: Buffer[] = [];
      s.on("data", (c: Buffer) => {
        chunks.push(c);
        if (c.includes(0)) s.write(JSON.stringify({ command: "pools" }));
      });
      s.on("close", () => resolve(Buffer.concat(chunks)));
      s.on("error", () => {});
      s.write(JSON.stringify({ command: "version" }));
    });
    expect(
      got
        .toString()
        .split("\0")
        .filter((x) => x !== ""),
    ).toHaveLength(1);
    expect(JSON.parse(got.toString().replace(/\0$/, "")).STATUS[0].Code).toBe(22);
  });

  it("takes plain-text commands with a |parameter", async () => {
    const { port } = await minerWithApi("s9");
    const r = JSON.parse((await apiRequest(port, "pools")).text);
    expect(r.STATUS[0].Code).toBe(7);
    const bad = JSON.parse((await apiRequest(port, "switchpool|9")).text);
    expect(bad.STATUS[0]).toMatchObject({ STATUS: "E", Code: 26 });
  });

  it("answers an unknown command with code 14", async () => {
    const { port } = await minerWithApi("s19");
    expect((await apiJson(port, "frobnicate")).STATUS[0]).toMatchObject({ STATUS: "E", Code: 14 });
  });
});

describe("S9 field set (bmminer 2.0.0)", () => {
  it("summary: GHS 5s is a string at the nominal hashrate, GHS av a number", async () => {
    const { port } = await minerWithApi("s9");
    const s = rows(await apiJson(port, "summary"), "SUMMARY")[0] as Row;
    expect(typeof s["GHS 5s"]).toBe("string");
    expect(Number(s["GHS 5s"])).toBe(13500);
    expect(typeof s["GHS av"]).toBe("number");
    expect(s.Accepted).toBeTypeOf("number");
  });

  it("stats: chains at slots 6–8 with 63 chips, temp2_N chip temperatures, two fans", async () => {
    const { port } = await minerWithApi("s9");
    const doc = await apiJson(port, "stats");
    expect(doc.STATUS[0]?.Code).toBe(70);
    const [head, st] = rows(doc, "STATS") as [Row, Row];
    expect(head).toMatchObject({ BMMiner: "2.0.0", Type: "Antminer S9" });
    expect(typeof st["GHS 5s"]).toBe("string");
    for (const i of [6, 7, 8]) {
      expect(st[`chain_acn${i}`]).toBe(63);
      expect(st[`temp${i}`]).toBeGreaterThan(0);
      expect(st[`temp2_${i}`]).toBeGreaterThan(st[`temp${i}`] as number);
      expect(typeof st[`chain_rate${i}`]).toBe("string");
      expect(st[`chain_acs${i}`]).toMatch(/^[o ]+$/);
    }
    expect(st.chain_acn1).toBe(0);
    expect(st.fan_num).toBe(2);
    const spinning = [1, 2, 3, 4, 5, 6, 7, 8].filter((i) => (st[`fan${i}`] as number) > 0);
    expect(spinning).toHaveLength(2);
  });

  it("has no sleep mode: sleep is an invalid command", async () => {
    const { port, c } = await minerWithApi("s9");
    expect((await apiJson(port, "sleep")).STATUS[0]).toMatchObject({ STATUS: "E", Code: 14 });
    // And it kept mining.
    const n = c.messages.filter(isSubmit).length;
    await c.waitForCount(isSubmit, n + 2);
  });

  it("joins commands with +", async () => {
    const { port } = await minerWithApi("s9");
    const doc = JSON.parse(
      (await apiRequest(port, JSON.stringify({ command: "summary+pools" }))).text,
    );
    expect(doc.summary[0].STATUS[0].Code).toBe(11);
    expect(doc.pools[0].POOLS).toHaveLength(1);
  });

  it("the pools section names the pool and its difficulty", async () => {
    const { port, pool } = await minerWithApi("s9");
    const p = rows(await apiJson(port, "pools"), "POOLS")[0] as Row;
    expect(p).toMatchObject({
      POOL: 0,
      URL: pool.url,
      Status: "Alive",
      User: "owner.rig1",
      "Stratum Active": true,
    });
    expect(typeof p.Diff).toBe("string");
    expect(p).toHaveProperty("Pool Stale%");
  });
});

describe("S19 field set (bmminer 1.0.0)", () => {
  it("stats: numeric GHS 5s, rate_30m, Mode, three chains, four fans, PCB temperature strings", async () => {
    const { port } = await minerWithApi("s19");
    const [head, st] = rows(await apiJson(port, "stats"), "STATS") as [Row, Row];
    expect(head).toMatchObject({ BMMiner: "1.0.0", Type: "Antminer S19" });
    expect(st["GHS 5s"]).toBe(95000);
    expect(typeof st.rate_30m).toBe("number");
    expect(st.Mode).toBe(0);
    expect(st.miner_count).toBe(3);
    expect(st.fan_num).toBe(4);
    expect(st.rate_unit).toBe("GH");
    for (const i of [1, 2, 3]) {
      expect(st[`temp2_${i}`]).toBeTypeOf("number");
      expect(st[`temp_pcb${i}`]).toMatch(/^\d+-\d+-\d+-\d+$/);
      expect(st[`chain_acn${i}`]).toBeTypeOf("number");
      expect(typeof st[`chain_rate${i}`]).toBe("string");
    }
    for (const i of [1, 2, 3, 4]) expect(st[`fan${i}`]).toBeGreaterThan(0);
    expect(st).not.toHaveProperty("temp2_6");
  });

  it("pools: Diff as a string and the misspelled Pool Stale%% key", async () => {
    const { port } = await minerWithApi("s19");
    const p = rows(await apiJson(port, "pools"), "POOLS")[0] as Row;
    expect(typeof p.Diff).toBe("string");
    expect(p).toHaveProperty("Pool Stale%%");
    expect(p).not.toHaveProperty("Pool Stale%");
  });

  it("does not join commands", async () => {
    const { port } = await minerWithApi("s19");
    expect((await apiJson(port, "summary+pools")).STATUS[0]?.Code).toBe(14);
  });

  it("has no sleep command on 4028 (it sleeps through its web UI, asic-web.test.ts)", async () => {
    const { port, miner } = await minerWithApi("s19");
    expect((await apiJson(port, "sleep")).STATUS[0]).toMatchObject({ STATUS: "E", Code: 14 });
    expect((await apiJson(port, "wake")).STATUS[0]).toMatchObject({ STATUS: "E", Code: 14 });
    expect(miner.mode).toBe("normal");
  });

  it("stats with new_api: STATUS as an object, INFO, STATS[0].chain[] with board serials", async () => {
    const { port, miner } = await minerWithApi("s19");
    const r = await apiRequest(port, JSON.stringify({ command: "stats", new_api: true }));
    const doc = JSON.parse(r.text);
    expect(doc.STATUS).toMatchObject({ STATUS: "S", Msg: "stats", api_version: "1.0.0" });
    expect(doc.INFO).toMatchObject({ type: "Antminer S19", miner_version: "uart_trans.1.3" });
    const st = doc.STATS[0];
    expect(st).toMatchObject({ rate_5s: 95000, rate_unit: "GH/s", chain_num: 3, fan_num: 4 });
    expect(st.fan).toHaveLength(4);
    expect(st.chain).toHaveLength(3);
    for (const [i, c] of (st.chain as Row[]).entries()) {
      expect(c).toMatchObject({ index: i, asic_num: 76, sn: miner.boardSerials[i] });
      expect(c.rate_real).toBeCloseTo(95000 / 3, 1);
      expect(c.temp_pcb).toHaveLength(4);
      expect(c.temp_chip).toHaveLength(4);
    }
    // The S9 ignores the flag and answers its usual stats.
    const s9 = await minerWithApi("s9");
    const r9 = JSON.parse(
      (await apiRequest(s9.port, JSON.stringify({ command: "stats", new_api: true }))).text,
    );
    expect(r9.STATUS[0].Code).toBe(70);
  });

  it("asleep (set by its web UI) the hashrate is 0 and Mode 1; no share is sent", async () => {
    const { port, c, miner } = await minerWithApi("s19");
    await c.waitForCount(isSubmit, 3);
    miner.setMode("sleep");
    const st = rows(await apiJson(port, "stats"), "STATS")[1] as Row;
    // Counted after a further round trip, so that shares already on the wire have landed.
    const after = c.messages.filter(isSubmit).length;
    expect(st["GHS 5s"]).toBe(0);
    expect(st.Mode).toBe(1);
    // At this difficulty it found several shares per 100 ms; asleep it finds none.
    await sleep(600);
    expect(c.messages.filter(isSubmit).length).toBe(after);
    expect(c.closed).toBe(false);
    miner.setMode("normal");
    await c.waitForCount(isSubmit, after + 3);
    const sum = rows(await apiJson(port, "summary"), "SUMMARY")[0] as Row;
    expect(sum["GHS 5s"]).toBe(95000);
  });
});

describe("bosminer", () => {
  it("pause and resume stop and restart submitting", async () => {
    const { port, c } = await minerWithApi("bosminer");
    expect((await apiJson(port, "pause")).STATUS[0]?.STATUS).toBe("S");
    expect((await apiJson(port, "summary")).STATUS[0]?.Code).toBe(11);
    const after = c.messages.filter(isSubmit).length;
    await sleep(400);
    expect(c.messages.filter(isSubmit).length).toBe(after);
    expect((await apiJson(port, "resume")).STATUS[0]?.STATUS).toBe("S");
    await c.waitForCount(isSubmit, after + 2);
  });
});

describe("write access", () => {
  it("privileged commands need W: in the allow list (code 45); reads work", async () => {
    const { port, miner } = await minerWithApi("s19", ["127.0.0.1"]);
    expect((await apiJson(port, "privileged")).STATUS[0]).toMatchObject({ STATUS: "E", Code: 45 });
    expect((await apiJson(port, "switchpool", "0")).STATUS[0]?.Code).toBe(45);
    expect((await apiJson(port, "addpool", "stratum+tcp://127.0.0.1:1,w,x")).STATUS[0]?.Code).toBe(
      45,
    );
    expect(miner.slots).toHaveLength(1);
    expect((await apiJson(port, "summary")).STATUS[0]?.Code).toBe(11);
  });

  it("privileged answers 46 to a client with write access", async () => {
    const { port } = await minerWithApi("s9", ["W:127.0.0.1"]);
    expect((await apiJson(port, "privileged")).STATUS[0]).toMatchObject({
      STATUS: "S",
      Code: 46,
      Msg: "Privileged access OK",
    });
  });

  it("a client matching no entry is disconnected unanswered", async () => {
    const { port } = await minerWithApi("s9", ["W:10.0.0.0/8"]);
    const r = await apiRequest(port, "summary").catch(() => ({ raw: Buffer.alloc(0) }));
    expect(r.raw.length).toBe(0);
  });

  it("switchpool moves the miner to another slot; disable/enable/add answer with cgminer codes", async () => {
    const p2 = await h.pool();
    const { port } = await minerWithApi("s9", ["W:127.0.0.0/8"], [p2.url]);
    expect((await apiJson(port, "switchpool", "1")).STATUS[0]).toMatchObject({
      STATUS: "S",
      Code: 27,
    });
    await (await p2.conn(0)).waitFor((m) => m.method === "mining.authorize");
    const pools = rows(await apiJson(port, "pools"), "POOLS");
    expect(pools.map((p) => p["Stratum Active"])).toEqual([false, true]);

    expect((await apiJson(port, "disablepool", "0")).STATUS[0]?.Code).toBe(48);
    expect((await apiJson(port, "disablepool", "1")).STATUS[0]?.Code).toBe(51);
    expect((await apiJson(port, "enablepool", "0")).STATUS[0]?.Code).toBe(47);
    expect((await apiJson(port, "enablepool", "0")).STATUS[0]?.Code).toBe(49);
    const added = await apiJson(port, "addpool", "stratum+tcp://127.0.0.1:1,w,x");
    expect(added.STATUS[0]).toMatchObject({ Code: 55 });
    expect(rows(await apiJson(port, "pools"), "POOLS")).toHaveLength(3);
    expect((await apiJson(port, "addpool", "nonsense")).STATUS[0]?.Code).toBe(53);
  });
});

describe("the event loop is shared fairly", () => {
  it("the API answers while the miner hashes at a difficulty it will never meet", async () => {
    const pool = await h.pool();
    const { miner } = h.miner("s9", [pool.url]);
    const api = await h.api(miner);
    const c = await pool.conn(0);
    await c.waitFor((m) => m.method === "mining.authorize");
    c.setDifficulty(1e9);
    c.notify(JOB_A);
    while (!miner.hashing) await sleep(5);
    for (let i = 0; i < 5; i++) {
      expect((await apiJson(api.address.port, "summary")).STATUS[0]?.Code).toBe(11);
    }
    expect(miner.hashing).toBe(true);
  });
});

describe("share outcomes in the counters", () => {
  it("understands the three reject forms: error codes, reject-reason, bare false", async () => {
    let n = 0;
    const pool = await h.pool({
      answer: (m, conn) => {
        if (m.method !== "mining.submit") return undefined;
        n++;
        if (n === 1) return true;
        if (n === 2)
          conn.send({ id: m.id, result: null, error: [23, "Low difficulty share", null] });
        else if (n === 3)
          conn.send({ id: m.id, result: false, error: null, "reject-reason": "Stale" });
        else if (n === 4) conn.send({ id: m.id, result: false, error: null });
        return null;
      },
    });
    const { miner } = h.miner("s9", [pool.url]);
    const api = await h.api(miner);
    const c = await pool.conn(0);
    await c.waitFor((m) => m.method === "mining.authorize");
    c.setDifficulty(2 ** -20);
    c.notify(JOB_A);
    await c.waitForCount(isSubmit, 4);
    let sum: Row = {};
    for (let i = 0; i < 200; i++) {
      sum = rows(await apiJson(api.address.port, "summary"), "SUMMARY")[0] as Row;
      if ((sum.Accepted as number) + (sum.Rejected as number) + (sum.Stale as number) >= 4) break;
      await sleep(10);
    }
    expect(sum).toMatchObject({ Rejected: 2, Stale: 1 });
    expect(sum.Accepted).toBeGreaterThanOrEqual(1);
  });

  it("the S19 counts an accepted share below the difficulty now in force as a reject", async () => {
    const held: Msg[] = [];
    const pool = await h.pool({
      answer: (m) => {
        if (m.method !== "mining.submit") return undefined;
        held.push(m);
        return null;
      },
    });
    const { miner, events } = h.miner("s19", [pool.url]);
    const c = await pool.conn(0);
    await c.waitFor((m) => m.method === "mining.authorize");
    c.setDifficulty(2 ** -20);
    c.notify(JOB_A);
    await c.waitForCount(isSubmit, 2);
    // A new difficulty comes into force before the pool answers the old job's shares.
    c.setDifficulty(2 ** -19);
    c.notify(JOB_B, false);
    await waitEvent(events, (e) => e.type === "job" && e.jobId === JOB_B.jobId);
    const first = held[0] as Msg;
    c.send({ id: first.id, result: true, error: null });
    const r = await waitEvent(events, (e) => e.type === "rejected");
    expect(r).toMatchObject({ jobId: JOB_A.jobId, reason: "below current difficulty (local)" });
    expect(miner.totals.rejected).toBe(1);
    expect(miner.totals.accepted).toBe(0);
  });
});
