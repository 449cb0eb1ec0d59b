import type { AgentContext } from "./agent-context.ts";
import type { PauseFile } from "./pause-state.ts";
import type { StateDriver } from "./state-driver.ts";

/**
 * The operator's pause (from the local API, or an owner-allowed `mining.pause` command),
 * persisted across restarts until resumed. A pause is a stop: held first, at once, even if it
 * cannot be recorded or saved (a full disk must not keep mining a machine its operator
 * stopped; the audit hold then stops it anyway), and saved as soon as the disk allows. A
 * resume lifts only the operator's own hold — the decision still decides — and is recorded
 * first: one that cannot be recorded does not happen.
 */
export interface OperatorActions {
  pause(by: string): void;
  resume(by: string): void;
}

export function operatorActions(
  ctx: AgentContext,
  o: { readonly pause: PauseFile; readonly driver: StateDriver },
): OperatorActions {
  const gate = ctx.dataPath.gate;
  return {
    pause(by) {
      gate.hold("agent.paused");
      try {
        ctx.audit.append({ type: "mining.paused", by });
      } catch (err) {
        ctx.log.error({ err }, "the pause holds, but could not be recorded");
      }
      o.pause.save(by, ctx.clock.now());
      o.driver.follow(`paused by ${by}`);
    },
    resume(by) {
      ctx.audit.append({ type: "mining.resumed", by });
      o.pause.clear(by, ctx.clock.now());
      gate.release("agent.paused");
      o.driver.follow(`resumed by ${by}`);
    },
  };
}
