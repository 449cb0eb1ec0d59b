import { execFileSync } from "node:child_process";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../lib/clock.ts";
import { Registry } from "../../lib/metrics/registry.ts";
import type { MiningGateInput } from "../../policy-guard/gates.ts";
import { SimPool } from "../../sim/pool/server.ts";
import { type ProxyOptions, StratumProxy } from "../../stratum-client/proxy.ts";
import { DIFF1, type Message, parseNotify, solve, TestClient } from "../sim/pool-helpers.ts";
import { lineReader } from "./net-helpers.ts";

/**
 * Issue 15: every per-connection structure of the proxy is bounded, and breaking a bound
 * closes that connection alone with a stable reason, audited; an honest miner on another
 * connection keeps mining throughout. Real sockets; the assertions read the counts the proxy
 * holds (`footprint()`), not the process's memory.
 */

const DIFF = 2 ** -28; // 16 hashes a share: quick to solve in JS
const POOL_DIFF = 2 ** -4; // no share reaches the pool's target: nothing to forward
const USER = "owner1.farm-a";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function gate(port: number, over: Partial<MiningGateInput> = {}): MiningGateInput {
  return {
    allow: true,
    reasons: [],
    upstreams: [{ url: `stratum+tcp://127.0.0.1:${port}`, user: USER }],
    networks: ["127.0.0.1/32"],
    maxWatts: null,
    maxTempC: null,
    jobClasses: null,
    ...over,
  };
}

async function setup(over: Partial<ProxyOptions> = {}, gateOver: Partial<MiningGateInput> = {}) {
  const pool = await SimPool.start({ difficulty: POOL_DIFF, jobIntervalMs: 0 });
  cleanups.push(() => pool.close());
  const registry = new Registry();
  const audit: Record<string, unknown>[] = [];
  const proxy = new StratumProxy({
    host: "127.0.0.1",
    port: 0,
    agentVersion: "0.1.0",
    clock: systemClock,
    registry,
    vardiff: { initial: DIFF, min: DIFF, max: DIFF },
    audit: (e) => void audit.push(e),
    ...over,
  });
  cleanups.push(() => proxy.close());
  const { port } = await proxy.listen();
  proxy.apply(gate(pool.address.port, gateOver));
  return { pool, proxy, port, registry, audit };
}

/** An honest miner: subscribed, authorized as `worker`, with its first job. */
async function honest(port: number, worker = "rig1") {
  const client = await TestClient.connect(port);
  cleanups.push(() => client.close());
  const sub = await client.request("mining.subscribe", ["bmminer/2.0.0", null]);
  const [, en1, en2Size] = sub.result as [unknown, string, number];
  expect((await client.request("mining.authorize", [worker, "x"])).result).toBe(true);
  const first = parseNotify(await client.notification("mining.notify"));
  let n = 0;
  /** Submits a share meeting DIFF (for the first job by default); resolves with the answer. */
  const share = (name = worker, job = first): Promise<Message> => {
    const en2 = (++n).toString(16).padStart(en2Size * 2, "0");
    const s = solve(job, en1, en2, DIFF1 * 2n ** 28n);
    return client.request("mining.submit", [name, job.jobId, en2, job.ntime, s.nonceHex]);
  };
  return { client, share };
}

/** Whether the connection closed before it answered a ping sent after everything else. */
async function closedBeforePing(c: TestClient): Promise<"closed" | "answered"> {
  return Promise.race([
    c.closed.then(() => "closed" as const),
    c.request("mining.ping", []).then(() => "answered" as const),
  ]);
}

