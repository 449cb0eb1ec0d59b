/**
 * The `schedule` rule. Every expected instant below is computed by hand from the zones'
 * published offsets and 2026 transitions (checked against `zdump`), never with the code under
 * test:
 *
 *   Europe/Berlin     CET +1 / CEST +2; 2026-03-29 01:00Z (02:00 → 03:00), 2026-10-25 01:00Z
 *                     (03:00 → 02:00).
 *   America/New_York  EST -5 / EDT -4;  2026-03-08 07:00Z (02:00 → 03:00), 2026-11-01 06:00Z
 *                     (02:00 → 01:00).
 *   Australia/Sydney  AEST +10 / AEDT +11; 2026-04-04 16:00Z (Sun Apr 5 03:00 → 02:00),
 *                     2026-10-03 16:00Z (Sun Oct 4 02:00 → 03:00).
 *   America/Santiago  -04 / -03; 2026-04-05 03:00Z (Sat 24:00 → Sat 23:00), 2026-09-06 04:00Z
 *                     (Sun 00:00 → 01:00).
 *   Pacific/Apia      2011-12-30 10:00Z: Thu Dec 29 24:00 (-10) → Sat Dec 31 00:00 (+14).
 *
 * 2026 weekdays: Jan 12 and Jan 19 are Mondays; Mar 8, Mar 29, Apr 5, Oct 4, Oct 25 and Nov 1
 * are Sundays.
 */
import { describe, expect, it } from "vitest";
import { isAgentdError } from "../../lib/errors.ts";
import {
  type ScheduleWindow,
  scheduleState,
  validateWindow,
  type Weekday,
  wallToInstant,
} from "../../policy-guard/schedule.ts";

const ALL: readonly Weekday[] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

function win(days: readonly Weekday[], start: string, end: string, tz: string): ScheduleWindow {
  return Object.freeze({ days: Object.freeze([...days]), start, end, tz });
}

const berlin = (days: readonly Weekday[], start: string, end: string) =>
  win(days, start, end, "Europe/Berlin");

/** scheduleState at an ISO instant, with the next change as an ISO string. */
function at(
  windows: readonly ScheduleWindow[],
  iso: string,
): { inside: boolean; next: string | null } {
  const now = Date.parse(iso);
  expect(Number.isFinite(now), iso).toBe(true);
  const r = scheduleState(windows, now);
  return {
    inside: r.inside,
    next: r.nextChangeMs === null ? null : new Date(r.nextChangeMs).toISOString(),
  };
}

const inside = (next: string | null) => ({ inside: true, next });
const outside = (next: string | null) => ({ inside: false, next });

describe("validateWindow", () => {
  it("accepts well-formed windows", () => {
    const ok: unknown[] = [
      {
        days: ["mon", "tue", "wed", "thu", "fri"],
        start: "22:00",
        end: "06:00",
        tz: "Europe/Berlin",
      },
      { days: ["sun"], start: "00:00", end: "23:59", tz: "UTC" },
      { days: ["sat", "mon"], start: "08:00", end: "08:00", tz: "America/Argentina/Buenos_Aires" },
      { days: ["wed"], start: "12:30", end: "13:00", tz: "Etc/GMT+5" },
      { days: ["thu"], start: "19:59", end: "20:00", tz: "US/Eastern" },
      { days: ALL, start: "00:00", end: "00:00", tz: "Australia/Sydney" },
    ];
    for (const w of ok)
      expect(validateWindow(w, "rules.schedule[0]"), JSON.stringify(w)).toBeNull();
  });

  const good = { days: ["mon"], start: "09:00", end: "17:00", tz: "Europe/Berlin" };
  const bad: [string, unknown, string][] = [
    ["null", null, "p: must be an object"],
    ["an array", [good], "p: must be an object"],
    ["a string", "mon 09:00-17:00", "p: must be an object"],
    ["an unknown member", { ...good, note: "x" }, 'p: unknown member "note"'],
    ["a missing tz", { days: ["mon"], start: "09:00", end: "17:00" }, 'p: missing member "tz"'],
    ["empty days", { ...good, days: [] }, "p.days:"],
    ["days as a string", { ...good, days: "mon" }, "p.days:"],
    ["a capitalised day", { ...good, days: ["mon", "Tue"] }, 'p.days[1]: unknown day "Tue"'],
    ["a long day name", { ...good, days: ["monday"] }, "p.days[0]: unknown day"],
    ["a numeric day", { ...good, days: [1] }, "p.days[0]: unknown day"],
    ["a duplicate day", { ...good, days: ["mon", "fri", "mon"] }, 'p.days[2]: duplicate day "mon"'],
    ["start 24:00", { ...good, start: "24:00" }, "p.start:"],
    ["start with one hour digit", { ...good, start: "9:00" }, "p.start:"],
    ["start minute 60", { ...good, start: "09:60" }, "p.start:"],
    ["start with seconds", { ...good, start: "09:00:00" }, "p.start:"],
    ["start as a number", { ...good, start: 900 }, "p.start:"],
    ["end with a space", { ...good, end: " 17:00" }, "p.end:"],
    ["end 25:00", { ...good, end: "25:00" }, "p.end:"],
    ["an empty tz", { ...good, tz: "" }, "p.tz:"],
    ["an offset tz", { ...good, tz: "+01:00" }, "p.tz:"],
    ["a compact offset tz", { ...good, tz: "-0500" }, "p.tz:"],
    ["UTC+1", { ...good, tz: "UTC+1" }, "p.tz:"],
    ["an unknown zone", { ...good, tz: "Europe/Nowhere" }, "p.tz:"],
    ["a zone with a trailing space", { ...good, tz: "Europe/Berlin " }, "p.tz:"],
    ["a numeric tz", { ...good, tz: 1 }, "p.tz:"],
  ];
  for (const [what, value, expected] of bad) {
    it(`refuses ${what} with one line naming the member`, () => {
      const problem = validateWindow(value, "p");
      expect(problem).not.toBeNull();
      expect(problem).toContain(expected);
      expect(problem).not.toMatch(/[\r\n]/);
    });
  }
});

