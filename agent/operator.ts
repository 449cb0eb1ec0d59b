import type { AgentContext } from "./agent-context.ts";
import type { HoldReason } from "./mining-holds.ts";
import type { PauseFile, PauseScope, Pauses } from "./pause-state.ts";
import type { StateDriver } from "./state-driver.ts";

/**
 * The two pauses (pause-state.ts), each its own hold: the operator's on the machine
 * (`agent.paused`: the local API and `agentd mining pause`) and a remote one
 * (`agent.paused_remotely`: an owner-allowed `mining.pause` command), persisted across
 * restarts until resumed.
 *
 * Who lifts what: a remote resume (`mining.resume`) lifts only the remote pause — a hold set on
 * the machine is lifted only on the machine, so a control plane can never make a machine its
 * operator stopped mine again. The owner's next consent also ends a remote pause (daemon.ts):
 * it was the control plane's, under the consent before, and nothing a control-plane key did
 * outlives the owner signing again. A resume on the machine lifts the local pause only, and says
 * whether a remote one remains (the operator sees it and decides; the remote pause is the
 * owner's consent at work, and `agentd mining resume` is not a way around it).
 *
 * A pause is a stop: held first, at once, even if it cannot be recorded or saved (a full disk
 * must not keep mining a machine someone stopped; the audit hold then stops it anyway), and
 * saved as soon as the disk allows. A resume is recorded first: one that cannot be recorded
 * does not happen. Either way the decision still decides.
 */
export interface OperatorActions {
  pause(scope: PauseScope, by: string): void;
  /** Lifts `scope`'s pause (if any); answers whether there was one, and what remains. */
  resume(scope: PauseScope, by: string): { readonly lifted: boolean; readonly remaining: Pauses };
  /** The pauses in force. */
  pauses(): Pauses;
}

export const PAUSE_HOLDS: Readonly<Record<PauseScope, HoldReason>> = {
  local: "agent.paused",
  remote: "agent.paused_remotely",
};

export function operatorActions(
  ctx: AgentContext,
  o: { readonly pause: PauseFile; readonly driver: StateDriver },
): OperatorActions {
  const gate = ctx.dataPath.gate;
  return {
    pause(scope, by) {
      const hold = PAUSE_HOLDS[scope];
      gate.hold(hold);
      try {
        ctx.audit.append({ type: "mining.paused", by, hold });
      } catch (err) {
        ctx.log.error({ err }, "the pause holds, but could not be recorded");
      }
      o.pause.save(scope, by, ctx.clock.now());
      o.driver.follow(`paused by ${by}`);
    },
    resume(scope, by) {
      const hold = PAUSE_HOLDS[scope];
      const lifted = o.pause.current()[scope] !== null;
      ctx.audit.append({ type: "mining.resumed", by, hold, lifted });
      if (lifted) o.pause.clear(scope);
      gate.release(hold);
      o.driver.follow(`resumed by ${by}`);
      return { lifted, remaining: o.pause.current() };
    },
    pauses: () => o.pause.current(),
  };
}
