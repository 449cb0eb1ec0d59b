import type { Registry } from "../lib/metrics/registry.ts";
import type { EnforcementEngine } from "../policy-guard/engine.ts";
import type { Reason } from "../policy-guard/reasons.ts";
import type { StratumProxy } from "../stratum-client/proxy.ts";
import type { AgentBase } from "./agent-context.ts";
import {
  createGuardedProxy,
  type ProxyTelemetry,
  proxyFacts,
  proxyTelemetry,
} from "./guarded-proxy.ts";
import { type HeldGate, holdingGate } from "./mining-holds.ts";
import type { PauseFile } from "./pause-state.ts";

/**
 * The data path of `agentd run`: the Stratum proxy for the ASICs, gated by the policy guard
 * (it forwards nothing until the decision allows mining, and stops when it no longer does),
 * behind the local holds (mining-holds.ts). Until an assignment for the consent in force is
 * verified nothing mines (`agent.unassigned`, lifted by assignment-sync.ts); a pause or a
 * control-plane quarantine kept from before a restart holds at once; while the audit log
 * cannot be written mining is held.
 */
export interface DataPath {
  readonly proxy: StratumProxy;
  readonly gate: HeldGate;
  readonly telemetry: () => ProxyTelemetry;
  /** The facts the decision reads about the data path (the upstream in use). */
  readonly facts: () => Record<string, unknown>;
  /** What the data path was given: the decision with the holds applied. */
  effective(): { readonly allow: boolean; readonly reasons: readonly Reason[] };
  /**
   * Called when what the data path may do changed: a hold, or the decision — also one that
   * time alone brings (a window ending, a publication past its grace).
   */
  onChange(listener: (why: string) => void): void;
  /** Registers the gates with the engine (before it starts, so its first decision arrives). */
  attach(engine: EnforcementEngine): void;
}

export function createDataPath(
  ctx: AgentBase,
  o: {
    readonly stratum: { readonly host: string; readonly port: number };
    readonly agentVersion: string;
    readonly registry: Registry;
    readonly pause: PauseFile;
    /** Whether the agent starts QUARANTINED (a quarantine the control plane set: it runs, held). */
    readonly quarantined: boolean;
    /** The engine, once it exists (it needs the proxy's facts; the proxy needs to wake it). */
    readonly engine: () => EnforcementEngine | null;
  },
): DataPath {
  const listeners: ((why: string) => void)[] = [];
  const changed = (why: string) => {
    for (const l of listeners) l(why);
  };
  const proxy = createGuardedProxy({
    host: o.stratum.host,
    port: o.stratum.port,
    config: ctx.config,
    clock: ctx.clock,
    timers: ctx.timers,
    logger: ctx.log,
    registry: o.registry,
    audit: ctx.audit,
    agentVersion: o.agentVersion,
    engine: o.engine,
  });
  const gate = holdingGate(proxy, () => changed("a local hold changed"));
  gate.hold("agent.unassigned");
  const kept = o.pause.current();
  if (kept.local !== null) gate.hold("agent.paused");
  if (kept.remote !== null) gate.hold("agent.paused_remotely");
  if (o.quarantined) gate.hold("agent.quarantined");

  ctx.audit.onWritableChange((writable, lost) => {
    ctx.metrics.auditWritable(writable);
    if (!writable) {
      gate.hold("agent.audit_unwritable");
      return;
    }
    // Writable again: what was decided meanwhile (a grace ended, a revocation) reaches the
    // gate first, and a pause that could not be saved is saved; only then the hold lifts.
    void (async () => {
      try {
        await o.engine()?.refresh("audit log writable");
      } catch (err) {
        ctx.log.error({ err }, "re-evaluating after the audit log came back failed");
      }
      o.pause.saveIfUnsaved();
      gate.release("agent.audit_unwritable");
      try {
        ctx.audit.append({ type: "mining.hold_released", hold: "agent.audit_unwritable", lost });
      } catch {
        // unwritable again: the sink has put the hold back
      }
    })();
  });

  return {
    proxy,
    gate,
    telemetry: proxyTelemetry(proxy, ctx.clock),
    facts: proxyFacts(proxy, o.engine),
    effective: () => {
      const e = gate.effective();
      return e ?? { allow: false, reasons: o.engine()?.current().mining.reasons ?? [] };
    },
    onChange: (l) => {
      listeners.push(l);
    },
    attach(engine) {
      engine.registerMiningGate(gate);
      // The state follows every change of the decision: a gate that only records.
      engine.registerMiningGate({
        name: "agent-state",
        apply: () => changed("the decision changed"),
      });
    },
  };
}
