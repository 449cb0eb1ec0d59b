import { afterEach, describe, expect, it, vi } from "vitest";
import { WebSocket } from "ws";
import { commandsGroup } from "../../../control-plane/api/commands.ts";
import type { ApiContext } from "../../../control-plane/api/context.ts";
import { publishForWorker } from "../../../control-plane/api/publish.ts";
import { type StreamOptions, streamGroup } from "../../../control-plane/api/stream.ts";
import { createProof } from "../../../control-plane/protocol/proof.ts";
import type { StreamServerMessage } from "../../../control-plane/protocol/schemas/api-worker.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import { unixSeconds } from "../../../lib/clock.ts";
import { documentIdentity } from "../../../lib/crypto/jws.ts";
import { fakeTime } from "../../../lib/timers.ts";
import { signConsent, signRevocation } from "../../../policy-guard/sign.ts";
import { type TestCp, type TestMachine, type TestOwner, useTestCp } from "./harness.ts";

const groups =
  (options: StreamOptions = {}) =>
  (ctx: ApiContext) => [commandsGroup(ctx), streamGroup(ctx, options)];

async function consent(t: TestCp, o: TestOwner, m: TestMachine) {
  const now = unixSeconds(t.clock);
  const jws = signConsent({
    ownerKey: o.privateKey,
    worker: m.workerId,
    rules: { commands: ["mining.pause", "mining.resume"] },
    seq: 1,
    policyId: "p1",
    iat: now,
    exp: now + 30 * 86_400,
  });
  await t.store.acceptConsent({
    identity: documentIdentity(jws),
    worker_id: m.workerId,
    owner_id: o.ownerId,
    seq: 1,
    jws,
    exp: now + 30 * 86_400,
    accepted_at: now,
  });
  return jws;
}

/** An agent's end of the stream: every message parsed and schema-checked, in order. */
interface Agent {
  readonly ws: WebSocket;
  readonly messages: StreamServerMessage[];
  /** Resolves once `n` messages arrived in total. */
  until(n: number): Promise<StreamServerMessage[]>;
  /** Resolves with the close code. */
  readonly closed: Promise<number>;
  hello(after: number): void;
}

const sockets: WebSocket[] = [];
afterEach(() => {
  for (const ws of sockets.splice(0)) ws.terminate();
});

/** Opens the stream of `m` on `t`, authenticated like any machine call (token + proof). */
function openStream(t: TestCp, m: TestMachine, as: TestMachine = m): Promise<Agent> {
  const path = `/v1/workers/${m.workerId}/stream`;
  const ws = new WebSocket(`${t.url.replace(/^https:/, "wss:")}${path}`, {
    ca: t.caPem,
    headers: {
      authorization: `AgentD ${as.accessToken}`,
      "agentd-proof": createProof({
        privateKey: as.privateKey,
        method: "GET",
        url: `${t.url}${path}`,
        accessToken: as.accessToken,
        clock: t.clock,
      }),
    },
  });
  sockets.push(ws);
  const messages: StreamServerMessage[] = [];
  const waiters: (() => void)[] = [];
  ws.on("message", (data) => {
    messages.push(validate("stream-server-message", JSON.parse(String(data))));
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)));
  const agent: Agent = {
    ws,
    messages,
    closed,
    until: (n) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (messages.length >= n) return resolve(messages.slice(0, n));
          if (ws.readyState >= WebSocket.CLOSING) return reject(new Error("stream closed"));
          waiters.push(check);
        };
        ws.once("close", () => {
          if (messages.length < n) reject(new Error(`closed after ${messages.length} messages`));
        });
        check();
      }),
    hello: (after) => ws.send(JSON.stringify({ type: "hello", v: 1, after })),
  };
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(agent));
    ws.once("unexpected-response", (_req, res) => reject(new Error(`status ${res.statusCode}`)));
    ws.once("error", reject);
  });
}

function ids(messages: readonly StreamServerMessage[]): number[] {
  return messages.flatMap((m) => (m.type === "event" ? [m.id] : []));
}

async function sendCommand(t: TestCp, operator: string, m: TestMachine) {
  const r = await t.call("POST", "/v1/commands", {
    apiKey: operator,
    body: { worker: m.workerId, action: "mining.pause", args: {} },
  });
  expect(r.status).toBe(200);
  return validate("command-create-response", r.json);
}