describe("wallToInstant", () => {
  const cases: [string, [number, number, number, number, number], string][] = [
    // ordinary times
    ["Europe/Berlin", [2026, 1, 15, 12, 0], "2026-01-15T11:00:00.000Z"],
    ["Europe/Berlin", [2026, 7, 15, 12, 0], "2026-07-15T10:00:00.000Z"],
    ["UTC", [2026, 2, 28, 23, 59], "2026-02-28T23:59:00.000Z"],
    ["Etc/GMT+5", [2026, 6, 1, 12, 0], "2026-06-01T17:00:00.000Z"],
    ["Asia/Kolkata", [2026, 1, 1, 0, 0], "2025-12-31T18:30:00.000Z"],
    // Berlin spring gap: 02:00-02:59 do not exist → 03:00 CEST = 01:00Z
    ["Europe/Berlin", [2026, 3, 29, 1, 59], "2026-03-29T00:59:00.000Z"],
    ["Europe/Berlin", [2026, 3, 29, 2, 0], "2026-03-29T01:00:00.000Z"],
    ["Europe/Berlin", [2026, 3, 29, 2, 30], "2026-03-29T01:00:00.000Z"],
    ["Europe/Berlin", [2026, 3, 29, 2, 59], "2026-03-29T01:00:00.000Z"],
    ["Europe/Berlin", [2026, 3, 29, 3, 0], "2026-03-29T01:00:00.000Z"],
    ["Europe/Berlin", [2026, 3, 29, 3, 1], "2026-03-29T01:01:00.000Z"],
    // Berlin autumn overlap: 02:00-02:59 twice → the CEST occurrence
    ["Europe/Berlin", [2026, 10, 25, 1, 59], "2026-10-24T23:59:00.000Z"],
    ["Europe/Berlin", [2026, 10, 25, 2, 0], "2026-10-25T00:00:00.000Z"],
    ["Europe/Berlin", [2026, 10, 25, 2, 30], "2026-10-25T00:30:00.000Z"],
    ["Europe/Berlin", [2026, 10, 25, 2, 59], "2026-10-25T00:59:00.000Z"],
    ["Europe/Berlin", [2026, 10, 25, 3, 0], "2026-10-25T02:00:00.000Z"],
    // New York
    ["America/New_York", [2026, 3, 8, 1, 59], "2026-03-08T06:59:00.000Z"],
    ["America/New_York", [2026, 3, 8, 2, 0], "2026-03-08T07:00:00.000Z"],
    ["America/New_York", [2026, 3, 8, 2, 30], "2026-03-08T07:00:00.000Z"],
    ["America/New_York", [2026, 3, 8, 3, 0], "2026-03-08T07:00:00.000Z"],
    ["America/New_York", [2026, 11, 1, 0, 59], "2026-11-01T04:59:00.000Z"],
    ["America/New_York", [2026, 11, 1, 1, 0], "2026-11-01T05:00:00.000Z"],
    ["America/New_York", [2026, 11, 1, 1, 30], "2026-11-01T05:30:00.000Z"],
    ["America/New_York", [2026, 11, 1, 2, 0], "2026-11-01T07:00:00.000Z"],
    // Sydney (southern hemisphere: overlap in April, gap in October)
    ["Australia/Sydney", [2026, 4, 5, 1, 59], "2026-04-04T14:59:00.000Z"],
    ["Australia/Sydney", [2026, 4, 5, 2, 30], "2026-04-04T15:30:00.000Z"],
    ["Australia/Sydney", [2026, 4, 5, 3, 0], "2026-04-04T17:00:00.000Z"],
    ["Australia/Sydney", [2026, 10, 4, 1, 59], "2026-10-03T15:59:00.000Z"],
    ["Australia/Sydney", [2026, 10, 4, 2, 30], "2026-10-03T16:00:00.000Z"],
    ["Australia/Sydney", [2026, 10, 4, 3, 0], "2026-10-03T16:00:00.000Z"],
    // Santiago: the gap is at midnight (Sun 00:00 → 01:00); the overlap is Saturday 23:xx
    ["America/Santiago", [2026, 9, 6, 0, 0], "2026-09-06T04:00:00.000Z"],
    ["America/Santiago", [2026, 9, 6, 0, 45], "2026-09-06T04:00:00.000Z"],
    ["America/Santiago", [2026, 4, 4, 23, 30], "2026-04-05T02:30:00.000Z"],
    ["America/Santiago", [2026, 4, 5, 0, 0], "2026-04-05T04:00:00.000Z"],
    // Apia skipped Friday 2011-12-30 entirely: any time of it → Sat 00:00 +14
    ["Pacific/Apia", [2011, 12, 30, 12, 0], "2011-12-30T10:00:00.000Z"],
    ["Pacific/Apia", [2011, 12, 29, 23, 59], "2011-12-30T09:59:00.000Z"],
    ["Pacific/Apia", [2011, 12, 31, 0, 0], "2011-12-30T10:00:00.000Z"],
  ];
  for (const [tz, [y, m, d, hh, mm], iso] of cases) {
    const wall = `${y}-${String(m).padStart(2, "0")}-${String(d).padStart(2, "0")} ${String(hh).padStart(2, "0")}:${String(mm).padStart(2, "0")}`;
    it(`${tz} ${wall} → ${iso}`, () => {
      expect(new Date(wallToInstant(tz, y, m, d, hh, mm)).toISOString()).toBe(iso);
    });
  }

  it("refuses an invalid zone or date with AGENTD_E_INTERNAL", () => {
    const bad: [string, number, number, number, number, number][] = [
      ["Europe/Nowhere", 2026, 1, 1, 0, 0],
      ["+01:00", 2026, 1, 1, 0, 0],
      ["Europe/Berlin", 2026, 2, 29, 0, 0],
      ["Europe/Berlin", 2026, 13, 1, 0, 0],
      ["Europe/Berlin", 2026, 4, 31, 0, 0],
      ["Europe/Berlin", 2026, 1, 1, 24, 0],
      ["Europe/Berlin", 2026, 1, 1, 12, 60],
      ["Europe/Berlin", 2026, 1, 1.5, 12, 0],
    ];
    for (const args of bad) {
      let thrown: unknown;
      try {
        wallToInstant(...args);
      } catch (e) {
        thrown = e;
      }
      expect(
        isAgentdError(thrown) && thrown.code === "AGENTD_E_INTERNAL",
        JSON.stringify(args),
      ).toBe(true);
    }
    // 2024 is a leap year: Feb 29 exists.
    expect(new Date(wallToInstant("Europe/Berlin", 2024, 2, 29, 0, 0)).toISOString()).toBe(
      "2024-02-28T23:00:00.000Z",
    );
  });
});

