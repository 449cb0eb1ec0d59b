import { join } from "node:path";
import type { ServiceKind } from "../supervisor/spec.ts";
import type { AgentContext } from "./agent-context.ts";
import {
  COMMAND_LEDGER_FILE,
  type CommandHandlers,
  type CommandOutcome,
  createCommandExecutor,
} from "./command-executor.ts";
import { commandIdOf, newCommandsByPolling } from "./command-poll.ts";
import type { OperatorActions } from "./operator.ts";
import type { Pauses } from "./pause-state.ts";
import { openPolledCommands, POLLED_FILE } from "./polled-commands.ts";
import type { ServiceAction } from "./service-outcome.ts";
import type { AgentServices } from "./services.ts";
import type { StateDriver } from "./state-driver.ts";

/**
 * Signed commands in `agentd run`: the executor (command-executor.ts: verified, at most once,
 * as the consent allows) with the handlers of the actions this agent can carry out, fed by the
 * push stream and — when a heartbeat's reply names commands the stream has not brought — by
 * polling. A command signed by a key not known yet is a rotation: the key set is fetched and
 * the command tried once more.
 *
 * Results say what happened, not what was asked: a service action is checked against the
 * supervisor (service-outcome.ts: `not_allowed`, `not_running`, `failed`…); `mining.pause` is
 * the remote pause and `mining.resume` lifts only that one, saying so when the machine's own
 * pause remains (operator.ts); `worker.quarantine` is the control plane's quarantine, which the
 * owner's newer consent clears (state-machine.ts).
 */
export interface AgentCommands {
  execute(jws: string): Promise<CommandOutcome>;
  /** Fetches and runs commands not seen yet (one poll at a time). */
  poll(): Promise<void>;
  /** Whether this command id was handled already, or fetched by polling before. */
  has(cmdId: string): boolean;
}

/** A pause in words for a result: who and since when. */
const since = (p: { readonly by: string; readonly at: number }) =>
  `since ${new Date(p.at).toISOString()} (${p.by})`;

/** What a `mining.resume` says it did: lifting the remote pause never lifts the local one. */
export function resumeReason(
  lifted: boolean,
  remaining: Pauses,
  effective: { readonly allow: boolean; readonly reasons: readonly string[] },
): string {
  const what = lifted ? "remote pause lifted" : "no remote pause to lift";
  if (remaining.local !== null) return `${what}; still paused locally ${since(remaining.local)}`;
  if (effective.allow) return lifted ? "mining resumed" : `${what}; mining allowed`;
  return `${what}; still denied: ${effective.reasons.join(", ")}`;
}

export function agentCommands(
  ctx: AgentContext,
  o: {
    readonly operator: OperatorActions;
    readonly services: AgentServices;
    readonly driver: StateDriver;
  },
): AgentCommands {
  const done = (reason: string) => ({ status: "done" as const, reason });
  const service = (action: ServiceAction) => async (args: { service: ServiceKind }) => {
    const r = await o.services.act(args.service, action);
    return { status: r.status, reason: r.reason };
  };
  const handlers: CommandHandlers = {
    "mining.pause": async (_args, c) => {
      o.operator.pause("remote", `command ${c.cmd_id}`);
      return done("mining paused remotely");
    },
    "mining.resume": async (_args, c) => {
      const r = o.operator.resume("remote", `command ${c.cmd_id}`);
      return done(resumeReason(r.lifted, r.remaining, ctx.dataPath.effective()));
    },
    ...(o.services.supervisor === null
      ? {}
      : {
          "service.start": service("start"),
          "service.stop": service("stop"),
          "service.restart": service("restart"),
        }),
    "worker.quarantine": async (args, c) => {
      o.driver.quarantine(`quarantined by command ${c.cmd_id}: ${args.reason}`, "control_plane");
      // Held in memory in any case; reported done only once it is on disk (a restart would
      // otherwise mine again).
      return ctx.states.current().state === "QUARANTINED"
        ? done("quarantined")
        : { status: "failed" as const, reason: "quarantined until restart: not recorded" };
    },
  };

  const executor = createCommandExecutor({
    workerId: ctx.workerId,
    keyset: () => ctx.keys.current(),
    // Only under a consent in force: not a revoked, decommissioned or expired one.
    allowed: () => {
      const docs = ctx.engine.documents();
      const valid = docs.consent !== null && docs.consentReasons.length === 0;
      return valid ? (docs.consent?.payload.rules.commands ?? null) : null;
    },
    // The same consent's identity: a command runs only under the consent it was issued for.
    consent: () => {
      const docs = ctx.engine.documents();
      return docs.consentReasons.length === 0 ? (docs.consent?.identity ?? null) : null;
    },
    handlers,
    clock: ctx.clock,
    ledgerPath: join(ctx.stateDir, COMMAND_LEDGER_FILE),
    audit: (r) => ctx.audit.append({ ...r }),
    postResult: (r) => ctx.client.postCommandResult(r),
  });

  // Commands pushed and waiting or running (a service action waits for the service): a
  // heartbeat that lists one meanwhile does not have it polled and refused as a replay.
  const inProgress = new Map<string, number>();
  const execute = async (jws: string): Promise<CommandOutcome> => {
    const id = commandIdOf(jws);
    if (id !== null) inProgress.set(id, (inProgress.get(id) ?? 0) + 1);
    try {
      const seq0 = ctx.keys.current().seq;
      const out = await executor.execute(jws);
      const unknownKey =
        out.status === "refused" &&
        out.refusal.code === "command.invalid" &&
        out.refusal.error === "AGENTD_E_JWS_UNKNOWN_KEY";
      if (unknownKey && (await ctx.keys.refresh("unknown command key", seq0))) {
        return await executor.execute(jws);
      }
      return out;
    } finally {
      if (id !== null) {
        const n = (inProgress.get(id) ?? 1) - 1;
        if (n <= 0) inProgress.delete(id);
        else inProgress.set(id, n);
      }
    }
  };

  let polling: Promise<void> | null = null;
  // Commands polled once already (also those refused before verification, which the ledger
  // cannot hold), across restarts: not fetched and refused again at every heartbeat.
  const polled = openPolledCommands(join(ctx.stateDir, POLLED_FILE), (err) =>
    ctx.log.warn({ err }, "the commands fetched by polling could not be saved"),
  );
  const poll = (): Promise<void> => {
    polling ??= (async () => {
      await Promise.resolve();
      try {
        // Remembered once handled (executed or refused, and recorded): one that could not be
        // handled — the audit log failed — is fetched again.
        const fetched: [string, string][] = [];
        const fresh = await newCommandsByPolling({
          poll: (after) => ctx.client.pollCommands({ after }),
          handled: (id) => executor.has(id),
          seen: {
            has: (id, jws) => polled.has(id, jws),
            add: (id, jws) => fetched.push([id, jws]),
          },
        });
        if (fresh.length > 0) {
          ctx.log.info({ count: fresh.length }, "commands fetched by polling");
          await executor.executeAll(fresh);
        }
        for (const [id, jws] of fetched) polled.add(id, jws);
      } catch (err) {
        ctx.log.warn({ err }, "polling commands failed");
      } finally {
        polling = null;
      }
    })();
    return polling;
  };

  return {
    execute,
    poll,
    has: (id) => executor.has(id) || polled.hasId(id) || inProgress.has(id),
  };
}
