import { describe, expect, it } from "vitest";
import { paramsOf } from "./asic-fake-pool.ts";
import { isSubmit, JOB_A, sleep, useHarness, waitEvent } from "./asic-harness.ts";

const h = useHarness();
const methods = (ms: { method?: string }[]) => ms.map((m) => m.method);

describe("handshake dialects (PROTOCOLS.md §1)", () => {
  it("stock S9: subscribe → authorize → multi_version [1], waiting for each answer", async () => {
    const pool = await h.pool();
    h.miner("s9", [pool.url]);
    const c = await pool.conn(0);
    await c.waitFor((m) => m.method === "mining.multi_version");
    expect(methods(c.messages)).toEqual([
      "mining.subscribe",
      "mining.authorize",
      "mining.multi_version",
    ]);
    expect(c.messages[0]?.params).toEqual(["bmminer/2.0.0"]);
    expect(c.messages[1]?.params).toEqual(["owner.rig1", "x"]);
    expect(c.messages[2]?.params).toEqual([1]);
  });

  it("stock S9 with #xnsub and a suggested difficulty: the full cgminer order", async () => {
    const pool = await h.pool();
    h.miner("s9", [`${pool.url}#xnsub`], { suggestDifficulty: 512 });
    const c = await pool.conn(0);
    await c.waitFor((m) => m.method === "mining.multi_version");
    expect(c.messages.map((m) => [m.method, m.params])).toEqual([
      ["mining.subscribe", ["bmminer/2.0.0"]],
      ["mining.extranonce.subscribe", []],
      ["mining.authorize", ["owner.rig1", "x"]],
      ["mining.suggest_difficulty", [512]],
      ["mining.multi_version", [1]],
    ]);
  });

  it("stock S9 sends nothing after subscribe until the pool answers it", async () => {
    let answerSubscribe: (() => void) | undefined;
    const pool = await h.pool({
      answer: (m, conn) => {
        if (m.method !== "mining.subscribe") return undefined;
        answerSubscribe = () => conn.send({ id: m.id, result: [[], "00000001", 4], error: null });
        return null;
      },
    });
    h.miner("s9", [pool.url]);
    const c = await pool.conn(0);
    await c.waitFor((m) => m.method === "mining.subscribe");
    await sleep(300);
    expect(methods(c.messages)).toEqual(["mining.subscribe"]);
    answerSubscribe?.();
    await c.waitFor((m) => m.method === "mining.authorize");
    expect(methods(c.messages).slice(0, 2)).toEqual(["mining.subscribe", "mining.authorize"]);
  });

  it("stock S9 resumes with the session id after the pool hangs up", async () => {
    const pool = await h.pool();
    h.miner("s9", [pool.url]);
    const c0 = await pool.conn(0);
    await c0.waitFor((m) => m.method === "mining.multi_version");
    c0.socket.destroy();
    const c1 = await pool.conn(1);
    const sub = await c1.waitFor((m) => m.method === "mining.subscribe");
    expect(sub.params).toEqual(["bmminer/2.0.0", "sess-1"]);
  });

  it("S19 (cgminer 4.x): configure first, min-bit-count as a JSON number", async () => {
    const pool = await h.pool();
    h.miner("s19", [pool.url]);
    const c = await pool.conn(0);
    await c.waitFor((m) => m.method === "mining.authorize");
    expect(methods(c.messages)).toEqual([
      "mining.configure",
      "mining.subscribe",
      "mining.authorize",
    ]);
    const [exts, params] = paramsOf(c.messages[0]) as [string[], Record<string, unknown>];
    expect(exts).toEqual(["version-rolling"]);
    expect(params).toEqual({
      "version-rolling.mask": "1fffe000",
      "version-rolling.min-bit-count": 2,
    });
    expect(typeof params["version-rolling.min-bit-count"]).toBe("number");
    expect(c.messages[1]?.params).toEqual(["bmminer/1.0.0"]);
  });

  it("S19 gives up on a pool whose configure reply lacks version rolling, and fails over", async () => {
    const refusing = await h.pool({ mask: null });
    const backup = await h.pool();
    const { events } = h.miner("s19", [refusing.url, backup.url]);
    const c = await refusing.conn(0);
    await c.waitClosed();
    expect(methods(c.messages)).toEqual(["mining.configure"]);
    const b = await backup.conn(0);
    await b.waitFor((m) => m.method === "mining.authorize");
    expect(events.find((e) => e.type === "failover")).toMatchObject({
      from: 0,
      to: 1,
      reason: "configure refused",
    });
  });

  it("S19 also gives up on `version-rolling: true` without a mask", async () => {
    const pool = await h.pool({
      answer: (m) => (m.method === "mining.configure" ? { "version-rolling": true } : undefined),
    });
    h.miner("s19", [pool.url]);
    const c = await pool.conn(0);
    await c.waitClosed();
    expect(methods(c.messages)).toEqual(["mining.configure"]);
  });

  it("Braiins OS: configure with the old draft's bit-count, then subscribe [agent, null]", async () => {
    const pool = await h.pool();
    h.miner("bosminer", [pool.url]);
    const c = await pool.conn(0);
    await c.waitFor((m) => m.method === "mining.authorize");
    expect(methods(c.messages)).toEqual([
      "mining.configure",
      "mining.subscribe",
      "mining.authorize",
    ]);
    expect(c.messages[0]?.params).toEqual([
      ["version-rolling"],
      { "version-rolling.bit-count": 2, "version-rolling.mask": "ffffffff" },
    ]);
    const sub = c.messages[1]?.params as unknown[];
    expect(sub).toHaveLength(2);
    expect(sub[0]).toMatch(/^bOS_/);
    expect(sub[1]).toBeNull();
  });

  it("Braiins OS keeps mining without rolling when the pool refuses it", async () => {
    const pool = await h.pool({ mask: null });
    h.miner("bosminer", [pool.url]);
    const c = await pool.conn(0);
    await c.waitFor((m) => m.method === "mining.authorize");
    c.setDifficulty(2 ** -20);
    c.notify(JOB_A);
    const s = await c.waitFor(isSubmit);
    expect(s.params).toHaveLength(5);
  });

  it("Bitaxe: configure, subscribe, authorize, suggest_difficulty pipelined without waiting", async () => {
    const pool = await h.pool({ answer: () => null });
    h.miner("bitaxe", [pool.url]);
    const c = await pool.conn(0);
    await c.waitForCount(() => true, 4);
    expect(c.messages.map((m) => [m.method, m.params])).toEqual([
      ["mining.configure", [["version-rolling"], { "version-rolling.mask": "ffffffff" }]],
      ["mining.subscribe", [expect.stringMatching(/^bitaxe\/BM1370\//)]],
      ["mining.authorize", ["owner.rig1", "x"]],
      ["mining.suggest_difficulty", [1000]],
    ]);
  });

  it("cpuminer: min-bit-count as a string", async () => {
    const pool = await h.pool();
    h.miner("cpuminer", [pool.url]);
    const c = await pool.conn(0);
    await c.waitFor((m) => m.method === "mining.authorize");
    expect(methods(c.messages)).toEqual([
      "mining.configure",
      "mining.subscribe",
      "mining.authorize",
    ]);
    const params = paramsOf(c.messages[0])[1] as Record<string, unknown>;
    expect(params["version-rolling.min-bit-count"]).toBe("2");
    expect(c.messages[1]?.params).toEqual(["cpuminer/2.5.1"]);
  });

  it("refuses extranonce2 sizes outside 2..16 and fails over", async () => {
    const bad = await h.pool({ extranonce2Size: 1 });
    const good = await h.pool();
    const { events } = h.miner("s9", [bad.url, good.url]);
    const c = await bad.conn(0);
    await c.waitClosed();
    expect(methods(c.messages)).toEqual(["mining.subscribe"]);
    await (await good.conn(0)).waitFor((m) => m.method === "mining.authorize");
    expect(
      events.some((e) => e.type === "failover" && e.reason === "extranonce2 size out of range"),
    ).toBe(true);
  });

  it("answers mining.ping and client.get_version", async () => {
    const pool = await h.pool();
    h.miner("s9", [pool.url]);
    const c = await pool.conn(0);
    await c.waitFor((m) => m.method === "mining.multi_version");
    const replies: unknown[] = [];
    c.socket.on("data", (b: Buffer) => {
      for (const line of b.toString().split("\n")) {
        if (line.includes('"id":"p1"') || line.includes('"id":"v1"'))
          replies.push(JSON.parse(line));
      }
    });
    c.send({ id: "p1", method: "mining.ping", params: [] });
    c.send({ id: "v1", method: "client.get_version", params: [] });
    const deadline = Date.now() + 5000;
    while (replies.length < 2 && Date.now() < deadline) await sleep(10);
    expect(replies).toEqual([
      { id: "p1", result: "pong", error: null },
      { id: "v1", result: "bmminer/2.0.0", error: null },
    ]);
  });
});

describe("events", () => {
  it("reports the negotiated mask", async () => {
    const pool = await h.pool({ mask: "ffffe000" });
    const { events } = h.miner("s19", [pool.url]);
    // The miner asked for 1fffe000: the mask in force is the intersection.
    expect(await waitEvent(events, (e) => e.type === "rolling")).toMatchObject({
      mask: "1fffe000",
    });
  });
});
