/**
 * Firmware acknowledges writes it then ignores, or applies them 20 s later (the S19's
 * set_miner_conf). So an action holds only once a read shows it: `confirm` reads until `holds`
 * says so or the deadline passes, and then rejects AGENTD_E_MINER_NOT_CONFIRMED — an
 * unconfirmed action is a reported failure, never a success.
 */
import type { Clock } from "../lib/clock.ts";
import { AgentdError, isAgentdError } from "../lib/errors.ts";
import { sleep, type Timers } from "../lib/timers.ts";
import type { ActionName, Confirmed } from "./driver.ts";

export interface ConfirmOptions {
  readonly clock: Clock;
  readonly timers: Timers;
  readonly deadlineMs: number;
  readonly intervalMs: number;
}

export async function confirm<T>(
  action: ActionName,
  read: () => Promise<T>,
  holds: (reading: T) => boolean,
  o: ConfirmOptions,
): Promise<Confirmed> {
  const start = o.clock.now();
  let reads = 0;
  let lastError: string | null = null;
  for (;;) {
    reads++;
    try {
      if (holds(await read())) return { action, confirmedAt: o.clock.now(), reads };
      lastError = null;
    } catch (err) {
      // A miner rebooting to apply a change is unreachable for a while: keep reading.
      if (!isAgentdError(err)) throw err;
      lastError = err.code;
    }
    if (o.clock.now() - start >= o.deadlineMs) break;
    await sleep(o.timers, o.intervalMs);
  }
  throw new AgentdError(
    "AGENTD_E_MINER_NOT_CONFIRMED",
    `${action}: acknowledged, but not seen in ${reads} read(s) over ${o.deadlineMs} ms${
      lastError ? ` (last read: ${lastError})` : ""
    }`,
    { context: { action, reads, last_error: lastError } },
  );
}

/** A request that went unanswered because the miner went down: for a reboot, no failure. */
export function lostToReboot(err: unknown): boolean {
  return (
    isAgentdError(err) &&
    (err.code === "AGENTD_E_MINER_UNREACHABLE" || err.code === "AGENTD_E_MINER_TIMEOUT")
  );
}

/**
 * A reboot: the uptime before, the request (whose reply may be lost as the miner goes down:
 * the read-back decides), then confirmed when the uptime starts again below what it was.
 */
export async function rebootConfirmed(
  uptime: () => Promise<number | null>,
  send: () => Promise<unknown>,
  o: ConfirmOptions,
): Promise<Confirmed> {
  const before = (await uptime()) ?? 0;
  try {
    await send();
  } catch (err) {
    if (!lostToReboot(err)) throw err;
  }
  return confirm("reboot", uptime, (up) => up !== null && up < before, o);
}