describe.each(["sqlite", "postgres"] as const)("push stream (%s)", (backend) => {
  const start = useTestCp();

  async function setup(options: StreamOptions = {}) {
    const t = await start({ groups: groups(options), backend });
    const o = await t.owner();
    const m = await t.machine(o);
    const consentJws = await consent(t, o, m);
    const operator = await t.apiKey("operator");
    return { t, o, m, operator, consentJws };
  }

  it("replays after the hello, then pushes live events with their documents, and resumes from a cursor", async () => {
    const { t, o, m, operator, consentJws } = await setup();
    const c1 = await sendCommand(t, operator, m);
    const c2 = await sendCommand(t, operator, m);
    const agent = await openStream(t, m);
    agent.hello(0);
    const replay = await agent.until(3);
    expect(replay).toEqual([
      { type: "event", id: 1, kind: "command", jws: c1.command },
      { type: "event", id: 2, kind: "command", jws: c2.command },
      { type: "ready", last_event_id: 2 },
    ]);
    // live: a command, a publication (with the consent it countersigns), a revocation
    const c3 = await sendCommand(t, operator, m);
    expect((await agent.until(4))[3]).toEqual({
      type: "event",
      id: 3,
      kind: "command",
      jws: c3.command,
    });
    const notified: string[] = [];
    t.ctx.policyNotifier.subscribe(m.workerId, () => notified.push(m.workerId));
    const pub = await publishForWorker(t.ctx, m.workerId, {
      stop: false,
      actor: "system",
      reason: "test",
    });
    expect((await agent.until(5))[4]).toEqual({
      type: "event",
      id: 4,
      kind: "publication",
      jws: pub.jws,
      consent: consentJws,
    });
    const now = unixSeconds(t.clock);
    const revocation = signRevocation({
      ownerKey: o.privateKey,
      worker: m.workerId,
      iat: now,
      throughSeq: 1,
    });
    await t.store.storeRevocation({
      worker_id: m.workerId,
      kind: "revocation",
      through_seq: 1,
      jws: revocation,
      at: now,
    });
    expect((await agent.until(6))[5]).toEqual({
      type: "event",
      id: 5,
      kind: "revocation",
      jws: revocation,
    });
    // the stream's fan-out also wakes policy long polls (once per event at least)
    expect(notified.length).toBeGreaterThanOrEqual(2);
    agent.ws.close();
    await agent.closed;

    // resume: only what follows the cursor, then ready
    const again = await openStream(t, m);
    again.hello(3);
    expect(await again.until(3)).toEqual([
      { type: "event", id: 4, kind: "publication", jws: pub.jws, consent: consentJws },
      { type: "event", id: 5, kind: "revocation", jws: revocation },
      { type: "ready", last_event_id: 5 },
    ]);
    // a cursor beyond the worker's last event (a restored database) is clamped: ready says so
    const ahead = await openStream(t, m);
    ahead.hello(99);
    expect(await ahead.until(1)).toEqual([{ type: "ready", last_event_id: 5 }]);
  });

  it("sends events committed during the replay once each, in id order", async () => {
    const { t, m, operator } = await setup();
    for (let i = 0; i < 5; i++) await sendCommand(t, operator, m);
    const agent = await openStream(t, m);
    const concurrent = Promise.all(Array.from({ length: 20 }, () => sendCommand(t, operator, m)));
    agent.hello(2);
    await concurrent;
    // events 3..25 and one ready, in any interleaving of ready, but ids strictly in order
    const all = await agent.until(24);
    expect(ids(all)).toEqual(Array.from({ length: 23 }, (_, i) => i + 3));
    expect(all.filter((x) => x.type === "ready").length).toBe(1);
    // nothing else arrives: a later event is the next id
    await sendCommand(t, operator, m);
    expect(ids(await agent.until(25)).at(-1)).toBe(26);
    expect(agent.messages.length).toBe(25);
  });

  it("pushes to every open stream of the worker and to no other worker", async () => {
    const { t, o, m, operator } = await setup();
    const other = await t.machine(o);
    const a1 = await openStream(t, m);
    const a2 = await openStream(t, m);
    const b = await openStream(t, other);
    for (const a of [a1, a2, b]) a.hello(0);
    for (const a of [a1, a2, b]) await a.until(1);
    const c = await sendCommand(t, operator, m);
    for (const a of [a1, a2]) {
      expect((await a.until(2))[1]).toEqual({
        type: "event",
        id: 1,
        kind: "command",
        jws: c.command,
      });
    }
    await sendCommand(t, operator, m);
    await a1.until(3);
    expect(b.messages).toEqual([{ type: "ready", last_event_id: 0 }]);
  });

  it("refuses other machines, quarantined workers, and streams without a valid hello", async () => {
    // The hello deadline on fake time: it passes only when the test says so, not when a
    // loaded machine is slow to send the hello of the streams that do send one.
    const time = fakeTime(0);
    const { t, o, m } = await setup({ helloTimeoutMs: 50, timers: time.timers });
    const other = await t.machine(o);
    await expect(openStream(t, m, other)).rejects.toThrow("status 403");
    const q = await t.machine(o);
    await t.store.setQuarantine(q.workerId, { reason: "test", at: unixSeconds(t.clock) });
    await expect(openStream(t, q)).rejects.toThrow("status 403");
    const silent = await openStream(t, m);
    await vi.waitFor(() => expect(time.delays()).toEqual([50]));
    await time.advance(50);
    expect(await silent.closed).toBe(1008);
    const bad = await openStream(t, m);
    bad.ws.send(JSON.stringify({ type: "hello", v: 2, after: 0 }));
    expect(await bad.closed).toBe(1008);
    const twice = await openStream(t, m);
    twice.hello(0);
    await twice.until(1);
    twice.hello(0);
    expect(await twice.closed).toBe(1008);
  });
});

describe("push across instances (two control planes on one PostgreSQL)", () => {
  const start = useTestCp();

  it("a command sent through one instance reaches an agent streaming from the other", async () => {
    const a = await start({ groups: groups(), backend: "postgres" });
    const b = await start({ groups: groups(), databaseUrl: a.databaseUrl, keysDir: a.keysDir });
    expect(b.url).not.toBe(a.url);
    const o = await a.owner();
    const m = await a.machine(o);
    await consent(a, o, m);
    const operator = await a.apiKey("operator");
    const agent = await openStream(b, m);
    agent.hello(0);
    expect(await agent.until(1)).toEqual([{ type: "ready", last_event_id: 0 }]);
    const notified: string[] = [];
    b.ctx.policyNotifier.subscribe(m.workerId, () => notified.push("b"));

    const c = await sendCommand(a, operator, m);
    expect((await agent.until(2))[1]).toEqual({
      type: "event",
      id: 1,
      kind: "command",
      jws: c.command,
    });
    // a publication through A wakes B's long polls and reaches B's stream
    const pub = await publishForWorker(a.ctx, m.workerId, {
      stop: true,
      actor: "system",
      reason: "test",
    });
    const third = (await agent.until(3))[2];
    expect(third).toMatchObject({ type: "event", id: 2, kind: "publication", jws: pub.jws });
    expect(notified).toContain("b");
  });
});
