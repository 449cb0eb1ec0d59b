import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { COUNTER_FILE, openHeartbeatCounter } from "../../agent/heartbeat-counter.ts";
import { createHeartbeatSender } from "../../agent/heartbeat-sender.ts";
import { signHeartbeat } from "../../control-plane/protocol/documents/heartbeat.ts";
import type { HeartbeatResponse } from "../../control-plane/protocol/schemas/api-worker.ts";
import { fail } from "../../lib/errors.ts";
import { manualTimers } from "../control-plane/http/helpers.ts";
import {
  type EnrolledMachine,
  enrolledMachine,
  heartbeatBody,
  type ServedCp,
  useServedCp,
} from "../control-plane/protocol/client-fixture.ts";

/**
 * The heartbeat sender against a real control plane over TLS (the protocol client, the store):
 * counters from the durable counter, signed at send time, in order; a backlog kept while the
 * control plane cannot be reached and sent oldest first after; a replay answered by moving
 * the counter on. "Unreachable" is the real client with its calls failing as a refused
 * connection would, for as long as the test says.
 */

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(cp: ServedCp, m: EnrolledMachine, o: { maxQueue?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "agentd-sender-"));
  dirs.push(dir);
  const counter = openHeartbeatCounter(join(dir, COUNTER_FILE), cp.clock);
  const { timers, pending } = manualTimers();
  let offline = false;
  const replies: HeartbeatResponse[] = [];
  const replays: number[] = [];
  let uptime = 0;
  const sender = createHeartbeatSender({
    sign: (body) => signHeartbeat({ privateKey: m.machineKey, body, clock: cp.clock }),
    send: (jws) =>
      offline
        ? Promise.reject(fail("AGENTD_E_HTTP", "connect ECONNREFUSED", {}))
        : m.client.sendHeartbeat(jws),
    counter,
    snapshot: () => {
      uptime += 30;
      const { counter: _c, ...rest } = heartbeatBody(1);
      return { ...rest, telemetry: { ...rest.telemetry, uptime_s: uptime } };
    },
    timers,
    random: () => 0.5,
    ...(o.maxQueue === undefined ? {} : { maxQueue: o.maxQueue }),
    onReply: (r) => replies.push(r),
    onReplay: (c) => replays.push(c),
  });
  const stored = async () =>
    (await cp.serving.store.listHeartbeats(m.client.workerId)).map((h) => h.counter).reverse();
  return {
    sender,
    counter,
    pending,
    replies,
    replays,
    stored,
    setOffline: (v: boolean) => {
      offline = v;
    },
  };
}

describe("heartbeat sender", () => {
  const serve = useServedCp();

  it("sends each beat with the next counter, signed as it is sent; the reply is handed on", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const s = setup(cp, m);
    for (let i = 0; i < 3; i++) {
      s.sender.beat();
      cp.clock.advance(30_000);
      await s.sender.flush();
    }
    const stored = await s.stored();
    expect(stored).toHaveLength(3);
    expect(stored).toEqual([...stored].sort((a, b) => a - b));
    expect(stored[2]).toBe(s.counter.last());
    expect(s.replies.map((r) => r.counter)).toEqual(stored);
    expect(s.sender.stats()).toMatchObject({ queued: 0, sent: 3, failing: 0 });
  });

  it("keeps a bounded backlog while offline, retries with backoff, sends it oldest first", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const s = setup(cp, m, { maxQueue: 4 });
    s.sender.start(); // beats once and tries at once
    await s.sender.flush();
    expect(await s.stored()).toHaveLength(1);
    s.setOffline(true);
    // six more beats, two minutes apart: far older than the 60 s the control plane allows,
    // which is why they are signed when sent, not when made
    for (let i = 0; i < 6; i++) {
      cp.clock.advance(120_000);
      s.sender.beat();
      await s.sender.flush();
    }
    const stats = s.sender.stats();
    expect(stats).toMatchObject({ queued: 4, dropped: 2, sent: 1 });
    expect(stats.failing).toBeGreaterThan(0);
    // a retry is scheduled with backoff (1 s doubling, jitter 0.5 → ×0.75), not a spin
    const retries = [...s.pending.values()].map((p) => p.ms).filter((ms) => ms !== 30_000);
    expect(retries).toHaveLength(1);
    expect(retries[0]).toBeGreaterThanOrEqual(750);
    s.setOffline(false);
    await s.sender.flush();
    const stored = await s.stored();
    expect(stored).toHaveLength(5);
    expect(stored).toEqual([...stored].sort((a, b) => a - b));
    expect(s.sender.stats()).toMatchObject({ queued: 0, sent: 5, failing: 0 });
    await s.sender.stop();
    expect(s.pending.size).toBe(0);
  });

  it("moves the counter past a replay and sends the same snapshot again", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const s = setup(cp, m);
    // The control plane already holds a heartbeat with a counter far above ours (a restore
    // from an old backup while the clock was behind, say).
    const ahead = (s.counter.epoch() + 5) * 2 ** 20 + 1;
    await m.client.sendHeartbeat(
      signHeartbeat({
        privateKey: m.machineKey,
        body: { ...heartbeatBody(1), counter: ahead },
        clock: cp.clock,
      }),
    );
    s.sender.beat();
    s.sender.beat();
    await s.sender.flush();
    // each replay moves the counter one epoch on; a few are allowed per flush, then backoff
    expect(s.replays.length).toBeGreaterThan(0);
    for (let i = 0; i < 5 && s.sender.stats().queued > 0; i++) await s.sender.flush();
    const stored = await s.stored();
    expect(stored[0]).toBe(ahead);
    expect(stored.slice(1)).toHaveLength(2);
    expect(stored.slice(1).every((c) => c > ahead)).toBe(true);
    expect(s.sender.stats().queued).toBe(0);
  });
});

