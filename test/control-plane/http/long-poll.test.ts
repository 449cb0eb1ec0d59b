import { describe, expect, it } from "vitest";
import { longPoll, preferWait } from "../../../control-plane/http/long-poll.ts";
import { KeyedNotifier } from "../../../control-plane/http/notifier.ts";
import { manualTimers } from "./helpers.ts";

const tick = () => new Promise<void>((r) => setImmediate(r));

describe("Prefer: wait", () => {
  it("reads wait=N, caps it, and ignores what it does not understand", () => {
    expect(preferWait(undefined)).toBe(0);
    expect(preferWait("wait=10")).toBe(10);
    expect(preferWait("respond-async, wait=5")).toBe(5);
    expect(preferWait('WAIT = "7"')).toBe(7);
    expect(preferWait("wait=3600")).toBe(60);
    expect(preferWait("wait=30", 20)).toBe(20);
    expect(preferWait("wait=-1")).toBe(0);
    expect(preferWait("wait=abc")).toBe(0);
    expect(preferWait("wait=1e9")).toBe(0);
    expect(preferWait(["handling=strict", "wait=4"])).toBe(4);
  });
});

describe("longPoll", () => {
  it("answers at once when there is something, without waiting or subscribing", async () => {
    const notifier = new KeyedNotifier();
    const t = manualTimers();
    const v = await longPoll({
      key: "w1",
      notifier,
      waitSeconds: 30,
      signal: new AbortController().signal,
      check: async () => "now",
      timers: t.timers,
    });
    expect(v).toBe("now");
    expect(notifier.listenerCount()).toBe(0);
    expect(t.pending.size).toBe(0);
  });

  it("resolves when notified and the check finds something; the timer and listener go away", async () => {
    const notifier = new KeyedNotifier();
    const t = manualTimers();
    let version = 1;
    const order: string[] = [];
    const p = longPoll({
      key: "w1",
      notifier,
      waitSeconds: 30,
      signal: new AbortController().signal,
      check: async () => (version > 1 ? `v${version}` : undefined),
      timers: t.timers,
    }).then((v) => {
      order.push(`resolved ${v}`);
      return v;
    });
    await tick();
    expect([...t.pending.values()].map((x) => x.ms)).toEqual([30_000]);
    notifier.notify("w2"); // another worker: nothing happens
    notifier.notify("w1"); // notified, but nothing new yet: keeps waiting
    await tick();
    expect(order).toEqual([]);
    version = 2;
    order.push("published");
    notifier.notify("w1");
    expect(await p).toBe("v2");
    expect(order).toEqual(["published", "resolved v2"]);
    expect(notifier.listenerCount()).toBe(0);
    expect(t.pending.size).toBe(0);
  });

  it("times out with undefined", async () => {
    const notifier = new KeyedNotifier();
    const t = manualTimers();
    const p = longPoll({
      key: "w1",
      notifier,
      waitSeconds: 5,
      signal: new AbortController().signal,
      check: async () => undefined,
      timers: t.timers,
    });
    await tick();
    t.fireAll();
    expect(await p).toBeUndefined();
    expect(notifier.listenerCount()).toBe(0);
  });

  it("ends on abort (client gone) and cleans up", async () => {
    const notifier = new KeyedNotifier();
    const t = manualTimers();
    const ac = new AbortController();
    const p = longPoll({
      key: "w1",
      notifier,
      waitSeconds: 5,
      signal: ac.signal,
      check: async () => undefined,
      timers: t.timers,
    });
    await tick();
    expect(notifier.listenerCount("w1")).toBe(1);
    ac.abort();
    expect(await p).toBeUndefined();
    expect(notifier.listenerCount()).toBe(0);
    expect(t.pending.size).toBe(0);
  });

  it("does not lose a change published while the first check runs", async () => {
    const notifier = new KeyedNotifier();
    const t = manualTimers();
    let version = 1;
    let calls = 0;
    const p = longPoll({
      key: "w1",
      notifier,
      waitSeconds: 5,
      signal: new AbortController().signal,
      check: async () => {
        calls++;
        const seen = version;
        if (calls === 1) {
          // The writer commits and notifies after this check read the old state.
          version = 2;
          notifier.notify("w1");
        }
        return seen > 1 ? `v${seen}` : undefined;
      },
      timers: t.timers,
    });
    // No timer fired: the notification alone must bring the answer.
    expect(await p).toBe("v2");
    expect(calls).toBe(2);
  });

  it("runs checks one at a time and once more after notifications during a check", async () => {
    const notifier = new KeyedNotifier();
    const t = manualTimers();
    let running = 0;
    let maxRunning = 0;
    let calls = 0;
    let release: () => void = () => {};
    const p = longPoll({
      key: "w1",
      notifier,
      waitSeconds: 5,
      signal: new AbortController().signal,
      check: async () => {
        calls++;
        running++;
        maxRunning = Math.max(maxRunning, running);
        if (calls === 2) await new Promise<void>((r) => (release = r));
        running--;
        return calls >= 3 ? "done" : undefined;
      },
      timers: t.timers,
    });
    await tick();
    notifier.notify("w1"); // check 2 starts and blocks
    await tick();
    notifier.notify("w1");
    notifier.notify("w1"); // both folded into one more check
    release();
    expect(await p).toBe("done");
    expect(calls).toBe(3);
    expect(maxRunning).toBe(1);
  });

  it("rejects when the check fails, and cleans up", async () => {
    const notifier = new KeyedNotifier();
    const t = manualTimers();
    let calls = 0;
    const p = longPoll({
      key: "w1",
      notifier,
      waitSeconds: 5,
      signal: new AbortController().signal,
      check: async () => {
        if (++calls === 2) throw new Error("store down");
        return undefined;
      },
      timers: t.timers,
    });
    await tick();
    notifier.notify("w1");
    await expect(p).rejects.toThrow("store down");
    expect(notifier.listenerCount()).toBe(0);
    expect(t.pending.size).toBe(0);
  });
});
