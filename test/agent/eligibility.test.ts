import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  type BitcoindState,
  createUptimeWindow,
  decodeUptimeWindow,
  ELIGIBILITY_FILE,
  ELIGIBILITY_REASON_CODES,
  ELIGIBILITY_REASONS,
  type EligibilitySnapshot,
  type EligibilityTrackerOptions,
  evaluateEligibility,
  type LightningState,
  readEligibilityFile,
  startEligibilityTracker,
  type UptimeWindow,
  writeEligibilityFile,
} from "../../agent/eligibility.ts";
import { fixedClock } from "../../lib/clock.ts";
import { AgentdError } from "../../lib/errors.ts";
import { writeStateFile } from "../../lib/fs/state-file.ts";
import { useTmpDir } from "../support/tmp.ts";

const SLOT = 5_000;
const N = 120_960; // 7 days of 5-s slots
const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = 1_790_000_000_000; // a slot boundary
const tmp = useTmpDir("agentd-eligibility-");

/** Records `count` slots from `fromMs` (one sample in the middle of each), up per `up(i)`. */
function play(w: UptimeWindow, fromMs: number, count: number, up: (i: number) => boolean) {
  for (let i = 0; i < count; i++) w.record(fromMs + i * SLOT + SLOT / 2, up(i));
  return fromMs + count * SLOT;
}

const allUp = () => true;
const codeOf = (err: unknown) => (err instanceof AgentdError ? err.code : String(err));
const downSlots = (w: UptimeWindow) => (w.stats().counted_s - w.stats().up_s) / 5;

/** A window of 7 full days all up, ending at the returned time. */
function fullWindow(from = T0): { w: UptimeWindow; end: number } {
  const w = createUptimeWindow();
  return { w, end: play(w, from, N, allUp) };
}

function manualTimers(clock: { now(): number; set(ms: number): void }) {
  const pending = new Map<number, { fn: () => void; at: number; ms: number }>();
  let id = 0;
  return {
    timers: {
      setTimeout(fn: () => void, ms: number) {
        pending.set(++id, { fn, at: clock.now() + ms, ms });
        return id;
      },
      clearTimeout(h: unknown) {
        pending.delete(h as number);
      },
      setInterval(): number {
        throw new Error("the tracker uses no intervals");
      },
      clearInterval() {},
    },
    pending,
    /** Moves the clock to the next timer and runs it; returns its delay. */
    runNext(): number {
      const [key, t] = [...pending.entries()].sort((a, b) => a[1].at - b[1].at)[0] ?? [];
      if (key === undefined || t === undefined) throw new Error("no timer pending");
      pending.delete(key);
      clock.set(t.at);
      t.fn();
      return t.ms;
    },
  };
}

interface Harness {
  path: string;
  clock: ReturnType<typeof fixedClock>;
  reports: EligibilitySnapshot[];
  errors: { err: unknown; during: string }[];
  state: { up: boolean; lightning: LightningState; bitcoind: BitcoindState };
  timers: ReturnType<typeof manualTimers>;
  start(o?: Partial<EligibilityTrackerOptions>): ReturnType<typeof startEligibilityTracker>;
}

function harness(dir = tmp(), now = T0): Harness {
  const clock = fixedClock(now);
  const h: Harness = {
    path: join(dir, ELIGIBILITY_FILE),
    clock,
    reports: [],
    errors: [],
    state: { up: true, lightning: "open", bitcoind: "synced" },
    timers: manualTimers(clock),
    start: (o = {}) =>
      startEligibilityTracker({
        path: h.path,
        clock,
        timers: h.timers.timers,
        up: () => h.state.up,
        lightning: () => h.state.lightning,
        bitcoind: () => h.state.bitcoind,
        agentVersion: "1.0.0",
        onReport: (s) => h.reports.push(s),
        onError: (err, during) => h.errors.push({ err, during }),
        ...o,
      }),
  };
  return h;
}

