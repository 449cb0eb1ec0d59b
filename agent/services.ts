import { fail } from "../lib/errors.ts";
import type { EnforcementEngine } from "../policy-guard/engine.ts";
import { createSupervisor } from "../supervisor/create-supervisor.ts";
import type { ServiceDriver } from "../supervisor/driver.ts";
import { SERVICE_KINDS, type ServiceKind } from "../supervisor/spec.ts";
import type { Supervisor } from "../supervisor/supervisor.ts";
import type { AgentBase } from "./agent-context.ts";
import { actOnService, type ServiceAction, type ServiceOutcome } from "./service-outcome.ts";

/**
 * The supervised services in `agentd run`: the supervisor (supervisor/) as the policy guard's
 * services gate — registered before the engine starts, so its first decision reaches it too —
 * its events counted and audited, and the one way an operator or a command acts on a service,
 * answering what actually happened (service-outcome.ts). Null supervisor: `supervisor.driver`
 * is off.
 */
export interface AgentServices {
  readonly supervisor: Supervisor | null;
  /**
   * An operator's (or an owner-allowed command's) start, stop or restart of one service, and
   * what came of it, checked against the supervisor's state (waits up to `waitMs`).
   */
  act(kind: ServiceKind, action: ServiceAction): Promise<ServiceOutcome>;
  close(): Promise<void>;
}

export function startServices(
  ctx: AgentBase,
  engine: EnforcementEngine,
  /** Injected by tests; default from `supervisor.driver` (the supervisor chooses). */
  driver: ServiceDriver | undefined,
  /** How long an action waits for the state it wants (service-outcome.ts). */
  waitMs?: number,
): AgentServices {
  // Actions in progress look again at every supervisor event.
  const watchers = new Set<() => void>();
  const supervisor = createSupervisor(ctx.config, {
    workerId: ctx.workerId,
    stateDir: ctx.stateDir,
    clock: ctx.clock,
    timers: ctx.timers,
    logger: ctx.log,
    onEvent: (e) => {
      ctx.metrics.serviceEvent(e);
      for (const w of watchers) w();
      if (e.type === "service.restart_scheduled") return; // a log line is enough
      try {
        ctx.audit.append({ ...e, actor: "supervisor" });
      } catch {
        // counted lost by the audit sink, which holds mining meanwhile
      }
    },
    ...(driver === undefined ? {} : { driver }),
  });
  if (supervisor !== null) engine.registerServicesGate(supervisor.gate);
  return {
    supervisor,
    async act(kind, action) {
      if (supervisor === null) {
        throw fail("AGENTD_E_USAGE", "no services are supervised here (supervisor.driver is off)");
      }
      if (!(SERVICE_KINDS as readonly string[]).includes(kind)) {
        throw fail("AGENTD_E_USAGE", `no service kind ${JSON.stringify(kind)}`);
      }
      const r = supervisor.reconciler;
      return actOnService({
        kind,
        action,
        status: () => supervisor.status().services.find((x) => x.kind === kind),
        refused: () => supervisor.status().refused[kind],
        run: () =>
          action === "start"
            ? r.startService(kind)
            : action === "stop"
              ? r.stopService(kind)
              : r.restartService(kind),
        onEvent: (w) => {
          watchers.add(w);
          return () => watchers.delete(w);
        },
        timers: ctx.timers,
        ...(waitMs === undefined ? {} : { waitMs }),
      });
    },
    close: async () => {
      await supervisor?.close();
    },
  };
}
