import { describe, expect, it } from "vitest";
import { EMPTY_HISTORY, HOLD_MS, plan } from "../../fleet/planner.ts";
import type { FleetAction, FleetPolicy, FleetView, Proposal } from "../../fleet/types.ts";
import { ASLEEP, CAPS, measured, miner, policy, reading, state, T0, view } from "./fixtures.ts";

/** The fleet planner alone, without I/O: every rule of fleet/planner.ts, as plans. */

const run = (p: FleetPolicy, v: FleetView, proposals: Proposal[] = [], history = EMPTY_HISTORY) =>
  plan(p, v, T0, { history, proposals });
const kinds = (as: FleetAction[]) =>
  as.map(
    (a) =>
      `${a.kind} ${a.miner}${"mode" in a ? ` ${a.mode}` : ""}${a.kind === "setPowerTarget" ? ` ${a.watts}` : ""}`,
  );
const DENIED = policy({ mining: { allow: false, reasons: ["rules.schedule_outside"] } });
const lowCaps = { ...CAPS, powerModes: ["normal", "low"] as const };
const s9 = miner("s9", {
  capabilities: { ...CAPS, sleep: "no" },
  nameplateW: 1400,
  nameplateJth: 100,
});

describe("pool slots", () => {
  it("repairs drift with setPools first, exactly the agent's endpoints with the worker", () => {
    const a = miner("a");
    const r = reading(a, T0, {
      pools: [
        { index: 0, url: "stratum+tcp://other:3333", user: "x", status: "alive", active: true },
      ],
    });
    const p = run(DENIED, view([[a, state(r)]]));
    expect(p.actions).toEqual([
      {
        miner: "a",
        kind: "setPools",
        slots: [
          { url: "stratum+tcp://10.0.0.2:3333", user: "owner.a", password: "x" },
          { url: "stratum+tcp://10.0.0.3:3333", user: "owner.a", password: "x" },
        ],
        why: "slots drifted from the agent's endpoints",
      },
    ]);
  });

  it("leaves matching slots alone, and notes a not_owned miner may hash elsewhere", () => {
    const a = miner("a");
    const n = miner("n", { slots: "not_owned", capabilities: { ...CAPS, pools: "not_owned" } });
    const r = reading(n, T0, { pools: [] });
    const p = run(
      policy(),
      view([
        [a, state(reading(a, T0))],
        [n, state(r)],
      ]),
    );
    expect(p.actions).toEqual([]);
    expect(p.notes).toContain("n: may hash elsewhere when denied");
  });
});

describe("mining denied", () => {
  it("sleeps every miner that can; a stock S9 keeps the agent's slots and idles", () => {
    const a = miner("a");
    const b = miner("b");
    const p = run(
      DENIED,
      view([
        [a, state(reading(a, T0))],
        [b, state(reading(b, T0, ASLEEP))],
        [s9, state(reading(s9, T0))],
      ]),
    );
    expect(kinds(p.actions)).toEqual(["sleep a"]);
    expect(p.actions[0]?.why).toBe("mining denied: rules.schedule_outside");
    expect(p.notes).toContain("s9: cannot sleep, idles on the agent's slots");
  });

  it("never acts on a miner with a pending action", () => {
    const a = miner("a");
    const pending: FleetAction[] = [{ miner: "a", kind: "wake", why: "" }];
    const p = run(DENIED, view([[a, state(reading(a, T0), { pending })]]));
    expect(p.actions).toEqual([]);
    expect(p.notes).toContain("a: waiting for wake");
  });

  it("allowed again: wakes every sleeper when there is no cap", () => {
    const a = miner("a");
    const b = miner("b");
    const p = run(
      policy(),
      view([
        [a, state(reading(a, T0, ASLEEP))],
        [b, state(reading(b, T0, ASLEEP))],
      ]),
    );
    expect(kinds(p.actions)).toEqual(["wake a", "wake b"]);
  });
});

describe("schedule windows", () => {
  it("never wakes before a window opens", () => {
    const a = miner("a");
    const p = run(
      { ...DENIED, nextChangeAt: T0 + 60_000, allowAfterNextChange: true },
      view([[a, state(reading(a, T0, ASLEEP))]]),
    );
    expect(p.actions).toEqual([]);
    expect(p.notes).toContain(
      `mining allowed from ${new Date(T0 + 60_000).toISOString()}: nothing wakes before`,
    );
  });

  it("sleeps at a window's end even before the decision caught up", () => {
    const a = miner("a");
    const p = run(
      policy({ nextChangeAt: T0, allowAfterNextChange: false }),
      view([[a, state(reading(a, T0))]]),
    );
    expect(kinds(p.actions)).toEqual(["sleep a"]);
    expect(p.actions[0]?.why).toBe("the schedule window closed");
  });
});

