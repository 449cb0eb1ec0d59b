import type { Registry } from "../lib/metrics/registry.ts";
import { REASONS } from "../policy-guard/reasons.ts";
import type { SupervisorEvent } from "../supervisor/reconciler.ts";
import { SERVICE_KINDS } from "../supervisor/spec.ts";
import { AGENT_STATES, type AgentState } from "./state-machine.ts";

/**
 * The daemon's own metrics, next to the Stratum proxy's (shares by result, miners connected,
 * upstream state: stratum-client/accounting.ts) in one registry:
 *
 *   agentd_mining_allowed                  1 while the data path may forward (holds applied)
 *   agentd_mining_denied{reason}           1 for each reason the data path is denied now
 *   agentd_mining_denials_total{reason}    times mining became denied, by reason
 *   agentd_revoke_to_stop_seconds          a revocation's arrival at the agent → the gate's ack
 *   agentd_heartbeat_lag_seconds           since the last heartbeat the control plane accepted
 *   agentd_heartbeats_total{result}        accepted, failed
 *   agentd_state{state}                    1 for the state the agent is in
 *   agentd_audit_writable                  0 while the audit log cannot be written
 *   agentd_service_events_total{service,event}   started, stopped, exited, crashloop, …
 *   agentd_service_restarts_total{service,reason} restarts the supervisor scheduled
 *
 * Label values are bounded: reasons come from policy-guard/reasons.ts, states from the state
 * machine; anything else is folded into `_other`.
 */
export interface AgentMetrics {
  decision(allow: boolean, reasons: readonly string[]): void;
  revokeToStop(seconds: number): void;
  heartbeats(
    accepted: number,
    failed: number,
    lastAcceptedAtMs: number | null,
    nowMs: number,
  ): void;
  state(s: AgentState): void;
  auditWritable(ok: boolean): void;
  /** The supervisor's events: services started, stopped, exited, restarts, crash loops. */
  serviceEvent(e: SupervisorEvent): void;
}

const known = (r: string) => (Object.hasOwn(REASONS, r) ? r : "_other");

export function agentMetrics(registry: Registry): AgentMetrics {
  const reasonCount = Object.keys(REASONS).length + 1;
  const allowed = registry.gauge(
    "agentd_mining_allowed",
    "1 while the data path may forward work (the decision with local holds applied).",
  );
  const denied = registry.gauge(
    "agentd_mining_denied",
    "1 for each reason mining is denied now.",
    ["reason"],
    reasonCount,
  );
  const denials = registry.counter(
    "agentd_mining_denials_total",
    "Times mining became denied, by reason.",
    ["reason"],
    reasonCount,
  );
  const revoke = registry.histogram(
    "agentd_revoke_to_stop_seconds",
    "From a revocation's arrival at the agent to the mining gate's acknowledgement.",
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
  );
  const lag = registry.gauge(
    "agentd_heartbeat_lag_seconds",
    "Seconds since the control plane last accepted a heartbeat (-1 before the first).",
  );
  const beats = registry.counter("agentd_heartbeats_total", "Heartbeats by result.", ["result"]);
  const state = registry.gauge("agentd_state", "1 for the agent's current state.", ["state"]);
  const audit = registry.gauge(
    "agentd_audit_writable",
    "0 while the audit log cannot be written (mining is then held).",
  );
  audit.set({}, 1);
  const kinds = SERVICE_KINDS.length + 1;
  const serviceEvents = registry.counter(
    "agentd_service_events_total",
    "Supervisor events by service and event.",
    ["service", "event"],
    kinds * 8,
  );
  const restarts = registry.counter(
    "agentd_service_restarts_total",
    "Restarts the supervisor scheduled, by service and reason.",
    ["service", "reason"],
    kinds * 4,
  );
  let current = new Set<string>();
  let was: boolean | null = null;
  const sent = { accepted: 0, failed: 0 };
  return {
    decision(allow, reasons) {
      allowed.set({}, allow ? 1 : 0);
      const next = new Set(allow ? [] : reasons.map(known));
      for (const r of current) if (!next.has(r)) denied.set({ reason: r }, 0);
      for (const r of next) {
        denied.set({ reason: r }, 1);
        if (was !== false || !current.has(r)) denials.inc({ reason: r });
      }
      current = next;
      was = allow;
    },
    revokeToStop: (s) => revoke.observe({}, s),
    heartbeats(accepted, failed, lastAcceptedAtMs, nowMs) {
      if (accepted > sent.accepted) beats.inc({ result: "accepted" }, accepted - sent.accepted);
      if (failed > sent.failed) beats.inc({ result: "failed" }, failed - sent.failed);
      sent.accepted = accepted;
      sent.failed = failed;
      lag.set({}, lastAcceptedAtMs === null ? -1 : Math.max(0, (nowMs - lastAcceptedAtMs) / 1000));
    },
    state(s) {
      for (const x of AGENT_STATES) state.set({ state: x }, x === s ? 1 : 0);
    },
    auditWritable: (ok) => audit.set({}, ok ? 1 : 0),
    serviceEvent(e) {
      if (!("kind" in e)) return;
      const event = e.type.replace(/^service\./, "");
      serviceEvents.inc({ service: e.kind, event });
      if (e.type === "service.restart_scheduled")
        restarts.inc({ service: e.kind, reason: "exited" });
    },
  };
}