describe("the uptime window (pure)", () => {
  it("is eligible at exactly 95 % of a full window and not one slot below", () => {
    const exact = createUptimeWindow();
    play(exact, T0, N, (i) => i >= N * 0.05); // 6,048 down, 114,912 up
    const s = exact.stats();
    expect([s.complete, s.up_s / 5, s.counted_s / 5, s.uptime_ratio]).toEqual([
      true,
      114_912,
      N,
      0.95,
    ]);
    expect(evaluateEligibility(s, "open", "synced")).toEqual({ eligible: true, reasons: [] });

    const below = createUptimeWindow();
    play(below, T0, N, (i) => i > N * 0.05); // 6,049 down
    expect(below.stats().uptime_ratio).toBeLessThan(0.95);
    expect(evaluateEligibility(below.stats(), "open", "synced")).toEqual({
      eligible: false,
      reasons: ["uptime.below_95"],
    });
  });

  it("requires 7 days of history: a fresh node at 100 % waits, then becomes eligible", () => {
    const w = createUptimeWindow();
    const end = play(w, T0, N - 1, allUp);
    const s = w.stats();
    expect([s.complete, s.uptime_ratio, s.observed_s, s.window_s]).toEqual([
      false,
      1,
      (N - 1) * 5,
      604_800,
    ]);
    expect(evaluateEligibility(s, "open", "synced").reasons).toEqual(["uptime.window_incomplete"]);
    w.record(end + 1, true);
    expect(evaluateEligibility(w.stats(), "open", "synced")).toEqual({
      eligible: true,
      reasons: [],
    });
  });

  it("rolls slots older than 7 days off the window", () => {
    const w = createUptimeWindow();
    // day 1 down (sampled down), then six days up
    let t = play(w, T0, DAY / SLOT, () => false);
    t = play(w, t, 6 * (DAY / SLOT), allUp);
    expect(w.stats().uptime_ratio).toBeCloseTo(6 / 7, 10);
    expect(w.stats().meets_threshold).toBe(false);
    // half a day later, half of the bad day has rolled off
    t = play(w, t, DAY / SLOT / 2, allUp);
    expect(downSlots(w)).toBe(DAY / SLOT / 2);
    // a day after the window, nothing of it is left
    play(w, t, DAY / SLOT / 2, allUp);
    expect([downSlots(w), w.stats().uptime_ratio, w.stats().counted_s]).toEqual([0, 1, N * 5]);
  });

  it("counts a gap with no samples (the agent was not running) as down", () => {
    const { w, end } = fullWindow();
    // the agent comes back an hour later: 720 slots were never sampled
    w.record(end + HOUR + SLOT / 2, true);
    expect(downSlots(w)).toBe(720);
    expect(w.stats().counted_s).toBe(N * 5);
    // a gap longer than the whole window leaves nothing up but the new sample
    w.record(end + 8 * DAY, true);
    expect(w.stats().up_s).toBe(5);
    expect(downSlots(w)).toBe(N - 1);
  });

  it("bridges up to two missed slots with the next sample, not three", () => {
    const { w, end } = fullWindow();
    w.record(end + 2 * SLOT + 100, true); // slots end, end+1 missed: drift, bridged
    expect(downSlots(w)).toBe(0);
    const { w: w2, end: end2 } = fullWindow();
    w2.record(end2 + 3 * SLOT + 100, true); // three missed: the agent was away
    expect(downSlots(w2)).toBe(3);
    const { w: w3, end: end3 } = fullWindow();
    w3.record(end3 + SLOT + 100, false); // a bridged slot takes the later sample's value
    expect(downSlots(w3)).toBe(2);
  });

  it("makes a slot down when any of its samples is down", () => {
    const { w, end } = fullWindow();
    w.record(end + 100, true);
    w.record(end + 200, false);
    w.record(end + 300, true);
    expect(downSlots(w)).toBe(1);
  });

  it("excludes maintenance windows from the ratio, even a restart gap inside one", () => {
    const stopAt = T0 + 3 * DAY;
    const run = (maintenance: boolean) => {
      const w = createUptimeWindow();
      if (maintenance) w.setMaintenance([{ start_ms: stopAt, end_ms: stopAt + 12 * HOUR }], T0);
      play(w, T0, 3 * (DAY / SLOT), allUp);
      // planned stop: no samples for 12 h; then up until the window is full and a bit more
      play(w, stopAt + 12 * HOUR, 5 * (DAY / SLOT), allUp);
      return w.stats();
    };
    const excused = run(true);
    expect(excused.complete).toBe(true);
    expect(excused.counted_s).toBe(N * 5 - 12 * 3600);
    expect([excused.uptime_ratio, excused.meets_threshold]).toEqual([1, true]);
    const notExcused = run(false);
    expect(notExcused.uptime_ratio).toBeCloseTo(1 - 0.5 / 7, 10);
    expect(notExcused.meets_threshold).toBe(false);
  });

  it("excludes up slots in maintenance too, and a window with only maintenance proves nothing", () => {
    const w = createUptimeWindow();
    w.setMaintenance([{ start_ms: T0, end_ms: T0 + 8 * DAY }], T0);
    play(w, T0, N, allUp);
    expect([w.stats().counted_s, w.stats().uptime_ratio, w.stats().meets_threshold]).toEqual([
      0,
      0,
      false,
    ]);
  });

  it("does not let a maintenance window declared afterwards excuse past downtime", () => {
    const { w, end } = fullWindow();
    // the agent was away for an hour; back now, someone declares that hour maintenance
    const now = end + HOUR;
    w.setMaintenance([{ start_ms: end, end_ms: now + HOUR }], now);
    w.record(now + SLOT / 2, true);
    expect(downSlots(w)).toBe(720);
    // from now on, the window applies
    play(w, now + SLOT, 10, () => false);
    expect(downSlots(w)).toBe(720);
    expect(w.maintenance()).toEqual([{ start_ms: now, end_ms: now + HOUR }]);
  });

  it("replaces the windows from now on: a cancelled window no longer excuses anything", () => {
    const { w, end } = fullWindow();
    const planned = { start_ms: end + HOUR, end_ms: end + 2 * HOUR };
    w.setMaintenance([planned], end);
    w.setMaintenance([], end + MIN); // cancelled before it began
    expect(w.maintenance()).toEqual([]);
    w.record(end + 3 * HOUR, true);
    expect(downSlots(w)).toBe(3 * 720);
    // one already under way is cut at the moment it is replaced
    const { w: w2, end: end2 } = fullWindow();
    w2.setMaintenance([{ start_ms: end2, end_ms: end2 + 2 * HOUR }], end2);
    w2.setMaintenance([], end2 + HOUR);
    expect(w2.maintenance()).toEqual([{ start_ms: end2, end_ms: end2 + HOUR }]);
    w2.record(end2 + 3 * HOUR, true);
    expect(downSlots(w2)).toBe(2 * 720);
  });

  it("refuses malformed maintenance windows", () => {
    const w = createUptimeWindow();
    for (const bad of [[{ start_ms: 10, end_ms: 10 }], [{ start_ms: 1.5, end_ms: 10 }]]) {
      expect(() => w.setMaintenance(bad, T0)).toThrow(AgentdError);
    }
    const many = Array.from({ length: 257 }, (_, i) => ({
      start_ms: T0 + i * HOUR,
      end_ms: T0 + i * HOUR + MIN,
    }));
    expect(() => w.setMaintenance(many, T0)).toThrow(/at most 256/);
  });

  it("ignores samples from a clock gone back, withholding eligibility until it catches up", () => {
    const { w, end } = fullWindow();
    const before = w.stats();
    expect(w.record(end - HOUR, false)).toBe("ignored");
    expect(w.record(end - MIN, false)).toBe("ignored");
    const behind = w.stats();
    expect([behind.up_s, behind.counted_s, behind.through_ms]).toEqual([
      before.up_s,
      before.counted_s,
      before.through_ms,
    ]);
    expect(evaluateEligibility(behind, "open", "synced").reasons).toEqual(["uptime.clock_behind"]);
    expect(w.record(end + SLOT / 2, true)).toBe("recorded");
    expect(evaluateEligibility(w.stats(), "open", "synced").eligible).toBe(true);
    // back by more than the whole window: the history starts again, marked lost
    expect(w.record(end - 8 * DAY, true)).toBe("reset");
    expect(evaluateEligibility(w.stats(), "open", "synced").reasons).toEqual([
      "uptime.window_incomplete",
      "uptime.history_lost",
    ]);
    expect(w.stats().observed_s).toBe(5);
  });

  it("gives a reason for every input it does not have, failing closed", () => {
    const { w } = fullWindow();
    const s = w.stats();
    const cases: [LightningState, BitcoindState, string[]][] = [
      ["open", "synced", []],
      ["none", "synced", ["lightning.no_channel"]],
      ["unknown", "synced", ["lightning.unknown"]],
      ["open", "syncing", ["bitcoind.not_synced"]],
      ["open", "unknown", ["bitcoind.unknown"]],
      ["unknown", "unknown", ["lightning.unknown", "bitcoind.unknown"]],
    ];
    for (const [ln, bd, reasons] of cases) {
      expect(evaluateEligibility(s, ln, bd), `${ln}/${bd}`).toEqual({
        eligible: reasons.length === 0,
        reasons,
      });
    }
  });
});

