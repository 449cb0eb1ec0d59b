import { describe, expect, it } from "vitest";
import { EMPTY_HISTORY, plan } from "../../fleet/planner.ts";
import { priceProposal } from "../../plugins/price-scheduler.ts";
import { measured, miner, policy, reading, state, T0, view } from "../fleet/fixtures.ts";

/** The electricity-price scheduler proposes; the planner honours only less than the consent. */

const HOUR = 3_600_000;
const h0 = T0 - (T0 % HOUR);
const table = {
  hourly: new Map([
    [h0, 0.3],
    [h0 + HOUR, 0.05],
  ]),
  threshold: 0.2,
  cheapMaxWatts: 20_000,
};
const a = miner("a");
const b = miner("b");
const v = (now: number) =>
  view([
    [a, state(reading(a, now, { power: measured(3000) }))],
    [b, state(reading(b, now, { power: measured(3000) }))],
  ]);

describe("price scheduler", () => {
  it("proposes sleeping everything in an expensive hour, and in an unknown one", () => {
    expect(priceProposal(table, T0)).toEqual({ source: "price-scheduler", sleep: "*" });
    expect(priceProposal(table, h0 + 5 * HOUR)).toEqual({ source: "price-scheduler", sleep: "*" });
    const p = plan(policy(), v(T0), T0, {
      history: EMPTY_HISTORY,
      proposals: [priceProposal(table, T0)],
    });
    expect(p.actions.map((x) => `${x.kind} ${x.miner} (${x.why})`)).toEqual([
      "sleep a (asked by price-scheduler)",
      "sleep b (asked by price-scheduler)",
    ]);
  });

  it("its cheap-hour cap above the consent's is refused; the consent's cap holds", () => {
    const now = h0 + HOUR + 60_000;
    const proposal = priceProposal(table, now);
    expect(proposal).toEqual({ source: "price-scheduler", maxWatts: 20_000 });
    const p = plan(policy({ maxWatts: 5000 }), v(now), now, {
      history: EMPTY_HISTORY,
      proposals: [proposal],
    });
    expect(p.notes).toContain(
      "proposal from price-scheduler refused: maxWatts 20000 W is above the consent's 5000 W",
    );
    expect(p.actions.map((x) => x.kind)).toEqual(["sleep"]);
  });
});