describe("scheduleState: basics", () => {
  it("no windows: always inside, never changes", () => {
    expect(at([], "2026-01-12T12:00:00Z")).toEqual(inside(null));
    expect(at([], "2026-03-29T01:00:00Z")).toEqual(inside(null));
  });

  const weeknights = [berlin(["mon", "tue", "wed", "thu", "fri"], "22:00", "06:00")];

  it("start is inclusive, end exclusive, to the millisecond", () => {
    expect(at(weeknights, "2026-01-12T20:59:59.999Z")).toEqual(outside("2026-01-12T21:00:00.000Z"));
    expect(at(weeknights, "2026-01-12T21:00:00.000Z")).toEqual(inside("2026-01-13T05:00:00.000Z"));
    expect(at(weeknights, "2026-01-13T04:59:59.000Z")).toEqual(inside("2026-01-13T05:00:00.000Z"));
    expect(at(weeknights, "2026-01-13T04:59:59.999Z")).toEqual(inside("2026-01-13T05:00:00.000Z"));
    expect(at(weeknights, "2026-01-13T05:00:00.000Z")).toEqual(outside("2026-01-13T21:00:00.000Z"));
  });

  it("a Friday night window runs into Saturday; the next start is Monday", () => {
    expect(at(weeknights, "2026-01-17T04:30:00Z")).toEqual(inside("2026-01-17T05:00:00.000Z"));
    expect(at(weeknights, "2026-01-17T05:00:00Z")).toEqual(outside("2026-01-19T21:00:00.000Z"));
    expect(at(weeknights, "2026-01-18T22:00:00Z")).toEqual(outside("2026-01-19T21:00:00.000Z"));
  });

  it("Monday early morning is not covered when Sunday is not listed", () => {
    expect(at(weeknights, "2026-01-12T04:00:00Z")).toEqual(outside("2026-01-12T21:00:00.000Z"));
  });

  it("a window across midnight belongs to its start day", () => {
    const sunNight = [berlin(["sun"], "22:00", "06:00")];
    // Monday 05:59 CET: inside, from Sunday's window
    expect(at(sunNight, "2026-01-12T04:59:00Z")).toEqual(inside("2026-01-12T05:00:00.000Z"));
    // Monday 22:30 CET: outside (Monday is not listed); next is Sunday 22:00 CET
    expect(at(sunNight, "2026-01-12T21:30:00Z")).toEqual(outside("2026-01-18T21:00:00.000Z"));
    // Sunday 05:00 CET: outside (Saturday is not listed)
    expect(at(sunNight, "2026-01-11T04:00:00Z")).toEqual(outside("2026-01-11T21:00:00.000Z"));
    // …unless Monday is listed too
    const sunMonNight = [berlin(["sun", "mon"], "22:00", "06:00")];
    expect(at(sunMonNight, "2026-01-12T21:30:00Z")).toEqual(inside("2026-01-13T05:00:00.000Z"));
  });

  it("nextChangeMs wraps around the week", () => {
    const w = [berlin(["sun"], "23:00", "01:00")];
    expect(at(w, "2026-01-17T12:00:00Z")).toEqual(outside("2026-01-18T22:00:00.000Z"));
    expect(at(w, "2026-01-18T23:30:00Z")).toEqual(inside("2026-01-19T00:00:00.000Z"));
    expect(at(w, "2026-01-19T00:00:00Z")).toEqual(outside("2026-01-25T22:00:00.000Z"));
  });

  it("start == end is a whole day beginning at start", () => {
    const w = [berlin(["wed"], "08:00", "08:00")];
    expect(at(w, "2026-01-14T06:59:59.999Z")).toEqual(outside("2026-01-14T07:00:00.000Z"));
    expect(at(w, "2026-01-14T07:00:00.000Z")).toEqual(inside("2026-01-15T07:00:00.000Z"));
    expect(at(w, "2026-01-15T06:59:59.999Z")).toEqual(inside("2026-01-15T07:00:00.000Z"));
    expect(at(w, "2026-01-15T07:00:00.000Z")).toEqual(outside("2026-01-21T07:00:00.000Z"));
    // 00:00-00:00 is the calendar day
    const tue = [berlin(["tue"], "00:00", "00:00")];
    expect(at(tue, "2026-01-12T22:59:59.999Z")).toEqual(outside("2026-01-12T23:00:00.000Z"));
    expect(at(tue, "2026-01-12T23:00:00.000Z")).toEqual(inside("2026-01-13T23:00:00.000Z"));
  });

  it("a window ending at 00:00 ends at the next midnight", () => {
    const w = [berlin(["mon"], "12:00", "00:00")];
    expect(at(w, "2026-01-12T22:59:59.999Z")).toEqual(inside("2026-01-12T23:00:00.000Z"));
    expect(at(w, "2026-01-12T23:00:00.000Z")).toEqual(outside("2026-01-19T11:00:00.000Z"));
  });
});