describe("the persisted window", () => {
  it("round-trips and stays small: under 1 KB for a week with outages, 41 KB at worst", () => {
    const dir = tmp();
    const path = join(dir, ELIGIBILITY_FILE);
    const w = createUptimeWindow();
    w.setMaintenance([{ start_ms: T0 + 2 * DAY, end_ms: T0 + 2 * DAY + HOUR }], T0);
    play(w, T0, N + 1000, (i) => i % 10_000 > 40); // an outage of 205 s every ~14 h
    writeEligibilityFile(path, "1.0.0", w);
    expect(statSync(path).size).toBeLessThan(1024);
    const back = readEligibilityFile(path);
    expect(back?.agentVersion).toBe("1.0.0");
    expect(back?.window.stats()).toEqual(w.stats());

    // worst case: an incompressible pattern
    const noisy = createUptimeWindow();
    let x = 2463534242; // xorshift32
    play(noisy, T0, N, () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      return (x & 1) === 1;
    });
    writeEligibilityFile(path, "1.0.0", noisy);
    const size = statSync(path).size;
    expect(size).toBeGreaterThan(15_000);
    expect(size).toBeLessThan(42 * 1024);
    expect(readEligibilityFile(path)?.window.stats()).toEqual(noisy.stats());
  });

  it("refuses tampered or foreign windows as corrupt", () => {
    const { w } = fullWindow();
    const good = w.encode();
    const fresh = createUptimeWindow();
    fresh.record(T0, true);
    const bad: [string, unknown][] = [
      ["extra member", { ...good, extra: 1 }],
      ["other slot size", { ...good, slot_ms: 10_000 }],
      ["first after last", { ...good, first_slot: (good.last_slot ?? 0) + 1 }],
      ["not base64", { ...good, up: "!!" }],
      ["wrong length", { ...good, up: fresh.encode().up.slice(0, 4) }],
      // a one-slot history claiming a week of up slots
      ["bits outside history", { ...fresh.encode(), up: good.up }],
      ["bad maintenance", { ...good, maintenance: [{ start_ms: 5, end_ms: 1 }] }],
    ];
    for (const [why, data] of bad) {
      let err: unknown;
      try {
        decodeUptimeWindow(data);
      } catch (e) {
        err = e;
      }
      expect(err, why).toBeInstanceOf(AgentdError);
      expect((err as AgentdError).code, why).toBe("AGENTD_E_FILE_CORRUPT");
    }
    expect(decodeUptimeWindow(good).stats()).toEqual(w.stats());
  });
});