describe("heartbeat sender answers (the send function scripted)", () => {
  it("attests again after a 401 and drops a heartbeat the control plane refuses as bad", async () => {
    const dir = mkdtempSync(join(tmpdir(), "agentd-sender-"));
    dirs.push(dir);
    const clock = { now: () => 1_790_000_000_000 };
    const counter = openHeartbeatCounter(join(dir, COUNTER_FILE), clock);
    const { timers } = manualTimers();
    const script: (Error | null)[] = [
      fail("AGENTD_E_CP_UNAUTHENTICATED", "control plane: unknown or expired access token", {
        status: 401,
      }),
      null,
      fail("AGENTD_E_SCHEMA", "control plane: heartbeat-request: bad", { status: 400 }),
      null,
    ];
    const sent: number[] = [];
    let reauths = 0;
    const refused: number[] = [];
    const sender = createHeartbeatSender({
      sign: (body) => JSON.stringify(body),
      send: async (jws) => {
        const next = script.shift();
        if (next instanceof Error) throw next;
        sent.push((JSON.parse(jws) as { counter: number }).counter);
        return {} as HeartbeatResponse;
      },
      counter,
      snapshot: () => {
        const { counter: _c, ...rest } = heartbeatBody(1);
        return rest;
      },
      timers,
      reauthenticate: async () => {
        reauths++;
      },
      onRefused: (c) => refused.push(c),
    });
    sender.beat();
    await sender.flush(); // 401: re-attests, backs off
    expect([reauths, sent.length, sender.stats().queued]).toEqual([1, 0, 1]);
    await sender.flush(); // sent
    sender.beat();
    sender.beat();
    await sender.flush(); // the first refused (400) and dropped, the second sent
    expect(refused).toHaveLength(1);
    expect(sent).toHaveLength(2);
    expect(sent[1]).toBeGreaterThan(refused[0] as number);
    expect(sender.stats()).toMatchObject({ queued: 0, sent: 2, refused: 1, failures: 1 });
  });
});

describe("heartbeat sender, the backlog while a heartbeat is in flight", () => {
  it("drops the oldest waiting beat, never the one being sent: a failed send is retried as it was", async () => {
    // A pure queue test: the transport only records (the tests above use the real one).
    const dir = mkdtempSync(join(tmpdir(), "agentd-sender-"));
    dirs.push(dir);
    const clock = { now: () => 1_800_000_000_000 };
    const counter = openHeartbeatCounter(join(dir, COUNTER_FILE), clock);
    const sent: number[] = [];
    let fail1: () => void = () => {};
    let holding = true;
    const sender = createHeartbeatSender({
      sign: (body) => String(body.counter),
      send: (jws) => {
        sent.push(Number(jws));
        if (!holding) return Promise.resolve({ accepted: true } as unknown as HeartbeatResponse);
        return new Promise((_r, reject) => {
          fail1 = () => reject(fail("AGENTD_E_HTTP", "connect ECONNRESET", {}));
        });
      },
      counter,
      snapshot: () => {
        const { counter: _c, ...rest } = heartbeatBody(1);
        return rest;
      },
      timers: manualTimers().timers,
      maxQueue: 2,
    });
    sender.beat();
    const flushing = sender.flush(); // the first is now in flight, held
    const inFlight = sent[0] as number;
    for (let i = 0; i < 4; i++) sender.beat();
    expect(sender.stats()).toMatchObject({ queued: 2, dropped: 3 });
    // the send in flight fails: it is still the head, retried with its own counter
    holding = false;
    fail1();
    await flushing;
    await sender.flush();
    expect(sent).toHaveLength(3);
    expect(sent[0]).toBe(inFlight);
    expect(sent[1]).toBe(inFlight);
    expect(sent[2] as number).toBeGreaterThan(inFlight);
    expect(sender.stats()).toMatchObject({ queued: 0, sent: 2, dropped: 3 });
    await sender.stop();
  });
});
