/**
 * The agent's states (../shared/BRIEF.md section 6) as a pure transition table: which event
 * moves which state where. No I/O: agent/agent-state.ts persists and audits what this allows.
 *
 *   UNREGISTERED → REGISTERED → ATTESTED → POLICY_SYNCED → ELIGIBLE → ASSIGNED → MINING
 *   MINING ⇄ PAUSED (schedule, power or manual)
 *   ANY → REVOKED (consent revoked: stop at once)
 *   REVOKED → POLICY_SYNCED only with a newer owner-signed consent
 *   ANY → QUARANTINED (fraud or security signal: a cloned identity, say)
 *   REVOKED | QUARANTINED → TERMINATED (owner-signed decommission: credentials wiped)
 *
 * Two more, which the brief's arrows imply: losing eligibility or the assignment (the policy
 * now denies, the assignment expired) goes back to POLICY_SYNCED from ELIGIBLE, ASSIGNED,
 * MINING or PAUSED; and a decommission arriving in any other state passes through REVOKED
 * first (`pathTo`), so the log shows the stop before the end. TERMINATED is final; so is
 * QUARANTINED short of a decommission (a clone is re-enrolled as a new machine).
 */

import { AGENT_STATES, type AgentState } from "../control-plane/protocol/schemas/heartbeat.ts";

// The states are the wire's (heartbeats carry them): one list, in the protocol's schemas.
export { AGENT_STATES, type AgentState };

export const AGENT_EVENTS = [
  "registered",
  "attested",
  "policy_synced",
  "eligible",
  "assigned",
  "mining_started",
  "paused",
  "resumed",
  "ineligible",
  "revoked",
  "consent_renewed",
  "quarantined",
  "decommissioned",
] as const;
export type AgentEvent = (typeof AGENT_EVENTS)[number];

/** Where the decision allowed mining: losing it (`ineligible`) goes back to POLICY_SYNCED. */
export const ACTIVE_STATES: readonly AgentState[] = ["ELIGIBLE", "ASSIGNED", "MINING", "PAUSED"];
const LIVE: readonly AgentState[] = AGENT_STATES.filter(
  (s) => s !== "TERMINATED" && s !== "QUARANTINED",
);

/** For each event: the states it may happen in, and where it leads. */
const TABLE: Readonly<Record<AgentEvent, { from: readonly AgentState[]; to: AgentState }>> = {
  registered: { from: ["UNREGISTERED"], to: "REGISTERED" },
  attested: { from: ["REGISTERED"], to: "ATTESTED" },
  policy_synced: { from: ["ATTESTED"], to: "POLICY_SYNCED" },
  eligible: { from: ["POLICY_SYNCED"], to: "ELIGIBLE" },
  assigned: { from: ["ELIGIBLE"], to: "ASSIGNED" },
  mining_started: { from: ["ASSIGNED"], to: "MINING" },
  paused: { from: ["MINING", "ASSIGNED"], to: "PAUSED" },
  resumed: { from: ["PAUSED"], to: "MINING" },
  ineligible: { from: ACTIVE_STATES, to: "POLICY_SYNCED" },
  revoked: { from: LIVE.filter((s) => s !== "REVOKED"), to: "REVOKED" },
  consent_renewed: { from: ["REVOKED"], to: "POLICY_SYNCED" },
  quarantined: { from: LIVE, to: "QUARANTINED" },
  decommissioned: { from: ["REVOKED", "QUARANTINED"], to: "TERMINATED" },
};

export type Transition =
  | { readonly ok: true; readonly from: AgentState; readonly to: AgentState }
  | { readonly ok: false; readonly from: AgentState; readonly reason: string };

export function transition(state: AgentState, event: AgentEvent): Transition {
  const rule = TABLE[event];
  if (rule.from.includes(state)) return { ok: true, from: state, to: rule.to };
  return {
    ok: false,
    from: state,
    reason: `${event} cannot happen in ${state} (only in ${rule.from.join(", ")})`,
  };
}

/**
 * The events that lead from `state` through `event`: the event alone, or — for a decommission
 * outside REVOKED and QUARANTINED — `revoked` first. Empty when it cannot happen at all.
 */
export function pathTo(state: AgentState, event: AgentEvent): AgentEvent[] {
  if (transition(state, event).ok) return [event];
  if (event === "decommissioned" && transition(state, "revoked").ok) {
    return ["revoked", "decommissioned"];
  }
  return [];
}

/** Mining-related work (the Stratum proxy forwarding, ASICs hashing) only in these. */
export function miningAllowedIn(state: AgentState): boolean {
  return state === "ASSIGNED" || state === "MINING";
}

export function isAgentState(v: unknown): v is AgentState {
  return typeof v === "string" && (AGENT_STATES as readonly string[]).includes(v);
}