describe("scheduleState: unions", () => {
  it("adjacent windows merge: no flip at the shared boundary, in either order", () => {
    const a = berlin(["mon"], "00:00", "12:00");
    const b = berlin(["mon"], "12:00", "00:00");
    for (const ws of [
      [a, b],
      [b, a],
    ]) {
      expect(at(ws, "2026-01-12T10:59:59.999Z")).toEqual(inside("2026-01-12T23:00:00.000Z"));
      expect(at(ws, "2026-01-12T11:00:00.000Z")).toEqual(inside("2026-01-12T23:00:00.000Z"));
      expect(at(ws, "2026-01-11T23:00:00.000Z")).toEqual(inside("2026-01-12T23:00:00.000Z"));
      expect(at(ws, "2026-01-12T23:00:00.000Z")).toEqual(outside("2026-01-18T23:00:00.000Z"));
    }
  });

  it("adjacent windows on consecutive days merge across midnight", () => {
    const ws = [berlin(["sun"], "18:00", "00:00"), berlin(["mon"], "00:00", "06:00")];
    expect(at(ws, "2026-01-11T20:00:00Z")).toEqual(inside("2026-01-12T05:00:00.000Z"));
    expect(at(ws, "2026-01-11T22:59:59.999Z")).toEqual(inside("2026-01-12T05:00:00.000Z"));
  });

  it("overlapping windows merge", () => {
    const ws = [berlin(["mon"], "09:00", "13:00"), berlin(["mon"], "11:00", "15:00")];
    expect(at(ws, "2026-01-12T08:00:00Z")).toEqual(inside("2026-01-12T14:00:00.000Z"));
    expect(at(ws, "2026-01-12T12:30:00Z")).toEqual(inside("2026-01-12T14:00:00.000Z"));
  });

  it("windows in different zones merge", () => {
    // Berlin 09-17 CET = 08:00Z-16:00Z; New York 09-17 EST = 14:00Z-22:00Z
    const ws = [
      berlin(["mon"], "09:00", "17:00"),
      win(["mon"], "09:00", "17:00", "America/New_York"),
    ];
    expect(at(ws, "2026-01-12T07:59:59.999Z")).toEqual(outside("2026-01-12T08:00:00.000Z"));
    expect(at(ws, "2026-01-12T08:00:00.000Z")).toEqual(inside("2026-01-12T22:00:00.000Z"));
    expect(at(ws, "2026-01-12T15:00:00.000Z")).toEqual(inside("2026-01-12T22:00:00.000Z"));
    expect(at(ws, "2026-01-12T22:00:00.000Z")).toEqual(outside("2026-01-19T08:00:00.000Z"));
  });

  it("a schedule covering the whole week never changes", () => {
    const schedules: ScheduleWindow[][] = [
      [berlin(ALL, "00:00", "00:00")],
      [berlin(ALL, "06:00", "06:00")],
      [berlin(ALL, "00:00", "12:00"), berlin(ALL, "12:00", "00:00")],
      [
        berlin(["mon", "tue", "wed"], "00:00", "00:00"),
        berlin(["thu", "fri", "sat", "sun"], "00:00", "00:00"),
      ],
      [win(ALL, "22:00", "22:00", "America/New_York")],
      // one zone covers everything; the other window changes nothing
      [berlin(ALL, "00:00", "00:00"), win(["mon"], "09:00", "10:00", "Asia/Tokyo")],
    ];
    for (const ws of schedules) {
      for (const iso of [
        "2026-01-14T12:00:00Z",
        "2026-03-29T01:00:00Z",
        "2026-10-25T00:30:00Z",
        "2026-03-08T07:00:00Z",
      ]) {
        expect(at(ws, iso), `${JSON.stringify(ws)} at ${iso}`).toEqual(inside(null));
      }
    }
  });

  it("two zones that always meet (Berlin and London switch together) never change", () => {
    // Berlin 00:00-12:00 is London 23:00-11:00, all year round
    const ws = [berlin(ALL, "00:00", "12:00"), win(ALL, "11:00", "00:00", "Europe/London")];
    expect(at(ws, "2026-01-14T12:00:00Z")).toEqual(inside(null));
    expect(at(ws, "2026-10-25T01:30:00Z")).toEqual(inside(null));
  });

  it("a week missing one day flips at its edges", () => {
    const ws = [berlin(["mon", "tue", "wed", "thu", "fri", "sat"], "00:00", "00:00")];
    expect(at(ws, "2026-01-14T12:00:00Z")).toEqual(inside("2026-01-17T23:00:00.000Z"));
    expect(at(ws, "2026-01-17T23:00:00Z")).toEqual(outside("2026-01-18T23:00:00.000Z"));
  });

  it("zones whose DST dates differ open a gap for weeks only (first flip months away)", () => {
    // Berlin 00:00-12:00 and New York 06:00-18:00 meet exactly in winter (23Z-11Z, 11Z-23Z)
    // and in summer (22Z-10Z, 10Z-22Z), but between the US and the EU changes they leave
    // 22:00Z-23:00Z uncovered: first on Sun 2026-03-08, first again on Sun 2026-10-25.
    const ws = [berlin(ALL, "00:00", "12:00"), win(ALL, "06:00", "18:00", "America/New_York")];
    expect(at(ws, "2026-01-15T12:00:00Z")).toEqual(inside("2026-03-08T22:00:00.000Z"));
    expect(at(ws, "2026-03-08T22:00:00Z")).toEqual(outside("2026-03-08T23:00:00.000Z"));
    expect(at(ws, "2026-03-28T22:30:00Z")).toEqual(outside("2026-03-28T23:00:00.000Z"));
    expect(at(ws, "2026-04-01T00:00:00Z")).toEqual(inside("2026-10-25T22:00:00.000Z"));
  });

  it("is pure: same answer twice, input untouched, order of windows irrelevant", () => {
    const ws = [
      berlin(["mon", "tue", "wed", "thu", "fri"], "22:00", "06:00"),
      berlin(["sat", "sun"], "00:00", "00:00"),
      win(["mon", "wed", "fri"], "12:00", "14:30", "America/New_York"),
    ];
    const before = JSON.stringify(ws);
    const rev = [...ws].reverse();
    for (const iso of ["2026-01-16T17:00:00Z", "2026-01-16T19:30:00Z", "2026-01-19T05:00:00Z"]) {
      expect(at(ws, iso)).toEqual(at(ws, iso));
      expect(at(rev, iso)).toEqual(at(ws, iso));
    }
    expect(JSON.stringify(ws)).toBe(before);
    // Friday 12:00-14:30 EST = 17:00Z-19:30Z, then Friday 22:00 CET = 21:00Z runs into the
    // weekend, which runs to Monday 00:00 CET = Sunday 23:00Z
    expect(at(ws, "2026-01-16T17:00:00Z")).toEqual(inside("2026-01-16T19:30:00.000Z"));
    expect(at(ws, "2026-01-16T19:30:00Z")).toEqual(outside("2026-01-16T21:00:00.000Z"));
    expect(at(ws, "2026-01-16T21:00:00Z")).toEqual(inside("2026-01-18T23:00:00.000Z"));
  });

  it("refuses an unvalidated window or an impossible instant", () => {
    const codeOf = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return isAgentdError(e) ? e.code : "other";
      }
      return "none";
    };
    const bad = {
      days: ["mon"],
      start: "9:00",
      end: "17:00",
      tz: "Europe/Berlin",
    } as unknown as ScheduleWindow;
    expect(codeOf(() => scheduleState([bad], Date.UTC(2026, 0, 12)))).toBe("AGENTD_E_INTERNAL");
    const badTz = win(["mon"], "09:00", "17:00", "Nowhere/Land");
    expect(codeOf(() => scheduleState([badTz], Date.UTC(2026, 0, 12)))).toBe("AGENTD_E_INTERNAL");
    expect(codeOf(() => scheduleState([berlin(["mon"], "09:00", "17:00")], Number.NaN))).toBe(
      "AGENTD_E_INTERNAL",
    );
  });
});

