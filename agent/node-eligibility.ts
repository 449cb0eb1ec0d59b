import { join } from "node:path";
import type { AgentContext } from "./agent-context.ts";
import {
  ELIGIBILITY_FILE,
  type EligibilityTracker,
  startEligibilityTracker,
} from "./eligibility.ts";
import type { AgentServices } from "./services.ts";

/**
 * Node-reward eligibility in `agentd run` (eligibility.ts, docs/eligibility.md): uptime sampled
 * every 5 s into a persisted 7-day window. Up means the agent runs on a live enrollment (not
 * revoked, quarantined or decommissioned) with a writable audit log. bitcoind's sync and the
 * Lightning channel to the treasury come from the supervisor, "unknown" without one, so no node
 * is eligible then (fail closed). A change is audited, logged and handed to `onChange` (the
 * heartbeats send it at once).
 */
export interface NodeEligibility {
  readonly tracker: EligibilityTracker;
  /** What a heartbeat carries. */
  forHeartbeat(): { eligible: boolean; reasons: string[]; uptime_ratio: number };
  onChange(listener: () => void): void;
}

export function startNodeEligibility(
  ctx: AgentContext,
  o: { readonly agentVersion: string; readonly services: AgentServices },
): NodeEligibility {
  const listeners: (() => void)[] = [];
  const supervisor = o.services.supervisor;
  const tracker = startEligibilityTracker({
    path: join(ctx.stateDir, ELIGIBILITY_FILE),
    clock: ctx.clock,
    timers: ctx.timers,
    agentVersion: o.agentVersion,
    up: () =>
      ctx.audit.writable &&
      !["REVOKED", "QUARANTINED", "TERMINATED"].includes(ctx.states.current().state),
    lightning: () => supervisor?.lightning(ctx.config.eligibility.treasury_pubkey) ?? "unknown",
    bitcoind: () => supervisor?.bitcoind() ?? "unknown",
    onReport: (r) => {
      try {
        ctx.audit.append({
          type: "eligibility.report",
          eligible: r.eligible,
          reasons: [...r.reasons],
          uptime_ratio: Math.round(r.uptime_ratio * 1e6) / 1e6,
        });
      } catch {
        // recorded as unwritable by the sink; the report itself is only informative
      }
      ctx.log.info({ eligible: r.eligible, reasons: r.reasons }, "eligibility");
      for (const l of listeners) l();
    },
    onError: (err, during) => ctx.log.warn({ err, during }, "eligibility tracker"),
  });
  return {
    tracker,
    forHeartbeat() {
      const c = tracker.current();
      return {
        eligible: c.eligible,
        reasons: [...c.reasons].slice(0, 16),
        uptime_ratio: Math.min(1, Math.max(0, c.uptime_ratio)),
      };
    },
    onChange: (l) => {
      listeners.push(l);
    },
  };
}
