import { describe, expect, it } from "vitest";
import { fakeTime, sleep, stopwatch, systemTimers, timeoutSignal } from "../../lib/timers.ts";

describe("fakeTime", () => {
  it("fires timeouts in due order as time advances, and moves the clock with them", async () => {
    const t = fakeTime(1_000_000);
    const seen: string[] = [];
    t.timers.setTimeout(() => seen.push(`b@${t.clock.now()}`), 200);
    t.timers.setTimeout(() => seen.push(`a@${t.clock.now()}`), 100);
    const c = t.timers.setTimeout(() => seen.push("cleared"), 150);
    t.timers.clearTimeout(c);
    expect(t.delays()).toEqual([100, 200]);
    await t.advance(99);
    expect(seen).toEqual([]);
    await t.advance(1);
    expect(seen).toEqual(["a@1000100"]);
    await t.advance(1_000);
    expect(seen).toEqual(["a@1000100", "b@1000200"]);
    expect(t.clock.now()).toBe(1_001_100);
    expect(t.pending()).toBe(0);
  });

  it("fires an interval once per period on advance, and once on a jump", async () => {
    const t = fakeTime(0);
    let n = 0;
    const h = t.timers.setInterval(() => n++, 1_000);
    await t.advance(3_500);
    expect(n).toBe(3);
    await t.jump(86_400_000);
    expect(n).toBe(4);
    // the next period counts from the jump
    await t.advance(999);
    expect(n).toBe(4);
    await t.advance(1);
    expect(n).toBe(5);
    t.timers.clearInterval(h);
    await t.advance(10_000);
    expect(n).toBe(5);
  });

  it("runs what a timer starts before the next one fires", async () => {
    const t = fakeTime(0);
    const seen: string[] = [];
    t.timers.setTimeout(() => {
      void Promise.resolve().then(() => seen.push("then of first"));
      t.timers.setTimeout(() => seen.push("armed by first"), 0);
    }, 10);
    t.timers.setTimeout(() => seen.push("second"), 20);
    await t.advance(20);
    expect(seen).toEqual(["then of first", "armed by first", "second"]);
  });

  it("steps the wall clock without moving any timer (a clock set back)", async () => {
    const t = fakeTime(10_000_000);
    let fired = false;
    t.timers.setTimeout(() => {
      fired = true;
    }, 5_000);
    t.clock.set(1_000);
    expect(t.clock.now()).toBe(1_000);
    await t.advance(4_999);
    expect(fired).toBe(false);
    expect(t.clock.now()).toBe(5_999);
    await t.advance(1);
    expect(fired).toBe(true);
  });

  it("runNext moves to the next timer; sleep resolves on time or on abort", async () => {
    const t = fakeTime(0);
    let slept = false;
    void sleep(t.timers, 7_000).then(() => {
      slept = true;
    });
    expect(await t.runNext()).toBe(7_000);
    expect(slept).toBe(true);
    await expect(t.runNext()).rejects.toThrow(/no timer/);

    const ac = new AbortController();
    const s = sleep(t.timers, 60_000, ac.signal);
    ac.abort();
    await s;
    expect(t.pending()).toBe(0);
  });

  it("timeoutSignal aborts on the fake timers", async () => {
    const t = fakeTime(0);
    const signal = timeoutSignal(t.timers, 500);
    await t.advance(499);
    expect(signal.aborted).toBe(false);
    await t.advance(1);
    expect(signal.aborted).toBe(true);
    expect((signal.reason as Error).name).toBe("TimeoutError");
  });
});

describe("system timers and the stopwatch", () => {
  it("sleep on the system timers waits, and the stopwatch measures it", async () => {
    const elapsed = stopwatch();
    await sleep(systemTimers, 20);
    expect(elapsed()).toBeGreaterThanOrEqual(0.015);
  });
});