describe("max watts", () => {
  const fleet = () => {
    const lo = miner("lo", { capabilities: lowCaps, nameplateJth: 21 });
    const bad = miner("bad", { nameplateJth: 38 });
    const good = miner("good", { nameplateJth: 20 });
    return {
      lo,
      bad,
      good,
      v: (over = 0) =>
        view([
          [lo, state(reading(lo, T0, { power: measured(3000 + over) }))],
          [bad, state(reading(bad, T0, { power: measured(3000) }))],
          [good, state(reading(good, T0, { power: measured(3000) }))],
        ]),
    };
  };

  it("throttles first where the firmware can, when that is enough", () => {
    const { v } = fleet();
    // 9300 W measured, aim 5% under 9200 W (8740 W): low mode's assumed 660 W is enough.
    const p = run(policy({ maxWatts: 9200 }), v(300));
    expect(kinds(p.actions)).toEqual(["setPowerMode lo low"]);
  });

  it("then sleeps the least efficient until under", () => {
    const { v } = fleet();
    const p = run(policy({ maxWatts: 6500 }), v());
    expect(kinds(p.actions)).toEqual(["setPowerMode lo low", "sleep bad"]);
  });

  it("does nothing under the cap, and wakes nothing without measured power", () => {
    const { v } = fleet();
    expect(run(policy({ maxWatts: 9500 }), v()).actions).toEqual([]);
    const a = miner("a");
    const p = run(
      policy({ maxWatts: 9500 }),
      view([
        [a, state(reading(a, T0, ASLEEP))],
        [s9, state(reading(s9, T0))],
      ]),
    );
    expect(p.actions).toEqual([]);
    expect(p.notes.join()).toMatch(/measured power unknown \(fleet.watts_uncovered: s9\)/);
  });

  it("wakes one miner per plan, most efficient first, only with headroom for its nameplate", () => {
    const on = miner("on");
    const s = (id: string, jth: number) => miner(id, { nameplateJth: jth });
    const [x, y, z] = [s("x", 30), s("y", 20), s("z", 25)];
    const v = view([
      [on, state(reading(on, T0, { power: measured(1000) }))],
      ...[x, y, z].map(
        (m) =>
          [m, state(reading(m, T0, { ...ASLEEP, power: measured(0) }))] as [
            typeof m,
            ReturnType<typeof state>,
          ],
      ),
    ]);
    expect(kinds(run(policy({ maxWatts: 10_000 }), v).actions)).toEqual(["wake y"]);
    // 3000 W nameplate + 5% of 4100 W: 3205 W of headroom needed, 3100 W is not enough.
    expect(run(policy({ maxWatts: 4100 }), v).actions).toEqual([]);
  });

  it("holds a miner slept for power for 10 minutes", () => {
    const a = miner("a");
    const v = view([[a, state(reading(a, T0, { ...ASLEEP, power: measured(0) }))]]);
    const history = { miners: { a: { changedAt: T0 - HOLD_MS + 1, targetLowered: false } } };
    expect(run(policy({ maxWatts: 10_000 }), v, [], history).actions).toEqual([]);
    const later = plan(policy({ maxWatts: 10_000 }), v, T0 + 1, { history });
    expect(kinds(later.actions)).toEqual(["wake a"]);
    expect(later.history.miners.a?.changedAt).toBe(T0 + 1);
  });
});

describe("max temp", () => {
  const hot = (t: number) => [{ index: 1, hashrateGhs: 1, chips: 1, pcbTempC: [], chipTempC: [t] }];
  it("throttles a unit within 3 °C, sleeps one above the cap, leaves a cool one", () => {
    const warm = miner("warm", { capabilities: lowCaps });
    const over = miner("over");
    const cool = miner("cool", { capabilities: lowCaps });
    const p = run(
      policy({ maxTempC: 85 }),
      view([
        [warm, state(reading(warm, T0, { boards: hot(83) }))],
        [over, state(reading(over, T0, { boards: hot(88) }))],
        [cool, state(reading(cool, T0, { boards: hot(70) }))],
      ]),
    );
    expect(kinds(p.actions).sort()).toEqual(["setPowerMode warm low", "sleep over"]);
  });

  it("lowers a power target when that is what the firmware has", () => {
    const t = miner("t", { capabilities: { ...CAPS, powerTarget: { minW: 1000, maxW: 3500 } } });
    const p = run(
      policy({ maxTempC: 85 }),
      view([[t, state(reading(t, T0, { boards: hot(84), power: measured(3000) }))]]),
    );
    expect(kinds(p.actions)).toEqual(["setPowerTarget t 2400"]);
    expect(p.history.miners.t?.targetLowered).toBe(true);
  });
});

describe("proposals", () => {
  it("honours a sleep and a lower cap; refuses a higher cap and a wake, naming the source", () => {
    const a = miner("a");
    const b = miner("b");
    const v = view([
      [a, state(reading(a, T0, { power: measured(3000) }))],
      [b, state(reading(b, T0, { power: measured(3000) }))],
    ]);
    const p = run(policy({ maxWatts: 7000 }), v, [
      { source: "ps", sleep: ["a"] },
      { source: "greedy", maxWatts: 9000 },
    ]);
    expect(kinds(p.actions)).toEqual(["sleep a"]);
    expect(p.notes).toContain(
      "proposal from greedy refused: maxWatts 9000 W is above the consent's 7000 W",
    );
    const lower = run(policy({ maxWatts: 7000 }), v, [{ source: "ps", maxWatts: 4000 }]);
    expect(kinds(lower.actions)).toEqual(["sleep a"]);
    const waker = { source: "rogue", wake: ["a"] } as unknown as Proposal;
    const asleep = view([[a, state(reading(a, T0, ASLEEP))]]);
    const w = run(DENIED, asleep, [waker]);
    expect(w.actions).toEqual([]);
    const allowed = run(policy(), asleep, [{ source: "ps", sleep: "*" }, waker]);
    expect(allowed.actions).toEqual([]);
    expect(allowed.notes).toContain(
      "proposal from rogue refused: wake (a proposal may only ask for less)",
    );
  });
});
