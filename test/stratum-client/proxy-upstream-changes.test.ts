import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../lib/clock.ts";
import { StratumProxy } from "../../stratum-client/proxy.ts";
import { type Message, TestClient } from "../sim/pool-helpers.ts";

/**
 * What an upstream may change under the proxy's miners: its version-rolling support and its
 * extranonce; and a miner that subscribes several times while the upstream is not ready.
 * The upstream here is a small scripted pool, so that each case is exact.
 */

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface FakePool {
  readonly port: number;
  readonly sockets: Socket[];
  readonly submits: Message[];
  send(o: unknown): void;
}

async function fakePool(o: { rolling: boolean; authDelayMs?: number }): Promise<FakePool> {
  const sockets: Socket[] = [];
  const submits: Message[] = [];
  const server: Server = createServer((s) => {
    sockets.push(s);
    let buf = "";
    s.setEncoding("utf8");
    s.on("error", () => {});
    s.on("data", (chunk: string) => {
      buf += chunk;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const m = JSON.parse(buf.slice(0, nl)) as Message & { id: number };
        buf = buf.slice(nl + 1);
        const send = (x: unknown) => s.write(`${JSON.stringify(x)}\n`);
        if (m.method === "mining.configure") {
          send({
            id: m.id,
            result: o.rolling
              ? { "version-rolling": true, "version-rolling.mask": "1fffe000" }
              : { "version-rolling": false },
            error: null,
          });
        } else if (m.method === "mining.subscribe") {
          send({ id: m.id, result: [[], "f000000d", 4], error: null });
        } else if (m.method === "mining.extranonce.subscribe") {
          send({ id: m.id, result: true, error: null });
        } else if (m.method === "mining.authorize") {
          setTimeout(() => {
            send({ id: m.id, result: true, error: null });
            send({ id: null, method: "mining.set_difficulty", params: [2 ** -30] });
            send({
              id: null,
              method: "mining.notify",
              params: [
                "j1",
                "00".repeat(32),
                "01000000",
                "ffffffff",
                [],
                "20000000",
                "1d00ffff",
                "5f5e1000",
                true,
              ],
            });
          }, o.authDelayMs ?? 0);
        } else if (m.method === "mining.submit") {
          submits.push(m);
          send({ id: m.id, result: true, error: null });
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no address");
  return {
    port: address.port,
    sockets,
    submits,
    send: (x) => sockets.at(-1)?.write(`${JSON.stringify(x)}\n`),
  };
}

async function proxyFor(pool: FakePool): Promise<{ proxy: StratumProxy; port: number }> {
  const proxy = new StratumProxy({
    host: "127.0.0.1",
    port: 0,
    agentVersion: "0.1.0",
    clock: systemClock,
    vardiff: { initial: 2 ** -30, min: 2 ** -30, max: 1 },
  });
  cleanups.push(() => proxy.close());
  const { port } = await proxy.listen();
  proxy.apply({
    allow: true,
    reasons: [],
    upstreams: [{ url: `stratum+tcp://127.0.0.1:${pool.port}`, user: "u" }],
    networks: ["127.0.0.1/32"],
    maxWatts: null,
    maxTempC: null,
    jobClasses: null,
  });
  return { proxy, port };
}

async function minerOf(port: number): Promise<TestClient> {
  const c = await TestClient.connect(port);
  cleanups.push(() => c.close());
  return c;
}

describe("upstream changes under the miners", () => {
  it("narrows a mask granted before the upstream was known, and refuses bits the upstream cannot take", async () => {
    const pool = await fakePool({ rolling: false, authDelayMs: 300 });
    const { port } = await proxyFor(pool);
    const c = await minerOf(port);
    // configure arrives first, before any upstream answered: the default mask is offered.
    const conf = await c.request("mining.configure", [
      ["version-rolling"],
      { "version-rolling.mask": "ffffffff" },
    ]);
    expect((conf.result as Record<string, unknown>)["version-rolling.mask"]).toBe("1fffe000");
    const sub = await c.request("mining.subscribe", ["bosminer"]);
    expect(Array.isArray(sub.result)).toBe(true);
    // The upstream has no version rolling: the miner is told at once.
    const narrowed = await c.notification("mining.set_version_mask");
    expect(narrowed.params).toEqual(["00000000"]);
    expect((await c.request("mining.authorize", ["w", "x"])).result).toBe(true);
    await c.notification("mining.notify");
    const en2 = "00".repeat((sub.result as [unknown, string, number])[2]);
    const r = await c.request("mining.submit", [
      "w",
      "j1",
      en2,
      "5f5e1000",
      "00000000",
      "00002000",
    ]);
    expect(r.error).toEqual([20, "version bits outside the negotiated mask", null]);
    expect(pool.submits).toEqual([]);
  });

  it("an upstream mining.set_extranonce moves the miners: reconnect, then close", async () => {
    const pool = await fakePool({ rolling: true });
    const { port } = await proxyFor(pool);
    const c = await minerOf(port);
    await c.request("mining.subscribe", ["cgminer/4.11.1"]);
    await c.request("mining.authorize", ["w", "x"]);
    await c.notification("mining.notify");
    pool.send({ id: null, method: "mining.set_extranonce", params: ["abcd0001", 4] });
    const reconnect = await c.notification("client.reconnect");
    expect(reconnect.params).toEqual([]);
    await c.closed;
  });

  it("several subscribes on one connection while the upstream is not ready take one prefix", async () => {
    const pool = await fakePool({ rolling: true, authDelayMs: 300 });
    const { proxy, port } = await proxyFor(pool);
    const c = await minerOf(port);
    const ids = [1, 2, 3, 4, 5].map(() => c.send({ method: "mining.subscribe", params: ["x"] }));
    const replies = await Promise.all(ids.map((id) => c.waitFor((m) => m.id === id)));
    const ok = replies.filter((r) => Array.isArray(r.result));
    expect(ok).toHaveLength(1);
    expect(
      replies.filter((r) => (r.error as unknown[] | null)?.[1] === "already subscribed"),
    ).toHaveLength(4);
    c.close();
    await new Promise((r) => setTimeout(r, 100));
    // On close the miner left its lane (and its one prefix went back to the allocator).
    expect(proxy.lanes()[0]?.miners.size).toBe(0);
  });
});