describe("scheduleState: DST in Europe/Berlin", () => {
  it("spring: a start inside the gap moves to 03:00 CEST", () => {
    const w = [berlin(["sun"], "02:30", "04:00")]; // 2026-03-29: 01:00Z-02:00Z
    expect(at(w, "2026-03-29T00:59:59.999Z")).toEqual(outside("2026-03-29T01:00:00.000Z"));
    expect(at(w, "2026-03-29T01:00:00.000Z")).toEqual(inside("2026-03-29T02:00:00.000Z"));
    // next Sunday 02:30 CEST = 00:30Z
    expect(at(w, "2026-03-29T02:00:00.000Z")).toEqual(outside("2026-04-05T00:30:00.000Z"));
  });

  it("spring: an end inside the gap moves to 03:00 CEST", () => {
    const w = [berlin(["sat"], "22:00", "02:30")]; // Sat 21:00Z → Sun 01:00Z
    expect(at(w, "2026-03-28T21:00:00.000Z")).toEqual(inside("2026-03-29T01:00:00.000Z"));
    expect(at(w, "2026-03-29T00:59:59.999Z")).toEqual(inside("2026-03-29T01:00:00.000Z"));
    // next Saturday 22:00 CEST = 20:00Z
    expect(at(w, "2026-03-29T01:00:00.000Z")).toEqual(outside("2026-04-04T20:00:00.000Z"));
  });

  it("spring: a window wholly inside the gap is empty that day", () => {
    const w = [berlin(["sun"], "02:00", "02:30")];
    // no flip on 2026-03-29; next Sunday 02:00 CEST = 00:00Z
    expect(at(w, "2026-03-29T00:30:00Z")).toEqual(outside("2026-04-05T00:00:00.000Z"));
    expect(at(w, "2026-03-29T01:00:00Z")).toEqual(outside("2026-04-05T00:00:00.000Z"));
    // the Sunday before it was an ordinary hour: 02:00-02:30 CET = 01:00Z-01:30Z
    expect(at(w, "2026-03-22T01:15:00Z")).toEqual(inside("2026-03-22T01:30:00.000Z"));
  });

  it("spring: a whole day starting in the gap runs to the same wall time next day", () => {
    const w = [berlin(["sun"], "02:30", "02:30")]; // 01:00Z → Mon 02:30 CEST = 00:30Z
    expect(at(w, "2026-03-29T01:00:00.000Z")).toEqual(inside("2026-03-30T00:30:00.000Z"));
    expect(at(w, "2026-03-30T00:29:59.999Z")).toEqual(inside("2026-03-30T00:30:00.000Z"));
    expect(at(w, "2026-03-30T00:30:00.000Z")).toEqual(outside("2026-04-05T00:30:00.000Z"));
  });

  it("spring: a whole day over the change lasts 23 hours", () => {
    const w = [berlin(["sat"], "12:00", "12:00")]; // Sat 11:00Z → Sun 12:00 CEST = 10:00Z
    expect(at(w, "2026-03-28T11:00:00.000Z")).toEqual(inside("2026-03-29T10:00:00.000Z"));
    expect(at(w, "2026-03-29T09:59:59.999Z")).toEqual(inside("2026-03-29T10:00:00.000Z"));
    expect(at(w, "2026-03-29T10:00:00.000Z")).toEqual(outside("2026-04-04T10:00:00.000Z"));
  });

  it("autumn: a start inside the overlap is its first (CEST) occurrence", () => {
    const w = [berlin(["sun"], "02:30", "03:00")]; // 00:30Z → 03:00 CET = 02:00Z
    expect(at(w, "2026-10-25T00:29:59.999Z")).toEqual(outside("2026-10-25T00:30:00.000Z"));
    expect(at(w, "2026-10-25T00:30:00.000Z")).toEqual(inside("2026-10-25T02:00:00.000Z"));
    // 02:30 CET (the second 02:30) is still inside
    expect(at(w, "2026-10-25T01:30:00.000Z")).toEqual(inside("2026-10-25T02:00:00.000Z"));
    // next Sunday 02:30 CET = 01:30Z
    expect(at(w, "2026-10-25T02:00:00.000Z")).toEqual(outside("2026-11-01T01:30:00.000Z"));
  });

  it("autumn: an end inside the overlap is its first occurrence", () => {
    const w = [berlin(["sat"], "23:00", "02:30")]; // Sat 23:00 CEST = 21:00Z → 00:30Z
    expect(at(w, "2026-10-25T00:29:59.999Z")).toEqual(inside("2026-10-25T00:30:00.000Z"));
    expect(at(w, "2026-10-25T00:45:00.000Z")).toEqual(outside("2026-10-31T22:00:00.000Z"));
    // 02:15 CET (second occurrence, before the wall clock reads 02:30 again): outside
    expect(at(w, "2026-10-25T01:15:00.000Z")).toEqual(outside("2026-10-31T22:00:00.000Z"));
  });

  it("autumn: a whole calendar day over the change lasts 25 hours", () => {
    const w = [berlin(["sun"], "00:00", "00:00")]; // Sat 22:00Z → Sun 23:00Z
    expect(at(w, "2026-10-24T21:59:59.999Z")).toEqual(outside("2026-10-24T22:00:00.000Z"));
    expect(at(w, "2026-10-24T22:00:00.000Z")).toEqual(inside("2026-10-25T23:00:00.000Z"));
    expect(at(w, "2026-10-25T22:59:59.999Z")).toEqual(inside("2026-10-25T23:00:00.000Z"));
  });

  it("autumn: a whole day starting in the overlap starts at the first occurrence", () => {
    const w = [berlin(["sun"], "02:00", "02:00")]; // 00:00Z → Mon 02:00 CET = 01:00Z
    expect(at(w, "2026-10-24T23:59:59.999Z")).toEqual(outside("2026-10-25T00:00:00.000Z"));
    expect(at(w, "2026-10-25T00:00:00.000Z")).toEqual(inside("2026-10-26T01:00:00.000Z"));
  });
});

