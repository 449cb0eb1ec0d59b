import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../lib/clock.ts";
import { Registry } from "../../lib/metrics/registry.ts";
import type { MiningGateInput } from "../../policy-guard/gates.ts";
import { SimPool } from "../../sim/pool/server.ts";
import { StratumProxy } from "../../stratum-client/proxy.ts";
import {
  buildHeader,
  DIFF1,
  hashInt,
  type Message,
  type Notify,
  parseNotify,
  solve,
  TestClient,
} from "../sim/pool-helpers.ts";

/**
 * The proxy between real sockets: a hand-written miner (its own SHA-256d, test/sim helpers)
 * → StratumProxy → the simulated pool, which validates with bitcoinjs-lib. Nothing here
 * shares the proxy's validation code.
 */

const MINER_DIFF = 2 ** -20; // 4,096 hashes a share
const POOL_DIFF = 2 ** -18; // so about one share in four reaches the pool
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

async function setup(over: Partial<MiningGateInput> = {}) {
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
    vardiff: { initial: MINER_DIFF, min: 2 ** -30, max: 1 },
    audit: (e) => void audit.push(e),
  });
  cleanups.push(() => proxy.close());
  const addr = await proxy.listen();
  proxy.apply(gate(pool.address.port, over));
  return { pool, proxy, port: addr.port, registry, audit };
}

interface Handshake {
  readonly client: TestClient;
  readonly en1: string;
  readonly en2Size: number;
  readonly difficulty: number;
  readonly job: Notify;
  readonly mask: string;
}

async function handshake(port: number, worker = "rig1"): Promise<Handshake> {
  const client = await TestClient.connect(port);
  cleanups.push(() => client.close());
  const conf = await client.request("mining.configure", [
    ["version-rolling", "minimum-difficulty"],
    { "version-rolling.mask": "ffffffff" },
  ]);
  const sub = await client.request("mining.subscribe", ["bmminer/2.0.0", null]);
  const [, en1, en2Size] = sub.result as [unknown, string, number];
  const auth = await client.request("mining.authorize", [worker, "x"]);
  expect(auth.result).toBe(true);
  const diff = await client.notification("mining.set_difficulty");
  const job = parseNotify(await client.notification("mining.notify"));
  const r = conf.result as Record<string, unknown>;
  expect(r["minimum-difficulty"]).toBe(false);
  return {
    client,
    en1,
    en2Size,
    difficulty: (diff.params ?? [])[0] as number,
    job,
    mask: r["version-rolling.mask"] as string,
  };
}

function submit(
  h: Handshake,
  worker: string,
  en2: string,
  nonce: string,
  version?: string,
  job = h.job,
): Promise<Message> {
  const params = [
    worker,
    job.jobId,
    en2,
    job.ntime,
    nonce,
    ...(version === undefined ? [] : [version]),
  ];
  return h.client.request("mining.submit", params);
}

