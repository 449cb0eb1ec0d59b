import { describe, expect, it } from "vitest";
import { type DataPathView, nextEvent } from "../../agent/state-follower.ts";
import { type AgentState, transition } from "../../agent/state-machine.ts";

const allowed: DataPathView = {
  allow: true,
  reasons: [],
  assigned: false,
  sharesAccepted: false,
};
const denied = (...reasons: string[]): DataPathView => ({ ...allowed, allow: false, reasons });

/** Applies events until none is left, as the daemon does. */
function settle(state: AgentState, v: DataPathView): AgentState[] {
  const path: AgentState[] = [state];
  for (let s = state, e = nextEvent(s, v); e !== null; e = nextEvent(s, v)) {
    const t = transition(s, e);
    if (!t.ok) throw new Error(t.reason);
    s = t.to;
    path.push(s);
    if (path.length > 10) throw new Error("does not settle");
  }
  return path;
}

describe("the state follows the data path (BRIEF section 6)", () => {
  it("climbs POLICY_SYNCED → ELIGIBLE → ASSIGNED → MINING as the data path comes up", () => {
    expect(settle("POLICY_SYNCED", allowed)).toEqual(["POLICY_SYNCED", "ELIGIBLE"]);
    expect(settle("POLICY_SYNCED", { ...allowed, assigned: true })).toEqual([
      "POLICY_SYNCED",
      "ELIGIBLE",
      "ASSIGNED",
    ]);
    expect(settle("POLICY_SYNCED", { ...allowed, assigned: true, sharesAccepted: true })).toEqual([
      "POLICY_SYNCED",
      "ELIGIBLE",
      "ASSIGNED",
      "MINING",
    ]);
  });

  it("pauses for the schedule, power, temperature or the operator, and resumes", () => {
    for (const r of [
      "rules.schedule_outside",
      "rules.max_watts_exceeded",
      "rules.max_temp_exceeded",
      "agent.paused",
    ]) {
      expect(settle("MINING", denied(r)), r).toEqual(["MINING", "PAUSED"]);
      expect(settle("ASSIGNED", denied(r)), r).toEqual(["ASSIGNED", "PAUSED"]);
    }
    expect(settle("PAUSED", denied("agent.paused", "rules.schedule_outside"))).toEqual(["PAUSED"]);
    expect(settle("PAUSED", { ...allowed, assigned: true })).toEqual(["PAUSED", "MINING"]);
  });

  it("any other denial goes back to POLICY_SYNCED, also from PAUSED and mixed with a pause", () => {
    for (const s of ["ELIGIBLE", "ASSIGNED", "MINING", "PAUSED"] as const) {
      expect(settle(s, denied("publication.offline_grace_exceeded")), s).toEqual([
        s,
        "POLICY_SYNCED",
      ]);
    }
    expect(settle("MINING", denied("agent.paused", "agent.audit_unwritable"))).toEqual([
      "MINING",
      "POLICY_SYNCED",
    ]);
    // an ELIGIBLE machine has nothing to pause: a pause makes it ineligible
    expect(settle("ELIGIBLE", denied("agent.paused"))).toEqual(["ELIGIBLE", "POLICY_SYNCED"]);
  });

  it("losing the assignment goes back to POLICY_SYNCED, then ELIGIBLE until a new one comes", () => {
    expect(settle("MINING", allowed)).toEqual(["MINING", "POLICY_SYNCED", "ELIGIBLE"]);
    expect(settle("ASSIGNED", allowed)).toEqual(["ASSIGNED", "POLICY_SYNCED", "ELIGIBLE"]);
  });

  it("never moves out of the states documents own", () => {
    for (const s of [
      "UNREGISTERED",
      "REGISTERED",
      "ATTESTED",
      "REVOKED",
      "QUARANTINED",
      "TERMINATED",
    ] as const) {
      expect(nextEvent(s, { ...allowed, assigned: true, sharesAccepted: true }), s).toBeNull();
      expect(nextEvent(s, denied("consent.revoked")), s).toBeNull();
    }
  });

  it("a denial without reasons is not a pause", () => {
    expect(nextEvent("MINING", denied())).toBe("ineligible");
  });
});