describe("scheduleState: DST in America/New_York", () => {
  const ny = (days: readonly Weekday[], start: string, end: string) =>
    win(days, start, end, "America/New_York");

  it("spring: a start in the gap moves to 03:00 EDT", () => {
    const w = [ny(["sun"], "02:15", "05:00")]; // 07:00Z → 05:00 EDT = 09:00Z
    expect(at(w, "2026-03-08T06:59:59.999Z")).toEqual(outside("2026-03-08T07:00:00.000Z"));
    expect(at(w, "2026-03-08T07:00:00.000Z")).toEqual(inside("2026-03-08T09:00:00.000Z"));
  });

  it("spring: an end in the gap moves to 03:00 EDT", () => {
    const w = [ny(["sat"], "23:00", "02:30")]; // Sat 23:00 EST = Sun 04:00Z → 07:00Z
    expect(at(w, "2026-03-08T03:59:59.999Z")).toEqual(outside("2026-03-08T04:00:00.000Z"));
    expect(at(w, "2026-03-08T06:59:59.999Z")).toEqual(inside("2026-03-08T07:00:00.000Z"));
    expect(at(w, "2026-03-08T07:00:00.000Z")).toEqual(outside("2026-03-15T03:00:00.000Z"));
  });

  it("autumn: an end just after the overlap includes the repeated hour", () => {
    const w = [ny(["sun"], "01:30", "02:00")]; // 01:30 EDT = 05:30Z → 02:00 EST = 07:00Z
    expect(at(w, "2026-11-01T05:15:00.000Z")).toEqual(outside("2026-11-01T05:30:00.000Z"));
    expect(at(w, "2026-11-01T05:30:00.000Z")).toEqual(inside("2026-11-01T07:00:00.000Z"));
    // 01:15 EST, the second 01:15: inside
    expect(at(w, "2026-11-01T06:15:00.000Z")).toEqual(inside("2026-11-01T07:00:00.000Z"));
  });

  it("autumn: a window inside the overlap counts its first occurrence only", () => {
    const w = [ny(["sun"], "01:00", "01:30")]; // 05:00Z-05:30Z (EDT)
    expect(at(w, "2026-11-01T05:10:00.000Z")).toEqual(inside("2026-11-01T05:30:00.000Z"));
    // 01:10 EST: outside; next Sunday 01:00 EST = 06:00Z
    expect(at(w, "2026-11-01T06:10:00.000Z")).toEqual(outside("2026-11-08T06:00:00.000Z"));
  });
});

