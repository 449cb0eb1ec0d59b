import type { Reason } from "../policy-guard/reasons.ts";
import type { AgentEvent, AgentState } from "./state-machine.ts";

/**
 * Which step the state takes next, given what the data path was told and what it does (pure:
 * the daemon applies the event, audited, and asks again until there is none).
 *
 *   allowed, POLICY_SYNCED              → eligible
 *   allowed, ELIGIBLE, upstream ready   → assigned   (a session with an allowed pool: work
 *                                                     is assigned to this machine)
 *   allowed, ASSIGNED, a share accepted → mining_started (upstream accepted forwarded work)
 *   allowed, PAUSED                     → resumed
 *   denied only for a pause reason (schedule, power, temperature, the operator),
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
]);

export interface DataPathView {
  readonly allow: boolean;
  readonly reasons: readonly string[];
  /** An upstream session is ready (subscribed and authorized with an allowed pool). */
  readonly upstreamReady: boolean;
  /** Upstream accepted a forwarded share since this machine was assigned. */
  readonly sharesAccepted: boolean;
}

export function nextEvent(state: AgentState, v: DataPathView): AgentEvent | null {
  if (v.allow) {
    switch (state) {
      case "POLICY_SYNCED":
        return "eligible";
      case "ELIGIBLE":
        return v.upstreamReady ? "assigned" : null;
      case "ASSIGNED":
        return v.sharesAccepted ? "mining_started" : null;
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
