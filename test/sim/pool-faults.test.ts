import { describe, expect, it } from "vitest";
import { applyControl } from "../../sim/pool/control.ts";
import { parseFault } from "../../sim/pool/faults.ts";
import { usePools } from "./pool-fixture.ts";
import { DIFF1, solve } from "./pool-helpers.ts";

const pools = usePools();

describe("sim pool: fault modes", () => {
  it("drop: closes every connection, and each new one, until cleared", async () => {
    const pool = await pools.start();
    const m = await pools.miner(pool);
    pool.setFault({ kind: "drop" });
    await m.client.closed;
    const late = await pools.client(pool);
    await late.closed;
    expect(late.received).toEqual([]);
    pool.setFault(null);
    const ok = await pools.client(pool);
    expect((await ok.request("mining.subscribe", [])).error).toBeNull();
  });

  it("silent: answers nothing and sends no job while on, then resumes", async () => {
    const pool = await pools.start();
    const m = await pools.miner(pool);
    pool.setFault({ kind: "silent" });
    const unanswered = m.client.send({ method: "mining.ping", params: [] });
    // wait (no timing) until the pool has read and discarded the ping
    while (pool.stats().ignored < 1) await new Promise((r) => setImmediate(r));
    pool.newJob();
    const before = m.client.received.length;
    pool.setFault(null);
    // TCP keeps order: had the pool answered the first ping or sent the job, it would be here
    // before the answer to this one.
    const pong = await m.client.request("mining.ping", []);
    expect(pong.result).toBe("pong");
    const during = m.client.received.slice(before);
    expect(m.client.received.some((x) => x.id === unanswered)).toBe(false);
    expect(during.filter((x) => x.method === "mining.notify")).toEqual([]);
    pool.newJob();
    const notify = await m.client.notification("mining.notify", 2);
    expect(notify.params?.[8]).toBe(false);
  });

  it("reject: refuses a valid share with 23, or with 20", async () => {
    const pool = await pools.start();
    const m = await pools.miner(pool);
    const e2 = "0000000000000001";
    const sol = solve(m.job, m.extranonce1, e2, DIFF1 << 20n);
    const params = ["alice", m.job.jobId, e2, m.job.ntime, sol.nonceHex];
    pool.setFault({ kind: "reject", code: 23 });
    expect((await m.client.request("mining.submit", params)).error).toEqual([
      23,
      "Low difficulty share",
      null,
    ]);
    pool.setFault({ kind: "reject", code: 20 });
    expect((await m.client.request("mining.submit", params)).error).toEqual([20, "Rejected", null]);
    pool.setFault(null);
    expect((await m.client.request("mining.submit", params)).result).toBe(true);
    expect(pool.stats()).toMatchObject({ accepted: 1, rejected: { "20": 1, "23": 1 } });
  });

  it("reconnect: sends client.reconnect now and to each new miner after its first job", async () => {
    const pool = await pools.start();
    const m = await pools.miner(pool);
    pool.setFault({ kind: "reconnect", params: ["127.0.0.1", 3334, 5] });
    const r = await m.client.notification("client.reconnect");
    expect(r.params).toEqual(["127.0.0.1", 3334, 5]);
    const late = await pools.miner(pool, "bob");
    await late.client.notification("client.reconnect");
    const methods = late.client.received.filter((x) => x.method).map((x) => x.method);
    expect(methods).toEqual(["mining.set_difficulty", "mining.notify", "client.reconnect"]);
    pool.setFault(null);
    pool.sendReconnect();
    expect((await m.client.notification("client.reconnect", 2)).params).toEqual([]);
  });

  it("parses the --fault syntax", () => {
    expect(parseFault("drop")).toEqual({ kind: "drop" });
    expect(parseFault("silent")).toEqual({ kind: "silent" });
    expect(parseFault("reject")).toEqual({ kind: "reject", code: 23 });
    expect(parseFault("reject:20")).toEqual({ kind: "reject", code: 20 });
    expect(parseFault("reconnect")).toEqual({ kind: "reconnect", params: [] });
    expect(parseFault("reconnect=pool.example:3333")).toEqual({
      kind: "reconnect",
      params: ["pool.example", 3333, 0],
    });
    expect(parseFault("reconnect=[::1]:3333:7")).toEqual({
      kind: "reconnect",
      params: ["::1", 3333, 7],
    });
    for (const bad of ["", "reject:22", "reconnect=", "reconnect=host", "explode"]) {
      expect(parseFault(bad)).toBeUndefined();
    }
  });
});

describe("sim pool: control lines", () => {
  it("switches faults, makes blocks and reports stats", async () => {
    const pool = await pools.start();
    const m = await pools.miner(pool);
    expect(applyControl(pool, '{"op":"fault","fault":"reject:20"}')).toMatchObject({ ok: true });
    expect(pool.fault()).toEqual({ kind: "reject", code: 20 });
    expect(applyControl(pool, '{"op":"fault","fault":null}')).toMatchObject({
      ok: true,
      fault: null,
    });
    expect(pool.fault()).toBeNull();
    const nb = applyControl(pool, '{"op":"new_block"}');
    expect(nb).toMatchObject({ ok: true, op: "new_block" });
    const clean = await m.client.notification("mining.notify", 2);
    expect(clean.params?.[8]).toBe(true);
    expect(applyControl(pool, '{"op":"difficulty","value":0.5}')).toMatchObject({ ok: true });
    expect((await m.client.notification("mining.set_difficulty", 2)).params).toEqual([0.5]);
    expect(applyControl(pool, '{"op":"stats"}')).toMatchObject({
      ok: true,
      stats: { connections: 1 },
    });
    expect(applyControl(pool, '{"op":"reconnect","to":"127.0.0.1:1:2"}')).toMatchObject({
      ok: true,
    });
    expect((await m.client.notification("client.reconnect")).params).toEqual(["127.0.0.1", 1, 2]);
    expect(applyControl(pool, "nope")).toEqual({ ok: false, error: "not JSON" });
    expect(applyControl(pool, '{"op":"fault","fault":"boom"}')).toMatchObject({ ok: false });
    expect(applyControl(pool, '{"op":"difficulty","value":0}')).toMatchObject({ ok: false });
  });
});
