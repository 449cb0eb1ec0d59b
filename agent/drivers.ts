import type { AgentdError } from "../lib/errors.ts";
import { DriverHost, type DriverHostStatus } from "../plugins/host/launcher.ts";
import type { AgentBase } from "./agent-context.ts";

/**
 * The ASIC drivers' host in `agentd run` (plugins/host/): created at start, started by the
 * first miner request — no process while there is nothing to drive — and stopped with the
 * agent. Whether drivers can run here is checked at start and said at once (the drivers' user
 * missing, the code unreadable by it): then drivers do not run (fail closed), mining through
 * the Stratum proxy is unaffected, and rules that need the miners' own facts keep denying.
 */
export interface AgentDrivers {
  readonly host: DriverHost;
  status(): DriverHostStatus;
  stop(): Promise<void>;
}

export function startDrivers(
  ctx: AgentBase,
  o: { readonly asInvokingUser: boolean },
): AgentDrivers {
  const log = ctx.log.child({ component: "drivers" });
  const host = new DriverHost({
    logger: log,
    clock: ctx.clock,
    timers: ctx.timers,
    user: ctx.config.drivers.user,
    runAsInvokingUser: o.asInvokingUser,
  });
  const refused: AgentdError | null = host.preflight();
  if (refused !== null) {
    log.error({ code: refused.code, reason: refused.message }, "ASIC drivers do not run here");
  } else if (o.asInvokingUser) {
    log.warn("ASIC drivers will run as this user, not isolated from the agent (devnet)");
  }
  return {
    host,
    status: () => {
      const s = host.status();
      // The preflight's refusal, before any request asked the host to start.
      return refused !== null && s.state === "idle"
        ? { ...s, state: "refused", code: refused.code, reason: refused.message }
        : s;
    },
    stop: () => host.stop(),
  };
}
