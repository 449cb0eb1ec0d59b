import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Timers } from "../../lib/timers.ts";
import type { Upstream } from "../../policy-guard/documents.ts";
import { parseV1Url, reconnectTarget } from "../../stratum-client/endpoint.ts";
import {
  backoffDelay,
  type ConnectedInfo,
  type PoolOptions,
  type SessionEnd,
  UpstreamPool,
} from "../../stratum-client/failover.ts";
import { parseSubmitReply } from "../../stratum-client/rejects.ts";
import type { Job } from "../../stratum-client/upstream.ts";
import { type FakePool, notifyParams, usePools } from "./fake-pool.ts";
import { useLoopback } from "./net-helpers.ts";

const fakePool = usePools();
const net = useLoopback();
const running: UpstreamPool[] = [];
afterEach(() => {
  for (const p of running.splice(0)) p.stop();
});

const USER = "owner1.farm-a";

function up(pool: FakePool | string, user = USER): Upstream {
  return { url: typeof pool === "string" ? pool : pool.url, user };
}

function makePool(upstreams: readonly Upstream[], extra: Partial<PoolOptions> = {}): UpstreamPool {
  const pool = new UpstreamPool({
    upstreams,
    agentVersion: "1.2.3",
    random: () => 0,
    ...extra,
  });
  running.push(pool);
  return pool;
}

/** Timers that only record: the test fires them. */
function manualTimers() {
  const pending = new Map<number, { fn: () => void; ms: number }>();
  let n = 0;
  const timers: Timers = {
    setTimeout: (fn, ms) => {
      pending.set(++n, { fn, ms });
      return n;
    },
    clearTimeout: (h) => {
      pending.delete(h as number);
    },
    setInterval: () => {
      throw new Error("the pool uses no intervals");
    },
    clearInterval: () => {},
  };
  return {
    timers,
    delays: () => [...pending.values()].map((p) => p.ms),
    /** Fires the one pending timer with this delay. */
    fire(ms: number) {
      const entry = [...pending.entries()].find(([, p]) => p.ms === ms);
      if (entry === undefined) throw new Error(`no timer of ${ms} ms; pending ${this.delays()}`);
      pending.delete(entry[0]);
      entry[1].fn();
    },
  };
}

function record(pool: UpstreamPool) {
  const events: string[] = [];
  const jobs: Job[] = [];
  const ends: SessionEnd[] = [];
  pool.on("connected", (i) => events.push(`connected ${i.url}`));
  pool.on("disconnected", (e) => {
    ends.push(e);
    events.push(`disconnected ${e.url} ${e.reason}`);
  });
  pool.on("failed", (e) => {
    ends.push(e);
    events.push(`failed ${e.url} ${e.reason}`);
  });
  pool.on("job", (j) => jobs.push(j));
  return { events, jobs, ends };
}

async function connected(pool: UpstreamPool): Promise<ConnectedInfo> {
  const [info] = (await once(pool, "connected")) as [ConnectedInfo];
  return info;
}

