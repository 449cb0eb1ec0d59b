import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { paramsOf } from "./asic-fake-pool.ts";
import { isSubmit, JOB_A, useHarness, waitEvent } from "./asic-harness.ts";

const h = useHarness();
const authorized = (m: { method?: string }) => m.method === "mining.authorize";

/** A port nobody listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const addr = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return addr && typeof addr === "object" ? addr.port : 0;
}

describe("pool slot failover", () => {
  it("fails over to slot 2 after the silence timeout, then to slot 3", async () => {
    const p1 = await h.pool();
    const p2 = await h.pool();
    const p3 = await h.pool();
    const { events } = h.miner("s9", [p1.url, p2.url, p3.url], { silenceTimeoutMs: 600 });
    const c1 = await p1.conn(0);
    await c1.waitFor(authorized);
    // Pool 1 answers the handshake, then says nothing: after the timeout the miner leaves.
    await c1.waitClosed();
    const c2 = await p2.conn(0);
    await c2.waitFor(authorized);
    await c2.waitClosed();
    await (await p3.conn(0)).waitFor(authorized);
    const failovers = events.filter((e) => e.type === "failover");
    expect(failovers.slice(0, 2)).toMatchObject([
      { from: 0, to: 1, reason: "silence" },
      { from: 1, to: 2, reason: "silence" },
    ]);
  });

  it("a pool that keeps talking is not left", async () => {
    const p1 = await h.pool();
    const p2 = await h.pool();
    h.miner("s9", [p1.url, p2.url], { silenceTimeoutMs: 600 });
    const c1 = await p1.conn(0);
    await c1.waitFor(authorized);
    c1.setDifficulty(2 ** -20);
    // Jobs every 200 ms (and the answers to the shares) keep the connection alive.
    const ticker = setInterval(() => c1.notify(JOB_A, false), 200);
    try {
      await c1.waitForCount(isSubmit, 10);
      await new Promise((r) => setTimeout(r, 1500));
      expect(c1.closed).toBe(false);
      expect(p2.conns).toHaveLength(0);
    } finally {
      clearInterval(ticker);
    }
  });

  it("goes straight to the next slot when a pool refuses the connection", async () => {
    const dead = `stratum+tcp://127.0.0.1:${await deadPort()}`;
    const p2 = await h.pool();
    const { events } = h.miner("s19", [dead, p2.url]);
    await (await p2.conn(0)).waitFor(authorized);
    expect(events.find((e) => e.type === "failover")).toMatchObject({
      from: 0,
      to: 1,
      reason: "refused",
    });
  });
});

describe("client.reconnect", () => {
  it("with empty params reconnects to the same host and port", async () => {
    const pool = await h.pool();
    const { events } = h.miner("s9", [pool.url]);
    const c0 = await pool.conn(0);
    await c0.waitFor(authorized);
    c0.send({ id: null, method: "client.reconnect", params: [] });
    await c0.waitClosed();
    const c1 = await pool.conn(1);
    // cgminer resumes its session on the same pool.
    expect(paramsOf(await c1.waitFor((m) => m.method === "mining.subscribe"))).toEqual([
      "bmminer/2.0.0",
      "sess-1",
    ]);
    await c1.waitFor(authorized);
    expect(events.find((e) => e.type === "reconnect")).toMatchObject({
      host: "127.0.0.1",
      port: pool.port,
    });
  });

  it("moves to a host in the same domain (cgminer compares from the first dot)", async () => {
    const pool = await h.pool();
    const other = await h.pool();
    h.miner("bosminer", [pool.url]);
    const c0 = await pool.conn(0);
    await c0.waitFor(authorized);
    c0.send({ id: null, method: "client.reconnect", params: ["127.0.0.1", String(other.port), 0] });
    await (await other.conn(0)).waitFor(authorized);
    expect(pool.conns).toHaveLength(1);
  });

  it("refuses a host in another domain and keeps mining where it is", async () => {
    const pool = await h.pool();
    const { events } = h.miner("s9", [pool.url]);
    const c0 = await pool.conn(0);
    await c0.waitFor(authorized);
    c0.send({ id: null, method: "client.reconnect", params: ["pool.evil.example", "3333", 0] });
    await waitEvent(events, (e) => e.type === "reconnect-refused");
    // Still on the same connection: it takes a job and submits on it.
    c0.setDifficulty(2 ** -20);
    c0.notify(JOB_A);
    await c0.waitFor(isSubmit);
    expect(c0.closed).toBe(false);
    expect(pool.conns).toHaveLength(1);
  });
});
