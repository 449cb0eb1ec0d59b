/** What both stock Antminer drivers share: refusals, argument checks, read-back options. */
import { AgentdError } from "../../lib/errors.ts";
import type { ActionName, DriverContext, PoolSlot, PoolTarget } from "../driver.ts";
import { type ConfirmOptions, lostToReboot } from "../read-back.ts";
import type { AntminerIo } from "./io.ts";

export function unsupported(action: ActionName, why: string): Promise<never> {
  return Promise.reject(
    new AgentdError("AGENTD_E_MINER_UNSUPPORTED", `${action}: ${why}`, { context: { action } }),
  );
}

/** Stock firmware has three slots; an empty list would leave the miner nowhere to hash. */
export function checkSlots(slots: readonly PoolTarget[]): void {
  if (slots.length < 1 || slots.length > 3) {
    throw new AgentdError("AGENTD_E_USAGE", `setPools: 1 to 3 pool slots, got ${slots.length}`);
  }
  for (const s of slots) {
    if (s.url === "" || s.user === "") {
      throw new AgentdError("AGENTD_E_USAGE", "setPools: every slot needs a url and a user");
    }
  }
}

/** Whether the slots read back are exactly the targets, in order (url and user). */
export function poolsMatch(
  read: readonly Pick<PoolSlot, "url" | "user">[],
  targets: readonly PoolTarget[],
): boolean {
  return (
    read.length === targets.length &&
    targets.every((t, i) => read[i]?.url === t.url && read[i]?.user === t.user)
  );
}

export function confirmOptions(ctx: DriverContext): ConfirmOptions {
  return {
    clock: ctx.clock,
    timers: ctx.timers,
    deadlineMs: ctx.limits.confirmDeadlineMs,
    intervalMs: ctx.limits.confirmIntervalMs,
  };
}

/**
 * reboot.cgi. A miner that goes down before its reply has left is still rebooting: a lost
 * reply is not a failure, the read-back (uptime from zero again) decides.
 */
export async function rebootCgi(io: AntminerIo): Promise<void> {
  try {
    await io.cgi("reboot");
  } catch (err) {
    if (!lostToReboot(err)) throw err;
  }
}