describe("handshake", () => {
  it("configures, subscribes with our agent, subscribes to extranonce and authorizes as the policy user", async () => {
    const fp = await fakePool();
    const pool = makePool([up(fp)], { session: { password: "secret" } });
    const rec = record(pool);
    const wait = connected(pool);
    pool.start();
    const info = await wait;
    expect(fp.methods()).toEqual([
      "mining.configure",
      "mining.subscribe",
      "mining.extranonce.subscribe",
      "mining.authorize",
    ]);
    expect(fp.received[0]?.params).toEqual([
      ["version-rolling"],
      { "version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2 },
    ]);
    expect(fp.received[1]?.params).toEqual(["agentd/1.2.3"]);
    expect(fp.received[3]?.params).toEqual([USER, "secret"]);
    expect(info).toMatchObject({
      url: fp.url,
      user: USER,
      index: 0,
      extranonce1: "f000000d",
      extranonce2Size: 4,
      versionMask: "1fffe000",
    });
    await expect.poll(() => rec.jobs.length).toBe(1);
    expect(rec.jobs[0]).toMatchObject({ jobId: "j1", difficulty: 8, extranonce1: "f000000d" });
    expect(pool.state).toMatchObject({
      status: "connected",
      url: fp.url,
      attempts: 1,
      failures: 0,
    });
  });

  it("never rolls bits outside the mask we asked for, whatever the pool grants", async () => {
    const fp = await fakePool({
      configure: () => ({
        result: { "version-rolling": true, "version-rolling.mask": "ffffffff" },
      }),
    });
    const pool = makePool([up(fp)], { session: { versionRollingMask: "00fff000" } });
    const wait = connected(pool);
    pool.start();
    expect((await wait).versionMask).toBe("00fff000");
  });

  it.each([
    ["an error reply", { result: null, error: [20, "unknown method", null] }],
    ["a reply without version-rolling", { result: { "version-rolling": false } }],
    ["no reply at all", "ignore" as const],
  ])("accepts a pool without BIP 310 (%s): no version rolling", async (_name, configure) => {
    const fp = await fakePool({ configure: () => configure });
    const pool = makePool([up(fp)], { session: { configureTimeoutMs: 50 } });
    const wait = connected(pool);
    pool.start();
    const info = await wait;
    expect(info.versionMask).toBeNull();
    expect(fp.methods()).toContain("mining.authorize");
  });

  it("fails the attempt when authorize is refused, and never reports it connected", async () => {
    const fp = await fakePool({ authorize: () => false });
    const t = manualTimers();
    const pool = makePool([up(fp)], { timers: t.timers });
    const rec = record(pool);
    pool.start();
    const [end] = (await once(pool, "failed")) as [SessionEnd];
    expect(end.reason).toBe("unauthorized");
    expect(rec.events).toEqual([`failed ${fp.url} unauthorized`]);
    expect(pool.state).toMatchObject({ status: "waiting", failures: 1, lastError: "unauthorized" });
  });
});

describe("pool messages", () => {
  it("keeps the previous difficulty for jobs issued before a change, forgets jobs after a clean one", async () => {
    const fp = await fakePool({
      onAuthorized: (c) => {
        c.notify("mining.set_difficulty", [8]);
        c.notify("mining.notify", notifyParams("j1", true));
        c.notify("mining.set_difficulty", [16]);
        c.notify("mining.notify", notifyParams("j2", false));
      },
    });
    const pool = makePool([up(fp)]);
    const rec = record(pool);
    const diffs: number[] = [];
    pool.on("difficulty", (d) => diffs.push(d));
    pool.start();
    await expect.poll(() => pool.difficultyForJob("j2")).toBe(16);
    expect(pool.difficultyForJob("j1")).toBe(8);
    expect(pool.difficultyForJob("nope")).toBeUndefined();
    expect(diffs.at(-1)).toBe(16);
    fp.clients[0]?.notify("mining.notify", notifyParams("j3", true));
    await expect.poll(() => pool.difficultyForJob("j3")).toBe(16);
    expect(pool.difficultyForJob("j1")).toBeUndefined();
    expect(pool.difficultyForJob("j2")).toBeUndefined();
    expect(rec.jobs.at(-1)?.jobId).toBe("j3");
  });

  it("applies set_extranonce and set_version_mask, and ignores a malformed notify", async () => {
    const fp = await fakePool();
    const pool = makePool([up(fp)]);
    const rec = record(pool);
    const seen: unknown[] = [];
    pool.on("extranonce", (en1, size) => seen.push(["en", en1, size]));
    pool.on("versionMask", (m) => seen.push(["mask", m]));
    const wait = connected(pool);
    pool.start();
    await wait;
    const c = fp.clients[0];
    c?.notify("mining.notify", ["bad", "zz", 1]);
    c?.notify("mining.set_extranonce", ["abcd0001", 6]);
    c?.notify("mining.set_version_mask", ["00ffe000"]);
    c?.notify("mining.notify", notifyParams("j9", false));
    await expect.poll(() => rec.jobs.at(-1)?.jobId).toBe("j9");
    expect(seen).toEqual([
      ["en", "abcd0001", 6],
      ["mask", "00ffe000"],
    ]);
    expect(rec.jobs.at(-1)).toMatchObject({ extranonce1: "abcd0001", extranonce2Size: 6 });
    expect(pool.job("bad")).toBeUndefined();
    expect(pool.state.status).toBe("connected");
  });

  it("answers mining.ping with pong and client.get_version with the agent string", async () => {
    const fp = await fakePool();
    const pool = makePool([up(fp)]);
    const wait = connected(pool);
    pool.start();
    await wait;
    fp.clients[0]?.send({ id: 77, method: "mining.ping", params: [] });
    fp.clients[0]?.send({ id: 78, method: "client.get_version", params: [] });
    fp.clients[0]?.send({ id: 79, method: "mining.nonsense", params: [] });
    await expect.poll(() => fp.replies.length).toBe(3);
    expect(fp.replies).toEqual([
      { conn: 0, id: 77, result: "pong", error: null },
      { conn: 0, id: 78, result: "agentd/1.2.3", error: null },
      { conn: 0, id: 79, result: null, error: [20, "method not supported", null] },
    ]);
  });
});

describe("submit", () => {
  it("parses all three reject conventions and both error shapes", async () => {
    const fp = await fakePool({
      submit: (params) => {
        switch (params[1]) {
          case "ok":
            return { result: true };
          case "array":
            return { result: null, error: [23, "Low difficulty share", null] };
          case "object":
            return { result: null, error: { code: 21, message: "Job not found" } };
          case "reason":
            return { raw: { result: false, error: null, "reject-reason": "Stale" } };
          case "bare":
            return { raw: { result: false } };
          default:
            return "ignore";
        }
      },
    });
    const pool = makePool([up(fp)], { session: { submitTimeoutMs: 50 } });
    const wait = connected(pool);
    pool.start();
    await wait;
    const submit = (job: string) => pool.submit("rig1", job, "00000001", "5f5e1000", "deadbeef");
    expect(await submit("ok")).toEqual({ accepted: true, answered: true });
    expect(await submit("array")).toEqual({
      accepted: false,
      answered: true,
      code: 23,
      reason: "Low difficulty share",
    });
    expect(await submit("object")).toEqual({
      accepted: false,
      answered: true,
      code: 21,
      reason: "Job not found",
    });
    expect(await submit("reason")).toEqual({ accepted: false, answered: true, reason: "Stale" });
    expect(await submit("bare")).toEqual({ accepted: false, answered: true, reason: "rejected" });
    expect(await submit("silent")).toEqual({ accepted: false, answered: false, reason: "timeout" });
  });

  it("submits as the policy user whatever worker name the caller gives, with version bits", async () => {
    const fp = await fakePool();
    const pool = makePool([up(fp)]);
    const wait = connected(pool);
    pool.start();
    await wait;
    await pool.submit("evil.miner", "j1", "00000001", "5f5e1000", "deadbeef", "00002000");
    const submits = fp.received.filter((r) => r.method === "mining.submit");
    expect(submits.map((s) => s.params)).toEqual([
      [USER, "j1", "00000001", "5f5e1000", "deadbeef", "00002000"],
    ]);
    const auth = fp.received.filter((r) => r.method === "mining.authorize");
    expect(auth.map((a) => a.params[0])).toEqual([USER]);
  });

  it("answers not_connected without a session", async () => {
    const pool = makePool([]);
    pool.start();
    expect(await pool.submit("w", "j", "00", "00", "00")).toEqual({
      accepted: false,
      answered: false,
      reason: "not_connected",
    });
    expect(pool.state.status).toBe("idle");
  });

  it("treats an unexpected result as a reject (never as credit)", () => {
    const reply = (result: unknown, error: unknown = null, extra = {}) =>
      parseSubmitReply({ result, error, message: { result, error, ...extra } });
    expect(reply("true").accepted).toBe(false);
    expect(reply(1).accepted).toBe(false);
    expect(reply(true, [22, "Duplicate share", null])).toMatchObject({ accepted: false, code: 22 });
    expect(reply(null, "went wrong")).toMatchObject({ accepted: false, reason: "went wrong" });
    expect(reply(false, null, { "reject-reason": "x\u0000y" }).reason).toBe("x?y");
  });
});

describe("client.reconnect", () => {
  it("refuses a target outside the policy, reports it, and stays connected where it was", async () => {
    const other = await fakePool();
    const fp = await fakePool();
    const pool = makePool([up(fp)]);
    const rec = record(pool);
    const refused: unknown[] = [];
    pool.on("refused", (r) => refused.push(r));
    const wait = connected(pool);
    pool.start();
    await wait;
    fp.clients[0]?.notify("client.reconnect", ["evil.example", 3333, 0]);
    fp.clients[0]?.send({
      id: 5,
      method: "client.reconnect",
      params: ["127.0.0.1", other.port, 0],
    });
    await expect.poll(() => refused.length).toBe(2);
    expect(refused).toEqual([
      { reason: "not_allowed", target: "stratum+tcp://evil.example:3333", url: fp.url },
      { reason: "not_allowed", target: other.url, url: fp.url },
    ]);
    await expect.poll(() => fp.replies.length).toBe(1);
    expect(fp.replies[0]).toMatchObject({ id: 5, result: false });
    expect(other.clients).toHaveLength(0);
    expect(fp.clients).toHaveLength(1);
    expect(rec.events).toEqual([`connected ${fp.url}`]);
    expect(pool.state).toMatchObject({ status: "connected", url: fp.url, attempts: 1 });
  });

  it("refuses a target that is no endpoint at all", async () => {
    const fp = await fakePool();
    const pool = makePool([up(fp)]);
    const refused: { reason: string }[] = [];
    pool.on("refused", (r) => refused.push(r));
    const wait = connected(pool);
    pool.start();
    await wait;
    fp.clients[0]?.notify("client.reconnect", ["evil.example/x", 3333]);
    await expect.poll(() => refused.length).toBe(1);
    expect(refused[0]?.reason).toBe("invalid_target");
  });

  it("follows an empty client.reconnect to the same host", async () => {
    const fp = await fakePool();
    const pool = makePool([up(fp)]);
    const rec = record(pool);
    const first = connected(pool);
    pool.start();
    await first;
    const second = connected(pool);
    fp.clients[0]?.notify("client.reconnect", []);
    expect((await second).url).toBe(fp.url);
    expect(fp.methods(1)).toContain("mining.authorize");
    expect(rec.events).toEqual([
      `connected ${fp.url}`,
      `disconnected ${fp.url} reconnect`,
      `connected ${fp.url}`,
    ]);
    expect(pool.state).toMatchObject({ via: "reconnect", index: 0, attempts: 2 });
  });

  it("follows a reconnect to another allowed upstream and authorizes as that entry's user", async () => {
    const b = await fakePool();
    const a = await fakePool({
      onAuthorized: (c) => c.notify("client.reconnect", ["127.0.0.1", String(b.port), 0]),
    });
    const pool = makePool([up(a), up(b, "owner1.other")]);
    pool.start();
    await expect.poll(() => b.methods()).toContain("mining.authorize");
    expect(b.received.find((r) => r.method === "mining.authorize")?.params[0]).toBe("owner1.other");
    await expect.poll(() => pool.state.url).toBe(b.url);
    expect(pool.state).toMatchObject({ index: 1, via: "reconnect" });
  });

  it("builds targets relative to the current endpoint", () => {
    const cur = parseV1Url("stratum+tcp://Pool.Example:3333");
    if (cur === null) throw new Error("parse");
    expect(cur.host).toBe("pool.example");
    expect(reconnectTarget(cur, [])).toEqual(cur);
    expect(reconnectTarget(cur, ["", 4444])).toEqual({ ...cur, port: 4444 });
    expect(reconnectTarget(cur, ["b.example"])).toEqual({ ...cur, host: "b.example" });
    expect(reconnectTarget(cur, ["::1", "5555"])).toEqual({ ...cur, host: "::1", port: 5555 });
    expect(reconnectTarget(cur, ["b.example", 70000])).toBeNull();
    expect(reconnectTarget(cur, ["a b", 1])).toBeNull();
    expect(reconnectTarget(cur, [{}, 1])).toBeNull();
  });
});

describe("failover", () => {
  it("goes primary → secondary when the primary refuses connections", async () => {
    const dead = await net.deadPort();
    const b = await fakePool();
    const t = manualTimers();
    const pool = makePool([up(`stratum+tcp://127.0.0.1:${dead}`), up(b)], { timers: t.timers });
    const rec = record(pool);
    pool.start();
    await expect.poll(() => rec.events.length).toBe(1);
    expect(rec.events[0]).toBe(`failed stratum+tcp://127.0.0.1:${dead} connect_failed`);
    expect(pool.state).toMatchObject({ status: "waiting", failures: 1 });
    expect(pool.state.lastError).toMatch(/ECONNREFUSED/);
    const wait = connected(pool);
    t.fire(0);
    expect(await wait).toMatchObject({ url: b.url, index: 1 });
    expect(pool.state).toMatchObject({ status: "connected", failures: 1, attempts: 2 });
  });

  it("goes primary → secondary when the primary accepts then closes", async () => {
    const a = await fakePool({ closeOnAccept: true });
    const b = await fakePool();
    const pool = makePool([up(a), up(b)]);
    const rec = record(pool);
    const wait = connected(pool);
    pool.start();
    const info = await wait;
    expect(info).toMatchObject({ url: b.url, index: 1 });
    expect(rec.events).toEqual([`failed ${a.url} peer_closed`, `connected ${b.url}`]);
    expect(a.clients).toHaveLength(1);
    expect(pool.state).toMatchObject({ attempts: 2, via: "order" });
  });

  it("moves on to the secondary when a working primary goes away", async () => {
    const a = await fakePool();
    const b = await fakePool();
    const pool = makePool([up(a), up(b)]);
    const rec = record(pool);
    const first = connected(pool);
    pool.start();
    await first;
    const second = connected(pool);
    a.clients[0]?.socket.destroy();
    expect((await second).url).toBe(b.url);
    expect(rec.events).toEqual([
      `connected ${a.url}`,
      `disconnected ${a.url} peer_closed`,
      `connected ${b.url}`,
    ]);
  });

  it("backs off with full jitter: floor(random × min(cap, base × 2^failures)), in list order", async () => {
    const d1 = await net.deadPort();
    const d2 = await net.deadPort();
    const t = manualTimers();
    const urls = [`stratum+tcp://127.0.0.1:${d1}`, `stratum+tcp://127.0.0.1:${d2}`];
    const pool = makePool([up(urls[0] as string), up(urls[1] as string)], {
      timers: t.timers,
      random: () => 0.5,
      backoff: { baseMs: 100, capMs: 1000 },
    });
    const rec = record(pool);
    pool.start();
    const delays: number[] = [];
    for (let i = 1; i <= 6; i++) {
      await expect.poll(() => rec.ends.length).toBe(i);
      const [delay] = t.delays();
      if (delay === undefined) throw new Error("no backoff timer");
      delays.push(delay);
      t.fire(delay);
    }
    expect(delays).toEqual([100, 200, 400, 500, 500, 500]);
    expect(rec.ends.map((e) => e.url)).toEqual([
      urls[0],
      urls[1],
      urls[0],
      urls[1],
      urls[0],
      urls[1],
    ]);
    expect(pool.state.attempts).toBe(7);
  });

  it("stop closes the session and dials nothing; start dials the primary again", async () => {
    const a = await fakePool();
    const pool = makePool([up(a)]);
    const rec = record(pool);
    const first = connected(pool);
    pool.start();
    await first;
    pool.stop();
    expect(pool.state.status).toBe("stopped");
    expect(rec.events.at(-1)).toBe(`disconnected ${a.url} stopped`);
    expect(await pool.submit("w", "j1", "00000001", "5f5e1000", "00000000")).toMatchObject({
      reason: "not_connected",
    });
    const second = connected(pool);
    pool.start();
    expect((await second).url).toBe(a.url);
    expect(a.clients).toHaveLength(2);
  });

  it("computes the backoff formula exactly", () => {
    const o = { baseMs: 1000, capMs: 60_000 };
    expect(backoffDelay(0, o, () => 0.999)).toBe(999);
    expect(backoffDelay(3, o, () => 0.5)).toBe(4000);
    expect(backoffDelay(10, o, () => 0.5)).toBe(30_000);
    expect(backoffDelay(1000, o, () => 0.5)).toBe(30_000);
    expect(backoffDelay(5, o, () => 0)).toBe(0);
  });

  it("returns to the primary when it is back (make before break)", async () => {
    let primaryUp = false;
    const a = await fakePool({ authorize: () => primaryUp });
    const b = await fakePool();
    const t = manualTimers();
    const pool = makePool([up(a), up(b)], { timers: t.timers, primaryRetryMs: 99_999 });
    const rec = record(pool);
    pool.start();
    await expect.poll(() => rec.events.length).toBe(1);
    t.fire(0);
    await expect.poll(() => pool.state.status).toBe("connected");
    expect(pool.state).toMatchObject({ url: b.url, index: 1 });
    // The primary still refuses: the probe fails quietly and is rescheduled.
    t.fire(99_999);
    await expect.poll(() => a.clients.length).toBe(2);
    await expect.poll(() => t.delays()).toEqual([99_999]);
    expect(pool.state.url).toBe(b.url);
    primaryUp = true;
    t.fire(99_999);
    await expect.poll(() => pool.state.url).toBe(a.url);
    expect(rec.events).toEqual([
      `failed ${a.url} unauthorized`,
      `connected ${b.url}`,
      `disconnected ${b.url} primary_restored`,
      `connected ${a.url}`,
    ]);
    expect(pool.state).toMatchObject({ status: "connected", index: 0 });
    await expect.poll(() => b.clients[0]?.socket.destroyed).toBe(true);
  });
});

describe("policy changes", () => {
  it("disconnects at once from an upstream that is no longer allowed and moves to the new primary", async () => {
    const a = await fakePool();
    const b = await fakePool();
    const pool = makePool([up(a)]);
    const rec = record(pool);
    const first = connected(pool);
    pool.start();
    await first;
    const second = connected(pool);
    pool.setUpstreams([up(b)]);
    // Synchronously: no work may flow to the old upstream after this call returns.
    expect(rec.events.at(-1)).toBe(`disconnected ${a.url} not_allowed`);
    expect(pool.current).toBeNull();
    expect((await second).url).toBe(b.url);
    expect(await pool.submit("w", "j1", "00000001", "5f5e1000", "00000000")).toMatchObject({
      answered: true,
    });
    expect(a.methods().filter((m) => m === "mining.submit")).toHaveLength(0);
  });

  it("treats a changed user for the same URL as a new consent: reconnects and authorizes as the new user", async () => {
    const a = await fakePool();
    const pool = makePool([up(a)]);
    const first = connected(pool);
    pool.start();
    await first;
    const second = connected(pool);
    pool.setUpstreams([up(a, "owner1.new")]);
    expect((await second).user).toBe("owner1.new");
    expect(
      a.received.filter((r) => r.method === "mining.authorize").map((r) => r.params[0]),
    ).toEqual([USER, "owner1.new"]);
  });

  it("keeps the session when it is still allowed, and connects to nothing on an empty list", async () => {
    const a = await fakePool();
    const pool = makePool([up(a)]);
    const rec = record(pool);
    const first = connected(pool);
    pool.start();
    await first;
    pool.setUpstreams([up(a), up("stratum+tcp://127.0.0.1:1")]);
    expect(pool.state).toMatchObject({ status: "connected", index: 0 });
    pool.setUpstreams([]);
    expect(pool.state.status).toBe("idle");
    expect(rec.events).toEqual([`connected ${a.url}`, `disconnected ${a.url} not_allowed`]);
    expect(a.clients).toHaveLength(1);
  });

  it("ignores sv2+tcp entries (this client speaks V1 only)", () => {
    const pool = makePool([up("sv2+tcp://127.0.0.1:3336"), up("stratum+tcp://127.0.0.1:3333")]);
    expect(pool.upstreams.map((u) => u.url)).toEqual(["stratum+tcp://127.0.0.1:3333"]);
  });
});

describe("TLS", () => {
  let dir = "";
  let server: { key: string; cert: string };
  let wrongCa = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "agentd-tls-"));
    const make = (name: string) => {
      const key = join(dir, `${name}.key`);
      const cert = join(dir, `${name}.crt`);
      execFileSync(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "ed25519",
          "-keyout",
          key,
          "-out",
          cert,
          "-days",
          "1",
          "-nodes",
          "-subj",
          "/CN=localhost",
          "-addext",
          "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        { stdio: "ignore" },
      );
      return { key: readFileSync(key, "utf8"), cert: readFileSync(cert, "utf8") };
    };
    server = make("pool");
    wrongCa = make("other").cert;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("connects to a stratum+ssl upstream whose certificate the given CA signed", async () => {
    const fp = await fakePool({ tls: server });
    expect(fp.url.startsWith("stratum+ssl://")).toBe(true);
    const pool = makePool([up(fp)], { session: { tls: { ca: server.cert } } });
    const wait = connected(pool);
    pool.start();
    expect((await wait).url).toBe(fp.url);
    expect(fp.methods()).toContain("mining.authorize");
  });

  it("fails closed with the wrong CA: no Stratum byte is exchanged", async () => {
    const fp = await fakePool({ tls: server });
    const t = manualTimers();
    const pool = makePool([up(fp)], { session: { tls: { ca: wrongCa } }, timers: t.timers });
    const rec = record(pool);
    pool.start();
    const [end] = (await once(pool, "failed")) as [SessionEnd];
    expect(end.reason).toBe("connect_failed");
    expect(end.error).toMatch(/certificate/i);
    expect(fp.received).toHaveLength(0);
    expect(rec.events).toEqual([`failed ${fp.url} connect_failed`]);
  });

  it("fails closed with no CA given (system roots do not know a self-signed pool)", async () => {
    const fp = await fakePool({ tls: server });
    const pool = makePool([up(fp)], { timers: manualTimers().timers });
    pool.start();
    const [end] = (await once(pool, "failed")) as [SessionEnd];
    expect(end.reason).toBe("connect_failed");
    expect(fp.received).toHaveLength(0);
  });
});
