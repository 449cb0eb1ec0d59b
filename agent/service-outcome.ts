import { isAgentdError } from "../lib/errors.ts";
import type { Timers } from "../lib/timers.ts";
import type { ServiceStatus } from "../supervisor/reconciler.ts";
import type { ServiceKind } from "../supervisor/spec.ts";

/**
 * What an action on a service actually did, checked against the supervisor's state — never
 * what was asked (issue 15: a `service.restart` of a kind the consent does not allow was
 * reported "restarted" though nothing ran). The result of a command and of the local API's
 * service actions, with a reason that starts with a stable code (docs/protocol.md, "Command
 * result"):
 *
 * - `not_allowed` — the kind is not allowed to run (the consent's `services` does not list it,
 *   or the supervisor refuses the consent's image for it): nothing was done;
 * - `not_running` — started or restarted, but not running (and healthy, as the supervisor
 *   sees it) within the wait: the state it is in, and why it is held if it is;
 * - `still_running` — stopped, but still running after the wait;
 * - `failed` — the supervisor or its driver threw: the error's code.
 *
 * `done` otherwise, with the state seen. The wait is bounded (`waitMs`) on the injected timers
 * and ends as soon as the state is the one wanted: it looks again at every supervisor event
 * and every `pollMs` (health has no event of its own).
 */
export type ServiceAction = "start" | "stop" | "restart";

export interface ServiceOutcome {
  readonly status: "done" | "failed";
  readonly reason: string;
  /** The service as the supervisor saw it last (null: no such kind in its status). */
  readonly service: ServiceStatus | null;
}

export const SERVICE_WAIT_MS = 30_000;
const POLL_MS = 500;

const SAID: Readonly<Record<ServiceAction, string>> = {
  start: "started",
  stop: "stopped (until started again)",
  restart: "restarted",
};

export async function actOnService(o: {
  readonly kind: ServiceKind;
  readonly action: ServiceAction;
  readonly status: () => ServiceStatus | undefined;
  /** Why the supervisor refuses an allowed kind (its image, its configuration), if it does. */
  readonly refused: () => string | undefined;
  /** The reconciler's call for this action. */
  readonly run: () => Promise<void>;
  /** Subscribes to the supervisor's events; returns the unsubscribe. */
  readonly onEvent: (listener: () => void) => () => void;
  readonly timers: Timers;
  readonly waitMs?: number;
  readonly pollMs?: number;
}): Promise<ServiceOutcome> {
  const { kind, action } = o;
  const before = o.status();
  if (before === undefined || !before.allowed) {
    const why = o.refused();
    return {
      status: "failed",
      reason: `not_allowed: ${kind} ${why === undefined ? "is not in the consent's services" : `is refused: ${why}`}; nothing was done`,
      service: before ?? null,
    };
  }
  try {
    await o.run();
  } catch (err) {
    const code = isAgentdError(err) ? err.code : "AGENTD_E_INTERNAL";
    return { status: "failed", reason: `failed: ${code}`, service: o.status() ?? null };
  }
  const wanted = (s: ServiceStatus | undefined) =>
    s !== undefined &&
    (action === "stop" ? s.state === "stopped" || s.state === "absent" : s.state === "running");
  const waitMs = o.waitMs ?? SERVICE_WAIT_MS;
  const reached = await new Promise<boolean>((resolve) => {
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      unsubscribe();
      o.timers.clearTimeout(deadline);
      o.timers.clearInterval(poll);
      resolve(ok);
    };
    const look = () => {
      if (wanted(o.status())) finish(true);
    };
    const unsubscribe = o.onEvent(look);
    const deadline = o.timers.setTimeout(() => finish(wanted(o.status())), waitMs);
    const poll = o.timers.setInterval(look, o.pollMs ?? POLL_MS);
    look();
  });
  const s = o.status();
  const state = s?.state ?? "absent";
  if (reached)
    return { status: "done", reason: `${kind} ${SAID[action]}: ${state}`, service: s ?? null };
  const held = s?.hold === null || s?.hold === undefined ? "" : `, held: ${s.hold}`;
  const code = action === "stop" ? "still_running" : "not_running";
  return {
    status: "failed",
    reason: `${code}: ${kind} is ${state}${held} ${Math.round(waitMs / 1000)} s after the ${action}`,
    service: s ?? null,
  };
}