describe("StratumProxy bounds (issue 15)", () => {
  it("closes a connection that authorizes more workers than allowed, holding at most that many; an honest miner keeps mining", async () => {
    const { proxy, port, audit, registry } = await setup();
    const miner = await honest(port);
    expect((await miner.share()).result).toBe(true);

    const hostile = await TestClient.connect(port);
    cleanups.push(() => hostile.close());
    await hostile.request("mining.subscribe", []);
    // The cap itself is allowed: 16 names, each answered true.
    for (let i = 0; i < 16; i++) {
      const r = await hostile.request("mining.authorize", [`w${i}`.padEnd(110, "x"), ""]);
      expect(r.result).toBe(true);
    }
    const views = proxy.minerViews();
    expect(views.map((v) => v.workers.length).sort((a, b) => a - b)).toEqual([1, 16]);
    // Then thousands more, pipelined, as the fuzzer did.
    for (let i = 16; i < 5000; i++) {
      hostile.send({ method: "mining.authorize", params: [`w${i}`.padEnd(110, "x"), ""] });
    }
    expect(await closedBeforePing(hostile)).toBe("closed");
    // The 17th name was answered with a refusal, and nothing after it.
    const refusals = hostile.received.filter((m) => m.error !== null && m.error !== undefined);
    expect(refusals).toHaveLength(1);
    expect((refusals[0]?.error as unknown[] | undefined)?.[1]).toMatch(/too many workers/);
    expect(proxy.counters.drops.too_many_workers).toBe(1);
    expect(audit).toContainEqual({
      type: "stratum.connection_closed",
      reason: "too_many_workers",
      ip: "127.0.0.1",
    });
    // What the proxy holds now: the honest miner and its one worker.
    await until(() => proxy.miners === 1, "the hostile miner to be forgotten");
    expect(proxy.footprint()).toMatchObject({
      connections: 1,
      ip_entries: 1,
      workers: 1,
      subscribe_waiters: 0,
    });
    // The honest miner did not notice.
    expect((await miner.share()).result).toBe(true);
    expect(registry.render()).toContain(
      'agentd_stratum_shares_total{worker="rig1",result="accepted"} 2',
    );
  });

  it("refuses a worker name that is too long or holds control characters, keeping the connection", async () => {
    const { proxy, port } = await setup();
    const c = await TestClient.connect(port);
    cleanups.push(() => c.close());
    await c.request("mining.subscribe", []);
    for (const bad of ["x".repeat(129), "rig\u0000one", "rig\none", ""]) {
      const r = await c.request("mining.authorize", [bad, ""]);
      expect([r.result, (r.error as unknown[])[0]]).toEqual([false, 24]);
    }
    expect((await c.request("mining.authorize", ["x".repeat(128), ""])).result).toBe(true);
    expect(proxy.footprint().workers).toBe(1);
  });

  it("keeps one subscribe in flight per connection, whatever the miner pipelines", async () => {
    // No upstream: every subscribe would wait for a session.
    const { proxy, port } = await setup({ subscribeWaitMs: 600_000 }, { upstreams: [] });
    const socket = connect(port, "127.0.0.1");
    cleanups.push(() => socket.destroy());
    const lines = lineReader(socket);
    const line = (m: unknown) => `${JSON.stringify(m)}\n`;
    // Two subscribes, ten thousand more as notifications (the codec never counts those as in
    // flight), then a ping: everything before the pong has been handled when it comes.
    let out = line({ id: 1, method: "mining.subscribe", params: [] });
    out += line({ id: 2, method: "mining.subscribe", params: [] });
    out += line({ id: null, method: "mining.subscribe", params: [] }).repeat(10_000);
    out += line({ id: 3, method: "mining.ping", params: [] });
    socket.write(out);
    while (((await lines.next()) as { id: unknown }).id !== 3);
    const answers = lines.lines.map((m) => m as { id: number; error: unknown });
    expect(answers.find((m) => m.id === 2)?.error).toEqual([20, "already subscribed", null]);
    expect(answers.some((m) => m.id === 1)).toBe(false); // still waiting, alone
    expect(answers.some((m) => m.id === 3)).toBe(true);
    expect(proxy.footprint().subscribe_waiters).toBe(1);
  });

  it("bounds the shares remembered for duplicate detection, closing with its reason", async () => {
    const { proxy, port, audit } = await setup({ maxRememberedShares: 64 });
    const other = await honest(port, "rig2");
    const miner = await honest(port);
    for (let i = 0; i < 64; i++) expect((await miner.share()).result).toBe(true);
    expect(proxy.footprint().remembered_shares).toBe(64);
    expect(await Promise.race([miner.client.closed.then(() => "closed"), miner.share()])).toBe(
      "closed",
    );
    expect(proxy.counters.drops.too_many_shares).toBe(1);
    expect(audit).toContainEqual({
      type: "stratum.connection_closed",
      reason: "too_many_shares",
      ip: "127.0.0.1",
    });
    await until(() => proxy.miners === 1, "the closed miner to be forgotten");
    expect(proxy.footprint().remembered_shares).toBe(0);
    expect((await other.share()).result).toBe(true);
  });

  it("at the bound of remembered shares forgets the oldest other job first, and keeps mining", async () => {
    const { pool, proxy, port } = await setup({ maxRememberedShares: 64 });
    const miner = await honest(port);
    for (let i = 0; i < 40; i++) expect((await miner.share()).result).toBe(true);
    pool.newJob(); // not clean: the first job stays live
    const second = parseNotify(await miner.client.notification("mining.notify", 2));
    expect(second.clean).toBe(false);
    for (let i = 0; i < 40; i++) expect((await miner.share("rig1", second)).result).toBe(true);
    // The first job's 40 were forgotten to make room: its shares are refused as unknown.
    expect(proxy.footprint().remembered_shares).toBe(40);
    expect(((await miner.share()).error as unknown[])[0]).toBe(21);
    expect(miner.client.destroyed).toBe(false);
    expect((await miner.share("rig1", second)).result).toBe(true);
  });

  it("audits a connection reset before it could be identified with that reason, not as a refusal", async () => {
    const { port, audit, registry } = await setup();
    // A child process connects and resets while this process's event loop is blocked, so the
    // proxy accepts a connection that is already gone (no peer address any more): the order
    // the fuzzer hit by chance, made certain.
    execFileSync(process.execPath, [
      "-e",
      `const s = require("node:net").connect(${port}, "127.0.0.1", () => s.resetAndDestroy());
       s.on("close", () => process.exit(0));`,
    ]);
    await until(() => audit.length > 0, "the audit record");
    expect(audit).toEqual([
      { type: "stratum.connection_closed", reason: "closed_before_identified", ip: null },
    ]);
    expect(registry.render()).not.toContain('reason="network"');
  });

  it("gives per-worker metric series to authorized workers only, with sanitized bounded names", async () => {
    const { port, registry } = await setup();
    const junk = await TestClient.connect(port);
    cleanups.push(() => junk.close());
    // 1,100 distinct names nobody authorized, some long, some with NUL bytes, before subscribe
    // (25) and after (24).
    for (let i = 0; i < 550; i++)
      junk.send({ method: "mining.submit", params: [`j${i}\u0000`.padEnd(300, "z"), "", "", ""] });
    await junk.request("mining.subscribe", []);
    for (let i = 550; i < 1100; i++)
      junk.send({ method: "mining.submit", params: [`j${i}`.padEnd(300, "\u0001"), "", "", ""] });
    await junk.request("mining.ping", []);
    const miner = await honest(port, "rig 7/ü~");
    expect((await miner.share()).result).toBe(true);
    const text = registry.render();
    expect(text).toContain('agentd_stratum_shares_total{worker="rig_7___",result="accepted"} 1');
    expect(text).toContain(
      'agentd_stratum_shares_total{worker="_unauthorized",result="unauthorized"} 550',
    );
    expect(text).toContain(
      'agentd_stratum_shares_total{worker="_unauthorized",result="not_subscribed"} 550',
    );
    expect(text).not.toContain('worker="_other"');
    expect(text).not.toContain("\u0000");
    for (const m of text.matchAll(/worker="([^"]*)"/g)) {
      expect(m[1]?.length ?? 0).toBeLessThanOrEqual(64);
      expect(m[1]).toMatch(/^[A-Za-z0-9._-]+$/);
    }
  });
});

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
