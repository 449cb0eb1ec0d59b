import type { Reason } from "../policy-guard/reasons.ts";
import type { AgentEvent, AgentState } from "./state-machine.ts";

/**
 * Which step the state takes next, given what the data path was told and what it does (pure:
 * the daemon applies the event, audited, and asks again until there is none).
 *
 *   allowed, POLICY_SYNCED              → eligible
 *   allowed, ELIGIBLE, assigned         → assigned   (the control plane's signed assignment
 *                                                     for the consent in force: assignment.ts)
 *   allowed, ASSIGNED, a share accepted → mining_started (upstream accepted forwarded work)
 *   allowed, ASSIGNED or MINING, the assignment lost → ineligible (POLICY_SYNCED, then
 *                                                     ELIGIBLE again until a new one comes)
 *   allowed, PAUSED                     → resumed
 *   denied only for a pause reason (schedule, power, temperature, a pause),
 *     in ASSIGNED or MINING             → paused
 *   denied otherwise, in ELIGIBLE, ASSIGNED, MINING or PAUSED → ineligible (POLICY_SYNCED)
 *
 * Revocation, consent renewal, quarantine and decommission come from documents, not from
 * here (daemon.ts).
 */

/** BRIEF section 6: "MINING ⇄ PAUSED (schedule, power or manual)". */
export const PAUSE_REASONS: ReadonlySet<Reason> = new Set<Reason>([
  "rules.schedule_outside",
  "rules.max_watts_exceeded",
  "rules.max_temp_exceeded",
  "agent.paused",
  "agent.paused_remotely",
]);

export interface DataPathView {
  /** The decision with the local holds, except the missing assignment (that is `assigned`). */
  readonly allow: boolean;
  readonly reasons: readonly string[];
  /** A verified assignment for the consent in force (assignment.ts assignmentInForce). */
  readonly assigned: boolean;
  /** Upstream accepted a forwarded share since this machine was assigned. */
  readonly sharesAccepted: boolean;
}

export function nextEvent(state: AgentState, v: DataPathView): AgentEvent | null {
  if (v.allow) {
    switch (state) {
      case "POLICY_SYNCED":
        return "eligible";
      case "ELIGIBLE":
        return v.assigned ? "assigned" : null;
      case "ASSIGNED":
        if (!v.assigned) return "ineligible";
        return v.sharesAccepted ? "mining_started" : null;
      case "MINING":
        return v.assigned ? null : "ineligible";
      case "PAUSED":
        return "resumed";
      default:
        return null;
    }
  }
  const onlyPause = v.reasons.length > 0 && v.reasons.every((r) => PAUSE_REASONS.has(r as Reason));
  switch (state) {
    case "ASSIGNED":
    case "MINING":
      return onlyPause ? "paused" : "ineligible";
    case "ELIGIBLE":
      return "ineligible";
    case "PAUSED":
      return onlyPause ? null : "ineligible";
    default:
      return null;
  }
}
