import type { TimerHandle } from "../lib/timers.ts";
import type { AgentContext } from "./agent-context.ts";
import { consentInForce } from "./assignment.ts";
import type { AssignmentSync } from "./assignment-sync.ts";
import { nextEvent } from "./state-follower.ts";
import { mayClearQuarantine, type QuarantineOrigin } from "./state-machine.ts";

/**
 * Moves the agent's state with what happens (BRIEF section 6; the steps themselves are the pure
 * state-follower.ts): ELIGIBLE while mining is allowed, ASSIGNED once an assignment is in
 * force, MINING once the pool accepted forwarded work, PAUSED for a schedule, power or operator
 * stop, back to POLICY_SYNCED when the decision denies otherwise; POLICY_SYNCED after the first
 * bundle; REVOKED when a revocation covers the consent in force, and POLICY_SYNCED again only
 * with a newer consent; QUARANTINED until the owner's newer consent for a quarantine the
 * control plane set, for good on this enrollment for a clone (state-machine.ts).
 *
 * It follows every change of the data path and the decision (DataPath.onChange), every
 * assignment fetch, and once a second the data path itself (the first share accepted, an
 * assignment expiring: cheap to look at).
 */
export interface StateDriver {
  /** Re-evaluates the state now. */
  follow(why: string): void;
  /** A bundle was accepted: policy synced, a newer consent after a revocation, a new assignment. */
  bundleAccepted(source: string): void;
  /** A revocation was accepted from `source`. */
  revocationAccepted(source: string): void;
  /**
   * Holds mining and quarantines (persisted with its origin): a clone for good on this
   * enrollment (restarts refuse), the control plane's until the owner's newer consent.
   */
  quarantine(why: string, origin: QuarantineOrigin): void;
  stop(): void;
}

const FOLLOW_EVERY_MS = 1_000;

export function startStateDriver(ctx: AgentContext, assignment: AssignmentSync): StateDriver {
  const { dataPath, states, engine } = ctx;
  const accepted = () => dataPath.proxy.accounting.totals.forwardAccepted;
  // Forwarded shares the pool accepted when the machine was assigned: MINING after more.
  let acceptedAtAssign = accepted();
  /** Whether a revocation covers the consent in force (one of older consents does not). */
  const consentRevoked = () => engine.documents().consentReasons.includes("consent.revoked");

  const follow = (why: string) => {
    // A new consent makes the assignment of the old one count no more, at once.
    assignment.apply();
    for (let step = 0; step < 4; step++) {
      const e = dataPath.effective();
      // Eligibility is the decision with the other holds; the assignment is its own step.
      const others = e.reasons.filter((r) => r !== "agent.unassigned");
      const event = nextEvent(states.current().state, {
        allow: e.allow || (e.reasons.length > 0 && others.length === 0),
        reasons: others,
        assigned: assignment.assigned(),
        sharesAccepted: accepted() > acceptedAtAssign,
      });
      if (event === null) break;
      if (event === "assigned") acceptedAtAssign = accepted();
      const a = assignment.current();
      const detail =
        event === "assigned"
          ? `assigned to ${a?.upstream.url ?? "a pool"} as ${a?.upstream.user ?? "?"}`
          : event === "mining_started"
            ? "the pool accepted forwarded work"
            : event === "ineligible" && others.length === 0
              ? `${why}: no assignment in force`
              : others.length === 0
                ? why
                : `${why}: ${others.join(", ")}`;
      if (!states.move(event, detail)) break;
    }
    const now = dataPath.effective();
    ctx.metrics.decision(now.allow, now.reasons);
  };

  /**
   * The owner's consent in force clears a quarantine the control plane set when it is newer
   * than the one in force then (state-machine.ts): the owner, not the control plane, decides
   * whether this machine may work again.
   */
  const clearQuarantine = (source: string) => {
    const s = states.current();
    const c = consentInForce(engine);
    if (s.state !== "QUARANTINED" || c === null) return;
    const q = s.quarantine ?? null;
    if (!mayClearQuarantine(q, c.payload.seq)) return;
    const was = q === null || q.consent_seq === null ? "none" : `seq ${q.consent_seq}`;
    const why = `the owner's consent seq ${c.payload.seq} (${source}) is newer than the one in force when the control plane quarantined this machine (${was})`;
    if (states.move("quarantine_cleared", why, { consentSeq: c.payload.seq })) {
      dataPath.gate.release("agent.quarantined");
    }
  };

  dataPath.onChange(follow);
  assignment.onSettled(follow);
  // A newer consent accepted just before a restart, with the quarantine still recorded.
  clearQuarantine("kept");
  follow("start");
  const timer: TimerHandle = ctx.timers.setInterval(() => follow("the data path"), FOLLOW_EVERY_MS);

  return {
    follow,
    bundleAccepted(source) {
      const current = states.current().state;
      if (current === "ATTESTED") states.move("policy_synced", `bundle accepted (${source})`);
      if (current === "REVOKED" && !consentRevoked()) {
        states.move("consent_renewed", `a newer consent (${source})`);
      }
      clearQuarantine(source);
      follow(`decision after the bundle (${source})`);
      void assignment.fetch(`bundle (${source})`);
    },
    revocationAccepted(source) {
      if (consentRevoked()) states.move("revoked", `owner-signed revocation (${source})`);
      follow("decision after the revocation");
    },
    quarantine(why, origin) {
      dataPath.gate.hold("agent.quarantined");
      // The newest consent accepted, in force or not: only a newer one than that clears it.
      const seq = engine.documents().consent?.payload.seq ?? null;
      states.move("quarantined", why, { quarantine: { origin, consent_seq: seq } });
    },
    stop: () => ctx.timers.clearInterval(timer),
  };
}
