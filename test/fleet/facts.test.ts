import { describe, expect, it } from "vitest";
import { fleetFacts } from "../../fleet/facts.ts";
import { ASLEEP, estimated, measured, meter, miner, reading, state, T0, view } from "./fixtures.ts";

/** The fleet's watts and temp_c facts (fleet/facts.ts): every rule, each able to fail. */

const IV = 15_000;
const a = miner("a");
const b = miner("b");
const c = miner("c");

describe("watts", () => {
  it("sums each meter once and measured firmware power, dated by the oldest reading", () => {
    const v = view(
      [
        [a, state(reading(a, T0 - 5_000))],
        [b, state(reading(b, T0 - 1_000))],
        [c, state(reading(c, T0 - 2_000, { power: measured(1200) }))],
      ],
      [meter("m1", ["a", "b"], 6100, T0 - 9_000)],
    );
    const f = fleetFacts(v, T0, IV);
    expect(f.watts).toEqual({
      value: 7300,
      source: "measured",
      at: new Date(T0 - 9_000).toISOString(),
    });
    expect(f.reasons).toEqual([]);
  });

  it("counts a miner with both a meter and measured firmware power once (the meter's)", () => {
    const v = view(
      [[a, state(reading(a, T0, { power: measured(3000) }))]],
      [meter("m1", ["a"], 3100, T0)],
    );
    expect(fleetFacts(v, T0, IV).watts?.value).toBe(3100);
  });

  it("counts a miner in two meters' feeds once: the meter with more feeds, the other left out", () => {
    const v = view(
      [
        [a, state(reading(a, T0))],
        [b, state(reading(b, T0))],
      ],
      [meter("sub", ["a"], 3000, T0), meter("main", ["a", "b"], 6200, T0)],
    );
    expect(fleetFacts(v, T0, IV).watts?.value).toBe(6200);
  });

  it("is absent, naming the uncovered miners, when an awake miner is estimated or unmeasured", () => {
    const v = view([
      [a, state(reading(a, T0, { power: estimated(3000) }))],
      [b, state(reading(b, T0))],
      [c, state(reading(c, T0, { power: measured(1000) }))],
    ]);
    const f = fleetFacts(v, T0, IV);
    expect(f.watts).toBeUndefined();
    expect(f.reasons).toContain("fleet.watts_uncovered: a, b");
  });

  it("does not need a measurement for a miner confirmed asleep, but does for sleep still hashing", () => {
    const asleep = view([
      [a, state(reading(a, T0, ASLEEP))],
      [b, state(reading(b, T0, { power: measured(900) }))],
    ]);
    expect(fleetFacts(asleep, T0, IV).watts?.value).toBe(900);
    const lying = view([
      [a, state(reading(a, T0, { mode: "sleep", hashrateGhs: 50 }))],
      [b, state(reading(b, T0, { power: measured(900) }))],
    ]);
    expect(fleetFacts(lying, T0, IV).reasons).toContain("fleet.watts_uncovered: a");
  });

  it("leaves a failed or stale meter's miners uncovered", () => {
    const failed = { ...meter("m1", ["a"], 3000, T0 - 1000), lastError: { code: "E", at: T0 } };
    const stale = meter("m2", ["b"], 3000, T0 - 61_000);
    const v = view(
      [
        [a, state(reading(a, T0))],
        [b, state(reading(b, T0))],
      ],
      [failed, stale],
    );
    const f = fleetFacts(v, T0, 60_000);
    expect(f.watts).toBeUndefined();
    expect(f.reasons).toContain("fleet.watts_uncovered: a, b");
    expect(f.reasons).toContain("fleet.meter_unread: m1 (E)");
  });
});

describe("fail closed on an unread miner", () => {
  it("a failed read makes both facts absent, naming the miner and code", () => {
    const v = view([
      [
        a,
        state(reading(a, T0 - 2_000, { power: measured(1) }), {
          lastError: { code: "AGENTD_E_MINER_TIMEOUT", message: "", at: T0 - 1_000 },
        }),
      ],
      [b, state(reading(b, T0, { power: measured(1) }))],
    ]);
    const f = fleetFacts(v, T0, IV);
    expect(f.watts).toBeUndefined();
    expect(f.temp_c).toBeUndefined();
    expect(f.reasons).toEqual(["fleet.miner_unread: a (AGENTD_E_MINER_TIMEOUT)"]);
  });

  it("a read older than two intervals is stale; one interval late is not", () => {
    const at = (age: number) =>
      fleetFacts(view([[a, state(reading(a, T0 - age, { power: measured(5) }))]]), T0, IV);
    expect(at(2 * IV).watts?.value).toBe(5);
    expect(at(2 * IV + 1).reasons).toEqual(["fleet.miner_unread: a (stale)"]);
  });

  it("a reading older than the guard's 60 s is never used, whatever the interval", () => {
    const f = fleetFacts(
      view([[a, state(reading(a, T0 - 60_001, { power: measured(5) }))]]),
      T0,
      120_000,
    );
    expect(f.watts).toBeUndefined();
    expect(f.reasons).toEqual(["fleet.miner_unread: a (stale)"]);
  });

  it("a miner never read, and an empty fleet, give no facts", () => {
    expect(fleetFacts(view([[a, state(null)]]), T0, IV).reasons).toEqual([
      "fleet.miner_unread: a (never_read)",
    ]);
    expect(fleetFacts(view([]), T0, IV)).toEqual({ reasons: ["fleet.no_miners"] });
  });
});

describe("temp_c", () => {
  it("is the hottest chip of all readings, dated by the oldest", () => {
    const hot = reading(b, T0 - 3_000, {
      boards: [{ index: 1, hashrateGhs: 1, chips: 1, pcbTempC: [99], chipTempC: [81, 84] }],
    });
    const f = fleetFacts(
      view([
        [a, state(reading(a, T0))],
        [b, state(hot)],
      ]),
      T0,
      IV,
    );
    expect(f.temp_c).toEqual({ max: 84, at: new Date(T0 - 3_000).toISOString() });
  });

  it("is absent when an awake miner reports no chip temperature", () => {
    const f = fleetFacts(view([[a, state(reading(a, T0, { boards: [] }))]]), T0, IV);
    expect(f.temp_c).toBeUndefined();
    expect(f.reasons).toContain("fleet.temp_unreported: a");
  });

  it("is 0 when every miner is asleep and none reports a chip (else the fleet could never wake)", () => {
    const f = fleetFacts(view([[a, state(reading(a, T0, ASLEEP))]]), T0, IV);
    expect(f.temp_c?.max).toBe(0);
  });
});
