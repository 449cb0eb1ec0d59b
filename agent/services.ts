import { join } from "node:path";
import { fail } from "../lib/errors.ts";
import type { EnforcementEngine } from "../policy-guard/engine.ts";
import { defaultSpecs } from "../supervisor/defaults.ts";
import type { ServiceEngine } from "../supervisor/engine.ts";
import { processEngine } from "../supervisor/process-engine.ts";
import { SERVICE_KINDS, type ServiceKind } from "../supervisor/spec.ts";
import { loadServicesFile } from "../supervisor/specs-file.ts";
import {
  dockerClient,
  dockerEngine,
  type Supervisor,
  startSupervisor,
} from "../supervisor/supervisor.ts";
import type { AgentBase } from "./agent-context.ts";

/**
 * The supervised services in `agentd run`: the supervisor (supervisor/) as the policy guard's
 * services gate — registered before the engine starts, so its first decision reaches it too —
 * its events counted and audited, and the one way an operator or a command acts on a service.
 * Null supervisor: `supervisor.driver` is off.
 */
export interface AgentServices {
  readonly supervisor: Supervisor | null;
  /** An operator's (or an owner-allowed command's) start, stop or restart of one service. */
  act(kind: ServiceKind, action: "start" | "stop" | "restart"): Promise<void>;
  close(): Promise<void>;
}

export function startServices(
  ctx: AgentBase,
  engine: EnforcementEngine,
  /** Injected by tests; default from `supervisor.driver`. */
  serviceEngine: ServiceEngine | undefined,
): AgentServices {
  const supervisor = chooseSupervisor(ctx, serviceEngine);
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
      if (action === "start") await r.startService(kind);
      else if (action === "stop") await r.stopService(kind);
      else await r.restartService(kind);
    },
    close: async () => {
      await supervisor?.close();
    },
  };
}

function chooseSupervisor(ctx: AgentBase, injected: ServiceEngine | undefined): Supervisor | null {
  const driver = ctx.config.supervisor.driver;
  if (injected === undefined && driver === "off") return null;
  const dataDir = ctx.config.supervisor.data_dir;
  const specs =
    ctx.config.supervisor.services_file === ""
      ? defaultSpecs(dataDir)
      : loadServicesFile(ctx.config.supervisor.services_file, dataDir);
  let serviceEngine = injected;
  let closeEngine = async () => {};
  if (serviceEngine === undefined && driver === "process") {
    const pe = processEngine({
      stateDir: join(ctx.stateDir, "services"),
      worker: ctx.workerId,
      clock: ctx.clock,
      specs: () => Object.values(specs),
      logger: ctx.log.child({ component: "processes" }),
    });
    closeEngine = async () => {
      await pe.close();
    };
    serviceEngine = pe;
  }
  if (serviceEngine === undefined) {
    const { docker, name } = dockerClient(ctx.config.docker.host);
    serviceEngine = dockerEngine(docker, { worker: ctx.workerId, name });
  }
  const s = startSupervisor({
    engine: serviceEngine,
    specs,
    dataDir,
    clock: ctx.clock,
    logger: ctx.log.child({ component: "supervisor" }),
    onEvent: (e) => {
      ctx.metrics.serviceEvent(e);
      if (e.type === "service.restart_scheduled") return; // a log line is enough
      try {
        ctx.audit.append({ ...e, actor: "supervisor" });
      } catch {
        // counted lost by the audit sink, which holds mining meanwhile
      }
    },
  });
  return {
    ...s,
    close: async () => {
      await s.close();
      await closeEngine();
    },
  };
}