const en2Of = (h: Handshake, i: number) => i.toString(16).padStart(h.en2Size * 2, "0");

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("StratumProxy", () => {
  it("splits the upstream extranonce, validates shares, forwards only those meeting the pool target, as the policy's user", async () => {
    const { pool, port, proxy } = await setup();
    const a = await handshake(port, "rig1");
    const b = await handshake(port, "rig2");
    // extranonce1 = the pool's 4 bytes + a 2-byte prefix; 8 - 2 bytes left to each miner.
    expect(a.en1).toHaveLength(12);
    expect(a.en2Size).toBe(6);
    expect(a.en1.slice(0, 8)).toBe(b.en1.slice(0, 8));
    expect(a.en1).not.toBe(b.en1);
    expect(a.difficulty).toBe(MINER_DIFF);
    expect(a.mask).toBe("1fffe000");

    const minerTarget = DIFF1 * 2n ** 20n;
    const poolTarget = DIFF1 * 2n ** 18n;
    let forwarded = 0;
    for (let i = 0; i < 12; i++) {
      const s = solve(a.job, a.en1, en2Of(a, i), minerTarget);
      const r = await submit(a, "rig1", en2Of(a, i), s.nonceHex);
      expect(r.result).toBe(true);
      if (BigInt(`0x${s.hash}`) <= poolTarget) forwarded++;
    }
    await until(
      () =>
        proxy.accounting.totals.forwardAccepted + proxy.accounting.totals.forwardRejected >=
        forwarded,
      "forwards",
    );
    const stats = pool.stats();
    expect(stats.accepted).toBe(forwarded);
    expect(Object.keys(stats.users)).toEqual(forwarded > 0 ? [USER] : []);
    expect(proxy.accounting.totals.forwardAccepted).toBe(forwarded);
    expect(proxy.accounting.workers.get("rig1")?.accepted).toBe(12);
    // Every forwarded share's extranonce: the miner's prefix + its extranonce2.
    for (const sh of stats.shares) expect(sh.extranonce2.slice(0, 4)).toBe(a.en1.slice(8));
  });

  it("answers each invalid submit with its code and forwards none of them", async () => {
    const { pool, port } = await setup();
    const h = await handshake(port);
    const minerTarget = DIFF1 * 2n ** 20n;
    const good = solve(h.job, h.en1, en2Of(h, 1), minerTarget);
    expect((await submit(h, "rig1", en2Of(h, 1), good.nonceHex)).result).toBe(true);
    const codeOf = (m: Message) => (m.error as unknown[] | null)?.[0];
    expect(codeOf(await submit(h, "rig1", en2Of(h, 1), good.nonceHex))).toBe(22);
    const low = solve(h.job, h.en1, en2Of(h, 2), minerTarget, false);
    expect(codeOf(await submit(h, "rig1", en2Of(h, 2), low.nonceHex))).toBe(23);
    expect(
      codeOf(
        await submit(h, "rig1", en2Of(h, 3), "00000000", undefined, { ...h.job, jobId: "nope" }),
      ),
    ).toBe(21);
    expect(codeOf(await submit(h, "rig1", "00", "00000000"))).toBe(20);
    expect(codeOf(await submit(h, "someone-else", en2Of(h, 4), "00000000"))).toBe(24);
    expect(codeOf(await submit(h, "rig1", en2Of(h, 5), "00000000", "00000001"))).toBe(20); // outside 1fffe000
    const late = (Number.parseInt(h.job.ntime, 16) + 7001).toString(16).padStart(8, "0");
    const lateReply = await h.client.request("mining.submit", [
      "rig1",
      h.job.jobId,
      en2Of(h, 6),
      late,
      "00000000",
    ]);
    expect(lateReply.error).toEqual([20, "ntime out of range", null]);
    const before = pool.stats().accepted;
    await new Promise((r) => setTimeout(r, 100));
    expect(pool.stats().accepted).toBe(before);
  });

  it("accepts version-rolled shares within the mask and they verify at the pool", async () => {
    const { pool, port, proxy } = await setup();
    const h = await handshake(port);
    const jobVersion = Number.parseInt(h.job.version, 16);
    const bits = 0x00004000;
    const version = ((jobVersion & ~0x1fffe000) | bits) >>> 0;
    const poolTarget = DIFF1 * 2n ** 18n;
    let sent = 0;
    for (let i = 0; sent < 2 && i < 200; i++) {
      const s = solve(h.job, h.en1, en2Of(h, i), poolTarget, true, version);
      const header = buildHeader(h.job, h.en1, en2Of(h, i), h.job.ntime, s.nonce, version);
      expect(hashInt(header) <= poolTarget).toBe(true);
      expect(
        (await submit(h, "rig1", en2Of(h, i), s.nonceHex, bits.toString(16).padStart(8, "0")))
          .result,
      ).toBe(true);
      sent++;
    }
    await until(() => proxy.accounting.totals.forwardAccepted >= 2, "rolled shares at the pool");
    expect(pool.stats().accepted).toBe(2);
  });

  it("denied: submits get 24 with the policy reason, nothing is forwarded; allowed again: a clean job", async () => {
    const { pool, port, proxy } = await setup();
    const h = await handshake(port);
    const up = pool.address.port;
    proxy.apply(gate(up, { allow: false, reasons: ["rules.schedule_outside"] }));
    const poolTarget = DIFF1 * 2n ** 18n;
    const s = solve(h.job, h.en1, en2Of(h, 9), poolTarget);
    const r = await submit(h, "rig1", en2Of(h, 9), s.nonceHex);
    expect(r.error).toEqual([24, "mining denied: rules.schedule_outside", null]);
    pool.newJob();
    await new Promise((res) => setTimeout(res, 200));
    const notifies = h.client.received.filter((m) => m.method === "mining.notify").length;
    expect(notifies).toBe(1); // the new upstream job was not passed on while denied
    expect(pool.stats().accepted).toBe(0);
    proxy.apply(gate(up));
    const again = parseNotify(await h.client.notification("mining.notify", 2));
    expect(again.clean).toBe(true);
    const s2 = solve(again, h.en1, en2Of(h, 10), poolTarget);
    expect((await submit(h, "rig1", en2Of(h, 10), s2.nonceHex, undefined, again)).result).toBe(
      true,
    );
    await until(() => pool.stats().accepted === 1, "the share after re-allow");
  });

  it("refuses ASICs from outside the policy's networks, and audits it", async () => {
    const { port, audit, registry } = await setup({ networks: ["10.0.0.0/8"] });
    const c = await TestClient.connect(port);
    await c.closed;
    expect(audit).toContainEqual(
      expect.objectContaining({ type: "stratum.connection_refused", reason: "network" }),
    );
    expect(registry.render()).toContain(
      'agentd_stratum_connections_refused_total{reason="network"} 1',
    );
  });

  it("refuses a client.reconnect to an upstream the policy does not list, and audits it", async () => {
    const { pool, port, audit, proxy } = await setup();
    await handshake(port);
    pool.sendReconnect(["evil.example", 3333, 0]);
    await until(() => audit.some((e) => e.type === "stratum.reconnect_refused"), "the refusal");
    expect(audit.find((e) => e.type === "stratum.reconnect_refused")).toMatchObject({
      target: expect.stringContaining("evil.example"),
    });
    expect(proxy.upstreamInUse()).toBe(`stratum+tcp://127.0.0.1:${pool.address.port}`);
  });

  it("honours the previous difficulty for a job sent before a change; the change comes with a clean job", async () => {
    const { port } = await setup();
    const h = await handshake(port);
    // The miner asks for a 4× harder difficulty: set_difficulty, then a clean job.
    expect((await h.client.request("mining.suggest_difficulty", [MINER_DIFF * 4])).result).toBe(
      true,
    );
    const d2 = await h.client.notification("mining.set_difficulty", 2);
    expect((d2.params ?? [])[0]).toBe(MINER_DIFF * 4);
    const job2 = parseNotify(await h.client.notification("mining.notify", 2));
    expect(job2.clean).toBe(true);
    expect(job2.jobId).not.toBe(h.job.jobId);
    // A share for the first job that meets the old difficulty but not the new one: accepted.
    const old = DIFF1 * 2n ** 20n;
    let found: ReturnType<typeof solve> | null = null;
    let i = 100;
    for (; found === null; i++) {
      const s = solve(h.job, h.en1, en2Of(h, i), old);
      if (BigInt(`0x${s.hash}`) > old / 4n) found = s;
    }
    expect((await submit(h, "rig1", en2Of(h, i - 1), found.nonceHex)).result).toBe(true);
    // The same kind of share for the new job is too easy now: 23.
    let low: ReturnType<typeof solve> | null = null;
    let j = 500;
    for (; low === null; j++) {
      const s = solve(job2, h.en1, en2Of(h, j), old);
      if (BigInt(`0x${s.hash}`) > old / 4n) low = s;
    }
    const r = await submit(h, "rig1", en2Of(h, j - 1), low.nonceHex, undefined, job2);
    expect((r.error as unknown[])[0]).toBe(23);
  });

  it("caps connections per IP address", async () => {
    const pool = await SimPool.start({ difficulty: POOL_DIFF, jobIntervalMs: 0 });
    cleanups.push(() => pool.close());
    const registry = new Registry();
    const proxy = new StratumProxy({
      host: "127.0.0.1",
      port: 0,
      agentVersion: "0.1.0",
      clock: systemClock,
      registry,
      maxConnectionsPerIp: 3,
    });
    cleanups.push(() => proxy.close());
    const { port } = await proxy.listen();
    proxy.apply(gate(pool.address.port));
    const kept: TestClient[] = [];
    for (let k = 0; k < 3; k++) {
      const c = await TestClient.connect(port);
      cleanups.push(() => c.close());
      expect((await c.request("mining.ping", [])).result).toBe("pong");
      kept.push(c);
    }
    const fourth = await TestClient.connect(port);
    await fourth.closed;
    expect(registry.render()).toContain(
      'agentd_stratum_connections_refused_total{reason="ip_cap"} 1',
    );
    kept[0]?.close();
    await until(() => proxy.miners === 2, "the slot to free");
    const fifth = await TestClient.connect(port);
    cleanups.push(() => fifth.close());
    expect((await fifth.request("mining.ping", [])).result).toBe("pong");
  });

  it("opens another upstream session when one session's extranonce space is full", async () => {
    // extranonce2 of 3 bytes: 1 prefix byte, so 256 miners per upstream session.
    const pool = await SimPool.start({
      difficulty: POOL_DIFF,
      jobIntervalMs: 0,
      extranonce2Size: 3,
    });
    cleanups.push(() => pool.close());
    const proxy = new StratumProxy({
      host: "127.0.0.1",
      port: 0,
      agentVersion: "0.1.0",
      clock: systemClock,
      maxConnectionsPerIp: 1000,
      subscribeWaitMs: 5000,
    });
    cleanups.push(() => proxy.close());
    const { port } = await proxy.listen();
    proxy.apply(gate(pool.address.port));
    const en1s = new Set<string>();
    for (let k = 0; k < 257; k++) {
      const c = await TestClient.connect(port);
      cleanups.push(() => c.close());
      const sub = await c.request("mining.subscribe", ["cgminer/4.11.1"]);
      const [, en1, en2Size] = sub.result as [unknown, string, number];
      expect(en2Size).toBe(2);
      en1s.add(en1);
    }
    expect(en1s.size).toBe(257); // unique across sessions too
    expect(proxy.lanes().length).toBe(2);
    expect(pool.stats().connections).toBe(2);
  }, 60_000);
});