describe("scheduleState: DST in the southern hemisphere", () => {
  const syd = (days: readonly Weekday[], start: string, end: string) =>
    win(days, start, end, "Australia/Sydney");

  it("Sydney October (spring): a start in the gap moves to 03:00 AEDT", () => {
    const w = [syd(["sun"], "02:30", "06:00")]; // Oct 3 16:00Z → 06:00 AEDT = 19:00Z
    expect(at(w, "2026-10-03T15:59:59.999Z")).toEqual(outside("2026-10-03T16:00:00.000Z"));
    expect(at(w, "2026-10-03T16:00:00.000Z")).toEqual(inside("2026-10-03T19:00:00.000Z"));
  });

  it("Sydney April (autumn): a start in the overlap is the AEDT occurrence", () => {
    const w = [syd(["sun"], "02:30", "03:00")]; // 15:30Z → 03:00 AEST = 17:00Z
    expect(at(w, "2026-04-04T15:29:59.999Z")).toEqual(outside("2026-04-04T15:30:00.000Z"));
    expect(at(w, "2026-04-04T16:30:00.000Z")).toEqual(inside("2026-04-04T17:00:00.000Z"));
  });

  it("Sydney April: an end in the overlap excludes the second occurrence", () => {
    const w = [syd(["sat"], "22:00", "02:30")]; // 22:00 AEDT = 11:00Z → 15:30Z
    expect(at(w, "2026-04-04T15:29:59.999Z")).toEqual(inside("2026-04-04T15:30:00.000Z"));
    // 02:15 AEST: outside; next Saturday 22:00 AEST = 12:00Z
    expect(at(w, "2026-04-04T16:15:00.000Z")).toEqual(outside("2026-04-11T12:00:00.000Z"));
  });

  it("Santiago: a window ending at midnight includes the repeated Saturday hour", () => {
    // DST ends Sat 2026-04-04 24:00 -03 → 23:00 -04: Sat 23:00 -03 = 02:00Z; Sunday 00:00 is
    // first reached at 00:00 -04 = 04:00Z
    const w = [win(["sat"], "23:00", "00:00", "America/Santiago")];
    expect(at(w, "2026-04-05T01:59:59.999Z")).toEqual(outside("2026-04-05T02:00:00.000Z"));
    expect(at(w, "2026-04-05T03:30:00.000Z")).toEqual(inside("2026-04-05T04:00:00.000Z"));
    // next Saturday 23:00 -04 = 03:00Z
    expect(at(w, "2026-04-05T04:00:00.000Z")).toEqual(outside("2026-04-12T03:00:00.000Z"));
  });

  it("Santiago: a Sunday window starting at the missing midnight starts at 01:00", () => {
    // DST starts Sun 2026-09-06 00:00 -04 → 01:00 -03 (04:00Z)
    const ws = [
      win(["sat"], "20:00", "00:00", "America/Santiago"), // Sep 6 00:00Z → 04:00Z
      win(["sun"], "00:00", "06:00", "America/Santiago"), // 04:00Z → 06:00 -03 = 09:00Z
    ];
    expect(at(ws, "2026-09-06T00:00:00.000Z")).toEqual(inside("2026-09-06T09:00:00.000Z"));
    expect(at(ws.slice(1), "2026-09-06T03:59:59.999Z")).toEqual(
      outside("2026-09-06T04:00:00.000Z"),
    );
  });
});

describe("scheduleState: a clock that falls back across midnight (St. John's, 2010)", () => {
  // America/St_Johns switched at 00:01: on 2010-11-07 at 02:31Z the wall clock went from
  // Sun 00:00:59 NDT (-2:30) back to Sat 23:01 NST (-3:30); on 2010-03-14 at 03:31Z from
  // Sun 00:00:59 NST to 01:01 NDT.
  const stj = (days: readonly Weekday[], start: string, end: string) =>
    win(days, start, end, "America/St_Johns");

  it("a Sunday window that began before the clock fell back to Saturday stays inside", () => {
    const w = [stj(["sun"], "00:00", "01:00")]; // Sun 00:00 NDT = 02:30Z → Sun 01:00 NST = 04:30Z
    expect(at(w, "2010-11-07T02:29:59.999Z")).toEqual(outside("2010-11-07T02:30:00.000Z"));
    // 03:00Z reads Saturday 23:29 NST, yet Sunday's window began at 02:30Z
    expect(at(w, "2010-11-07T03:00:00.000Z")).toEqual(inside("2010-11-07T04:30:00.000Z"));
    expect(at(w, "2010-11-07T04:29:59.999Z")).toEqual(inside("2010-11-07T04:30:00.000Z"));
  });

  it("a start in the 00:01 gap moves to 01:01 NDT", () => {
    const w = [stj(["sun"], "00:30", "02:00")]; // 03:31Z → 02:00 NDT = 04:30Z
    expect(at(w, "2010-03-14T03:30:59.999Z")).toEqual(outside("2010-03-14T03:31:00.000Z"));
    expect(at(w, "2010-03-14T03:31:00.000Z")).toEqual(inside("2010-03-14T04:30:00.000Z"));
  });
});

