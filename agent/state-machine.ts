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
 * first (`pathTo`), so the log shows the stop before the end. TERMINATED is final.
 *
 * A quarantine has an origin (issue 15). The agent's own clone detection (`clone`) is final
 * short of a decommission: a clone is re-enrolled as a new machine. A quarantine the control
 * plane set (`control_plane`: only its signed `worker.quarantine` command, which the owner's
 * consent allows) must never lock the owner out — the owner's key, not the control plane, is
 * the root of consent — so an owner-signed consent newer than the one in force when it was
 * set clears it: QUARANTINED → POLICY_SYNCED (`quarantine_cleared`, `mayClearQuarantine`).
 * A clone found while a control-plane quarantine is in place replaces it (`requarantines`),
 * so that the owner's next consent cannot clear what is a clone.
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
  "quarantine_cleared",
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
  quarantine_cleared: { from: ["QUARANTINED"], to: "POLICY_SYNCED" },
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

/** Where a quarantine came from: the agent's own clone detection, or the control plane's signed command. */
export const QUARANTINE_ORIGINS = ["clone", "control_plane"] as const;
export type QuarantineOrigin = (typeof QUARANTINE_ORIGINS)[number];

/** What the persisted state keeps about the quarantine in force. */
export interface QuarantineRecord {
  readonly origin: QuarantineOrigin;
  /** The seq of the owner's consent in force when it was set (null: none was). */
  readonly consent_seq: number | null;
}

/**
 * Whether the owner's consent `consentSeq` (verified, in force) clears the quarantine `q`:
 * only one the control plane set, and only by a consent newer than the one in force then. A
 * quarantine whose origin is not known (a state file written before origins were kept) is a
 * clone's: fail closed.
 */
export function mayClearQuarantine(q: QuarantineRecord | null, consentSeq: number): boolean {
  if (q === null || q.origin !== "control_plane") return false;
  return q.consent_seq === null || consentSeq > q.consent_seq;
}

/** Whether a quarantine from `origin` replaces the one in place: a clone's replaces the control plane's. */
export function requarantines(q: QuarantineRecord | null, origin: QuarantineOrigin): boolean {
  return q !== null && q.origin === "control_plane" && origin === "clone";
}

export function isQuarantineOrigin(v: unknown): v is QuarantineOrigin {
  return typeof v === "string" && (QUARANTINE_ORIGINS as readonly string[]).includes(v);
}

/** Mining-related work (the Stratum proxy forwarding, ASICs hashing) only in these. */
export function miningAllowedIn(state: AgentState): boolean {
  return state === "ASSIGNED" || state === "MINING";
}

export function isAgentState(v: unknown): v is AgentState {
  return typeof v === "string" && (AGENT_STATES as readonly string[]).includes(v);
}
