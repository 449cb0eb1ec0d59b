import { join } from "node:path";
import type { ServiceKind } from "../supervisor/spec.ts";
import type { AgentContext } from "./agent-context.ts";
import {
  COMMAND_LEDGER_FILE,
  type CommandHandlers,
  type CommandOutcome,
  createCommandExecutor,
} from "./command-executor.ts";
import { newCommandsByPolling } from "./command-poll.ts";
import type { OperatorActions } from "./operator.ts";
import type { AgentServices } from "./services.ts";
import type { StateDriver } from "./state-driver.ts";

/**
 * Signed commands in `agentd run`: the executor (command-executor.ts: verified, at most once,
 * as the consent allows) with the handlers of the actions this agent can carry out, fed by the
 * push stream and — when a heartbeat's reply names commands the stream has not brought — by
 * polling. A command signed by a key not known yet is a rotation: the key set is fetched and
 * the command tried once more.
 */
export interface AgentCommands {
  execute(jws: string): Promise<CommandOutcome>;
  /** Fetches and runs commands not seen yet (one poll at a time). */
  poll(): Promise<void>;
  /** Whether this command id was handled already. */
  has(cmdId: string): boolean;
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
  const service =
    (action: "start" | "stop" | "restart", said: string) =>
    async (args: { service: ServiceKind }) => {
      await o.services.act(args.service, action);
      return done(`${args.service} ${said}`);
    };
  const handlers: CommandHandlers = {
    "mining.pause": async (_args, c) => {
      o.operator.pause(`command ${c.cmd_id}`);
      return done("mining paused");
    },
    "mining.resume": async (_args, c) => {
      o.operator.resume(`command ${c.cmd_id}`);
      const e = ctx.dataPath.effective();
      return done(e.allow ? "mining resumed" : `resumed; still denied: ${e.reasons.join(", ")}`);
    },
    ...(o.services.supervisor === null
      ? {}
      : {
          "service.start": service("start", "started"),
          "service.stop": service("stop", "stopped (until started again)"),
          "service.restart": service("restart", "restarted"),
        }),
    "worker.quarantine": async (args) => {
      o.driver.quarantine(`quarantined by command: ${args.reason}`);
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

  const execute = async (jws: string): Promise<CommandOutcome> => {
    const seq0 = ctx.keys.current().seq;
    const out = await executor.execute(jws);
    const unknownKey =
      out.status === "refused" &&
      out.refusal.code === "command.invalid" &&
      out.refusal.error === "AGENTD_E_JWS_UNKNOWN_KEY";
    if (unknownKey && (await ctx.keys.refresh("unknown command key", seq0))) {
      return executor.execute(jws);
    }
    return out;
  };

  let polling: Promise<void> | null = null;
  // Commands polled once already (also those refused before verification, which the ledger
  // cannot hold): not fetched and refused again at every heartbeat.
  const polled = new Set<string>();
  const poll = (): Promise<void> => {
    polling ??= (async () => {
      await Promise.resolve();
      try {
        const fresh = await newCommandsByPolling({
          poll: (after) => ctx.client.pollCommands({ after }),
          handled: (id) => executor.has(id),
          seen: polled,
        });
        if (fresh.length > 0) {
          ctx.log.info({ count: fresh.length }, "commands fetched by polling");
          await executor.executeAll(fresh);
        }
      } catch (err) {
        ctx.log.warn({ err }, "polling commands failed");
      } finally {
        polling = null;
      }
    })();
    return polling;
  };

  return { execute, poll, has: (id) => executor.has(id) };
}