/**
 * An independent brute-force model: UTC offsets sampled every hour straight from Intl
 * (`timeZoneName: "longOffset"`; every transition of these zones falls on the hour), wall
 * time of every minute, "first instant whose wall time is >= w" by scanning, and membership
 * minute by minute. It shares nothing with the implementation.
 */
function bruteForce(windows: readonly ScheduleWindow[], fromMs: number, toMs: number) {
  const MIN = 60_000;
  const HOUR = 3_600_000;
  const DAY = 86_400_000;
  const scanFrom = fromMs - 3 * DAY;
  const scanTo = toMs + 10 * DAY;
  const n = (scanTo - scanFrom) / MIN;
  const intervals: [number, number][] = [];
  const wallByZone = new Map<string, Float64Array>();
  for (const w of windows) {
    let walls = wallByZone.get(w.tz);
    if (walls === undefined) {
      const fmt = new Intl.DateTimeFormat("en-US", { timeZone: w.tz, timeZoneName: "longOffset" });
      walls = new Float64Array(n);
      let offset = 0;
      for (let k = 0; k < n; k++) {
        const t = scanFrom + k * MIN;
        if (k % 60 === 0) {
          const name = fmt.formatToParts(t).find((p) => p.type === "timeZoneName")?.value ?? "";
          const m = /^GMT(?:([+-])(\d\d):(\d\d))?$/.exec(name);
          if (m === null) throw new Error(`unexpected offset ${name}`);
          offset =
            m[1] === undefined
              ? 0
              : (m[1] === "-" ? -1 : 1) * (Number(m[2]) * HOUR + Number(m[3]) * MIN);
        }
        walls[k] = t + offset;
      }
      wallByZone.set(w.tz, walls);
    }
    const firstAtOrAfter = (wall: number): number | undefined => {
      for (let k = 0; k < n; k++) if ((walls[k] ?? 0) >= wall) return scanFrom + k * MIN;
      return undefined;
    };
    const [sh, sm] = w.start.split(":").map(Number) as [number, number];
    const [eh, em] = w.end.split(":").map(Number) as [number, number];
    const s = sh * HOUR + sm * MIN;
    const e = eh * HOUR + em * MIN;
    const firstDay = Math.floor((walls[0] ?? 0) / DAY) - 1;
    const lastDay = Math.floor((walls[n - 1] ?? 0) / DAY);
    for (let day = firstDay; day <= lastDay; day++) {
      const weekday = ALL[(((day + 3) % 7) + 7) % 7] as Weekday;
      if (!w.days.includes(weekday)) continue;
      const start = firstAtOrAfter(day * DAY + s);
      const end = firstAtOrAfter((e > s ? day : day + 1) * DAY + e);
      if (start !== undefined && end !== undefined && start < end) intervals.push([start, end]);
    }
  }
  const isInside = (t: number) => intervals.some(([a, b]) => a <= t && t < b);
  return { isInside, scanTo };
}

describe("scheduleState agrees minute by minute with a brute-force model around DST changes", () => {
  const schedule: ScheduleWindow[] = [
    berlin(["sat"], "01:45", "02:45"),
    berlin(["sun"], "02:30", "02:15"),
    win(["sun"], "01:30", "01:30", "America/New_York"),
    win(["sat", "sun"], "02:30", "03:00", "America/New_York"),
    win(["sun"], "02:30", "03:00", "Australia/Sydney"),
    win(["sat"], "23:30", "02:15", "Australia/Sydney"),
  ];
  const changes = [
    "2026-03-08T07:00:00Z",
    "2026-03-29T01:00:00Z",
    "2026-04-04T16:00:00Z",
    "2026-10-03T16:00:00Z",
    "2026-10-25T01:00:00Z",
    "2026-11-01T06:00:00Z",
  ];
  for (const change of changes) {
    it(`within a day of ${change}`, () => {
      const c = Date.parse(change);
      const from = c - 86_400_000;
      const to = c + 86_400_000;
      const model = bruteForce(schedule, from, to);
      let flips = 0;
      for (let t = from; t <= to; t += 60_000) {
        const got = scheduleState(schedule, t);
        const want = model.isInside(t);
        expect(got.inside, new Date(t).toISOString()).toBe(want);
        let next = t + 60_000;
        while (next < model.scanTo && model.isInside(next) === want) next += 60_000;
        expect(next < model.scanTo, "model found a flip").toBe(true);
        expect(
          got.nextChangeMs === null ? null : new Date(got.nextChangeMs).toISOString(),
          new Date(t).toISOString(),
        ).toBe(new Date(next).toISOString());
        if (next <= to) flips++;
        // one millisecond before a flip is still on the old side
        expect(scheduleState(schedule, next - 1).inside).toBe(want);
      }
      expect(flips).toBeGreaterThan(0);
    });
  }
});