describe("the tracker", () => {
  it("samples on a timer at mid-slot, reports at once, and persists at most once a minute", () => {
    const h = harness(tmp(), T0 + 100);
    const t = h.start();
    expect(h.reports).toHaveLength(1);
    expect(h.reports[0]).toMatchObject({
      eligible: false,
      reasons: ["uptime.window_incomplete"],
      uptime_ratio: 1,
      since_ms: T0 + 100,
    });
    const written = readFileSync(h.path, "utf8"); // written at start
    // first timer: the middle of the next slot
    expect(h.timers.runNext()).toBe(SLOT + SLOT / 2 - 100);
    for (let i = 0; i < 5; i++) expect(h.timers.runNext()).toBe(SLOT);
    expect(t.current().observed_s).toBe(35);
    expect(readFileSync(h.path, "utf8")).toBe(written); // 32.5 s: not yet
    while (h.clock.now() < T0 + MIN + 100) h.timers.runNext();
    expect(readFileSync(h.path, "utf8")).not.toBe(written);
    expect(h.reports).toHaveLength(1); // nothing changed
    t.close();
    expect(h.timers.pending.size).toBe(0);
    expect(readEligibilityFile(h.path)?.window.stats().through_ms).toBe(T0 + 65_000);
    t.close(); // once
  });

  it("reports when eligibility or its reasons change, and hourly otherwise", () => {
    const dir = tmp();
    const h = harness(dir);
    const { w, end } = fullWindow(T0 - 7 * DAY);
    writeEligibilityFile(h.path, "1.0.0", w);
    h.clock.set(end);
    const t = h.start({ persistEveryMs: HOUR });
    expect(h.reports.map((r) => [r.eligible, r.reasons])).toEqual([[true, []]]);
    h.timers.runNext();
    h.state.lightning = "unknown";
    h.timers.runNext();
    h.state.lightning = "none";
    h.timers.runNext();
    h.timers.runNext(); // unchanged: no report
    h.state.lightning = "open";
    h.timers.runNext();
    expect(h.reports.map((r) => [r.eligible, r.reasons])).toEqual([
      [true, []],
      [false, ["lightning.unknown"]],
      [false, ["lightning.no_channel"]],
      [true, []],
    ]);
    expect(h.reports[3]?.since_ms).toBe(h.clock.now());
    const lastAt = h.clock.now();
    while (h.clock.now() < lastAt + HOUR - SLOT) h.timers.runNext();
    expect(h.reports).toHaveLength(4);
    h.timers.runNext();
    expect(h.reports).toHaveLength(5);
    expect(h.reports[4]).toMatchObject({ eligible: true, at_ms: lastAt + HOUR });
    t.close();
  });

  it("survives a restart: the window comes back, and the gap counts as down", () => {
    const h = harness();
    const { w, end } = fullWindow(T0 - 7 * DAY);
    writeEligibilityFile(h.path, "1.0.0", w);
    h.clock.set(end);
    const t = h.start();
    expect(t.current()).toMatchObject({ eligible: true, uptime_ratio: 1 });
    t.close();
    h.clock.advance(9 * HOUR); // down for 9 h: the 6,479 slots between the two samples
    const t2 = h.start();
    const s = t2.current();
    expect(s.uptime_ratio).toBeCloseTo(1 - 6479 / N, 10);
    expect(s).toMatchObject({ eligible: false, reasons: ["uptime.below_95"] });
    expect(h.errors).toEqual([]);
    t2.close();
  });

  it("counts the grace after an update as up, and only after an update", () => {
    const run = (version: string, awayMs: number) => {
      const h = harness();
      const { w, end } = fullWindow(T0 - 7 * DAY);
      writeEligibilityFile(h.path, "1.0.0", w);
      h.clock.set(end + awayMs);
      // the new version starts, its services need two more minutes to come back
      h.state.up = false;
      const t = h.start({ agentVersion: version });
      for (let i = 0; i < 24; i++) h.timers.runNext();
      h.state.up = true;
      for (let i = 0; i < 24; i++) h.timers.runNext();
      t.close();
      return readEligibilityFile(h.path)?.window as UptimeWindow;
    };
    // a 3-minute update restart, then 2 minutes down: all inside the 10-minute grace
    expect(downSlots(run("1.1.0", 3 * MIN))).toBe(0);
    // the same restart without a version change: the 3-min gap, then 25 samples down
    expect(downSlots(run("1.0.0", 3 * MIN))).toBe(36 + 25);
    // an update that takes 20 minutes pays for what exceeds the grace
    expect(downSlots(run("1.1.0", 20 * MIN))).toBe(120 + 25);
  });

  it("starts over, fail-closed, from a corrupt file: reported, kept aside, history lost", () => {
    const h = harness();
    writeFileSync(h.path, "{not json", { mode: 0o600 });
    const t = h.start();
    expect(h.errors).toHaveLength(1);
    expect(h.errors[0]?.during).toBe("load");
    expect(codeOf(h.errors[0]?.err)).toBe("AGENTD_E_FILE_CORRUPT");
    expect(readFileSync(`${h.path}.unreadable`, "utf8")).toBe("{not json");
    expect(t.current()).toMatchObject({
      eligible: false,
      reasons: ["uptime.window_incomplete", "uptime.history_lost"],
    });
    t.close();
    // the mark survives a restart, and lasts until a full window has been earned again
    const back = readEligibilityFile(h.path)?.window as UptimeWindow;
    expect(back.stats().history_lost).toBe(true);
    const end = play(back, T0 + SLOT, N - 2, allUp); // one slot short of a window
    expect([back.stats().history_lost, back.stats().complete]).toEqual([true, false]);
    play(back, end, 1, allUp);
    expect([back.stats().history_lost, back.stats().complete]).toEqual([false, true]);
  });

  it("does the same with a file from a newer agentd", () => {
    const h = harness();
    writeStateFile(h.path, 2, { whatever: true });
    const t = h.start();
    expect(codeOf(h.errors[0]?.err)).toBe("AGENTD_E_FILE_FORMAT_NEWER");
    expect(existsSync(`${h.path}.unreadable`)).toBe(true);
    expect(t.current().reasons).toContain("uptime.history_lost");
    t.close();
    expect(readEligibilityFile(h.path)?.window.stats().history_lost).toBe(true);
  });

  it("fails closed on inputs that throw or answer nonsense", () => {
    const h = harness();
    const { w, end } = fullWindow(T0 - 7 * DAY);
    writeEligibilityFile(h.path, "1.0.0", w);
    h.clock.set(end);
    const t = h.start({
      lightning: () => {
        throw new Error("lnd unreachable");
      },
      bitcoind: () => "maybe" as BitcoindState,
      up: () => {
        throw new Error("probe failed");
      },
    });
    expect(t.current()).toMatchObject({
      eligible: false,
      lightning: "unknown",
      bitcoind: "unknown",
      reasons: ["lightning.unknown", "bitcoind.unknown"],
    });
    t.close();
    expect(downSlots(readEligibilityFile(h.path)?.window as UptimeWindow)).toBe(1);
  });

  it("keeps maintenance windows set at runtime across a restart", () => {
    const h = harness();
    const { w, end } = fullWindow(T0 - 7 * DAY);
    writeEligibilityFile(h.path, "1.0.0", w);
    h.clock.set(end);
    const t = h.start();
    t.setMaintenance([{ start_ms: end, end_ms: end + 3 * HOUR }]);
    t.close();
    h.clock.advance(2 * HOUR); // a planned stop inside the window
    const t2 = h.start();
    expect(t2.current()).toMatchObject({ eligible: true, uptime_ratio: 1 });
    expect(t2.maintenance()).toEqual([{ start_ms: end, end_ms: end + 3 * HOUR }]);
    t2.close();
    // without it, the same stop costs the 1,439 slots between the two samples
    const h2 = harness();
    writeEligibilityFile(h2.path, "1.0.0", fullWindow(T0 - 7 * DAY).w);
    h2.clock.set(end);
    h2.start().close();
    h2.clock.advance(2 * HOUR);
    const t3 = h2.start();
    expect(t3.current().uptime_ratio).toBeCloseTo(1 - 1439 / N, 10);
    t3.close();
  });
});

describe("docs/eligibility.md", () => {
  const doc = readFileSync(new URL("../../docs/eligibility.md", import.meta.url), "utf8");

  it("documents every reason, and names no other", () => {
    expect(ELIGIBILITY_REASON_CODES).toEqual(Object.keys(ELIGIBILITY_REASONS));
    for (const code of ELIGIBILITY_REASON_CODES) {
      expect(doc, code).toMatch(new RegExp(`^\\| \`${code.replace(".", "\\.")}\` \\|`, "m"));
    }
    const named = [...doc.matchAll(/`((?:uptime|lightning|bitcoind)\.[a-z_0-9]+)`/g)].map(
      (m) => m[1],
    );
    for (const code of named) expect(ELIGIBILITY_REASON_CODES, code).toContain(code);
  });
});
