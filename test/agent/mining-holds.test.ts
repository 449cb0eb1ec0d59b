import { describe, expect, it } from "vitest";
import { holdingGate } from "../../agent/mining-holds.ts";
import type { MiningGateInput } from "../../policy-guard/gates.ts";

const decision = (allow: boolean, reasons: string[] = []): MiningGateInput =>
  ({
    allow,
    reasons,
    upstreams: [{ url: "stratum+tcp://pool:3333", user: "o.rig" }],
    networks: [],
    maxWatts: null,
    maxTempC: null,
    jobClasses: null,
  }) as MiningGateInput;

function recording() {
  const seen: MiningGateInput[] = [];
  return { seen, gate: { name: "proxy", apply: (i: MiningGateInput) => void seen.push(i) } };
}

describe("local holds between the decision and the data path", () => {
  it("pass the decision through untouched while nothing is held", () => {
    const r = recording();
    const g = holdingGate(r.gate);
    const d = decision(true);
    g.apply(d);
    expect(r.seen).toEqual([d]);
    expect(g.effective()).toEqual({ allow: true, reasons: [] });
  });

  it("deny at once when a hold is put on, and give back the decision when it is lifted", () => {
    const r = recording();
    let changes = 0;
    const g = holdingGate(r.gate, () => changes++);
    g.apply(decision(true));
    g.hold("agent.audit_unwritable");
    expect(r.seen.at(-1)).toMatchObject({ allow: false, reasons: ["agent.audit_unwritable"] });
    // the rest of what the gate needs (upstreams) still comes from the decision
    expect(r.seen.at(-1)?.upstreams).toEqual(decision(true).upstreams);
    g.hold("agent.paused");
    expect(g.holds()).toEqual(["agent.audit_unwritable", "agent.paused"]);
    g.release("agent.audit_unwritable");
    expect(r.seen.at(-1)).toMatchObject({ allow: false, reasons: ["agent.paused"] });
    g.release("agent.paused");
    expect(r.seen.at(-1)).toMatchObject({ allow: true, reasons: [] });
    expect(changes).toBe(4);
  });

  it("never allow what the decision denies: releasing keeps the decision's reasons", () => {
    const r = recording();
    const g = holdingGate(r.gate);
    g.hold("agent.paused");
    g.apply(decision(false, ["consent.revoked"]));
    expect(r.seen.at(-1)).toMatchObject({
      allow: false,
      reasons: ["agent.paused", "consent.revoked"],
    });
    g.release("agent.paused");
    expect(r.seen.at(-1)).toMatchObject({ allow: false, reasons: ["consent.revoked"] });
  });

  it("stay closed before the first decision, whatever the holds do", () => {
    const r = recording();
    const g = holdingGate(r.gate);
    g.hold("agent.paused");
    g.release("agent.paused");
    expect(r.seen).toEqual([]);
    expect(g.effective()).toBeNull();
  });

  it("ignore a second hold of the same reason and a release of one not held", () => {
    const r = recording();
    const g = holdingGate(r.gate);
    g.apply(decision(true));
    g.hold("agent.quarantined");
    g.hold("agent.quarantined");
    g.release("agent.paused");
    expect(r.seen).toHaveLength(2);
  });
});
