import { randomUUID } from "node:crypto";
import { type Clock, unixSeconds } from "../../lib/clock.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import type { ConsentPayload } from "../../policy-guard/documents.ts";
import type { Caller } from "../http/auth.ts";
import { defineRoute, type Route } from "../http/route.ts";
import { isActionAllowedByConsent, signCommand } from "../protocol/documents/command.ts";
import { verifyCommandResult } from "../protocol/documents/command-result.ts";
import type {
  CommandCreateRequest,
  CommandCreateResponse,
  CommandResultRequest,
  CommandResultResponse,
  WorkerCommandsResponse,
} from "../protocol/schemas/api-worker.ts";
import type { CommandActionArgs } from "../protocol/schemas/command.ts";
import { validate } from "../protocol/validate.ts";
import type { Store, Worker } from "../store/store.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { storedConsentPayload } from "./publish.ts";
import { eventsAfter, servableWorker } from "./stream.ts";

/**
 * Signed commands (docs/protocol.md sections 5 and 8): an operator queues one
 * (`POST /v1/commands`), the worker fetches it by push (stream.ts) or poll
 * (`GET /v1/workers/{id}/commands`), and answers with a result signed by its machine key
 * (`POST /v1/commands/{id}/result`), recorded once.
 *
 * A command is signed only if the worker could execute it: it exists, is neither
 * decommissioned (403 AGENTD_E_CP_FORBIDDEN) nor quarantined (403 AGENTD_E_CP_QUARANTINED:
 * it can fetch nothing, and a command queued now could run long after the reason for it),
 * and its current consent — the latest, unexpired and not revoked — lists the action in
 * `rules.commands` (403 AGENTD_E_CP_FORBIDDEN, audited): the control plane never signs what
 * the agent must refuse.
 *
 * A command names the consent it is issued under (`consent_sha256`), and its `seq` is
 * allocated in that consent's space (store: issueCommand): the owner's next consent starts
 * the seqs afresh, so a seq spent to 2^53 − 1 locks nothing out, and the agent refuses a
 * command of any consent but the one in force (`command.consent_mismatch`), so a fresh space
 * reopens no replay. A consent superseded between the check and the commit is 409
 * AGENTD_E_CP_CONFLICT (`stale_consent`); nothing is queued.
 */

export function commandsGroup(ctx: ApiContext): ApiGroup {
  return { routes: [createCommand(ctx), pollCommands(ctx), commandResult(ctx)] };
}

function apiKeyId(caller: Caller): string {
  if (caller.kind === "machine" || caller.kind === "token" || caller.kind === "public") {
    throw fail("AGENTD_E_INTERNAL", "an API key caller was expected");
  }
  return caller.keyId;
}

/** The consent in force now: latest by seq, unexpired, not covered by a revocation. */
async function currentConsent(
  store: Store,
  w: Worker,
  now: number,
): Promise<{ readonly identity: string; readonly payload: ConsentPayload } | null> {
  const consent = await store.latestConsent(w.worker_id);
  if (consent === null || consent.exp <= now) return null;
  const revoked = (await store.listRevocations(w.worker_id)).some(
    (r) => r.kind === "decommission" || (r.through_seq !== null && r.through_seq >= consent.seq),
  );
  if (revoked) return null;
  return { identity: consent.identity, payload: storedConsentPayload(consent) };
}

/** A clock frozen at one instant, so the stored and the signed iat/exp are the same. */
function frozenAt(ms: number): Clock {
  return { now: () => ms };
}

function createCommand(ctx: ApiContext): Route<CommandCreateRequest> {
  return defineRoute({
    method: "POST",
    path: "/v1/commands",
    auth: ["operator"],
    body: { validate: (v) => validate("command-create-request", v) },
    async handler({ caller, body }) {
      const actor = `apikey:${apiKeyId(caller)}`;
      const nowMs = ctx.clock.now();
      const now = Math.floor(nowMs / 1000);
      const w = await ctx.store.getWorker(body.worker);
      if (w === null) throw fail("AGENTD_E_CP_NOT_FOUND", "no such worker");
      if (w.decommissioned_at !== null) {
        throw fail("AGENTD_E_CP_FORBIDDEN", "this worker is decommissioned");
      }
      if (w.quarantine !== null) {
        throw fail("AGENTD_E_CP_QUARANTINED", "this worker is quarantined; lift it first");
      }
      const consent = await currentConsent(ctx.store, w, now);
      if (
        consent === null ||
        !isActionAllowedByConsent(body.action, consent.payload.rules.commands)
      ) {
        await ctx.store.appendAudit({
          actor,
          type: "command.refused",
          object: `worker:${w.worker_id}`,
          data: { action: body.action, reason: consent === null ? "no_consent" : "not_allowed" },
        });
        throw fail(
          "AGENTD_E_CP_FORBIDDEN",
          consent === null
            ? "the worker has no current consent, which allows no command"
            : "the worker's consent does not allow this action",
          { action: body.action },
        );
      }
      const ttl = body.ttl_s ?? ctx.settings.commandTtlS;
      const cmdId = randomUUID();
      const key = ctx.keys().signing.command;
      const issued = await ctx.store.issueCommand(
        {
          cmd_id: cmdId,
          worker_id: w.worker_id,
          action: body.action,
          args: body.args,
          iat: now,
          exp: now + ttl,
          now_ms: nowMs,
          // The seq is allocated in this consent's space, and the agent runs the command only
          // while this consent is in force there (docs/protocol.md, "Commands").
          consent_identity: consent.identity,
        },
        (seq) =>
          signCommand({
            privateKey: key.privateKey,
            worker: w.worker_id,
            seq,
            consentSha256: consent.identity,
            clock: frozenAt(nowMs),
            ttlS: ttl,
            cmdId,
            ...({ action: body.action, args: body.args } as CommandActionArgs),
          }).jws,
        {
          audit: ({ command, event }) => ({
            actor,
            type: "command.issued",
            object: `command:${cmdId}`,
            data: {
              worker: w.worker_id,
              action: command.action,
              args: command.args,
              seq: command.seq,
              consent: consent.identity,
              exp: command.exp,
              kid: key.kid,
              event_id: event.id,
            },
          }),
        },
      );
      const reply: CommandCreateResponse = {
        cmd_id: cmdId,
        worker: w.worker_id,
        seq: issued.command.seq,
        consent_sha256: consent.identity,
        exp: issued.command.exp,
        command: issued.command.jws,
        event_id: issued.event.id,
      };
      return { status: 200, body: reply };
    },
  });
}

function pollCommands(ctx: ApiContext): Route {
  return defineRoute({
    method: "GET",
    path: "/v1/workers/{id}/commands",
    auth: ["machine"],
    machineParam: "id",
    query: ["after"],
    async authorize({ params }) {
      await servableWorker(ctx.store, params.id as string, { allowDecommissioned: true });
    },
    async handler({ params, query }) {
      const q = validate("worker-commands-query", { ...query });
      const after = Number(q.after ?? "0");
      if (!Number.isSafeInteger(after)) {
        throw fail("AGENTD_E_SCHEMA", "after is too large", {
          schema: "worker-commands-query",
          pointer: "/after",
        });
      }
      const w = await servableWorker(ctx.store, params.id as string, {
        allowDecommissioned: true,
      });
      const { events, last } = await eventsAfter(ctx.store, w, after);
      const reply: WorkerCommandsResponse = { events, last_event_id: last };
      return { status: 200, body: reply };
    },
  });
}

function commandResult(ctx: ApiContext): Route<CommandResultRequest> {
  return defineRoute({
    method: "POST",
    path: "/v1/commands/{id}/result",
    auth: ["machine"],
    // The machine must be the worker the command was addressed to (404 before 403: the id
    // is a random UUID, so its existence tells a caller nothing it could use).
    async authorize({ caller, params }) {
      const command = await ctx.store.getCommand(params.id as string);
      if (command === null) throw fail("AGENTD_E_CP_NOT_FOUND", "no such command");
      if (caller.kind !== "machine" || caller.workerId !== command.worker_id) {
        throw fail("AGENTD_E_CP_FORBIDDEN", "this command was addressed to another worker");
      }
      await servableWorker(ctx.store, command.worker_id);
    },
    body: { validate: (v) => validate("command-result-request", v) },
    async handler({ params, body }) {
      const cmdId = params.id as string;
      const command = await ctx.store.getCommand(cmdId);
      if (command === null) throw fail("AGENTD_E_CP_NOT_FOUND", "no such command");
      const w = await servableWorker(ctx.store, command.worker_id);
      const verified = verifyCommandResult(body.result, {
        key: ctx.publicKeys.get(w.jwk),
        clock: ctx.clock,
        cmdId,
        worker: w.worker_id,
      });
      const { status, reason } = verified.payload;
      const actor = `worker:${w.worker_id}`;
      try {
        await ctx.store.recordCommandResult(
          {
            cmd_id: cmdId,
            worker_id: w.worker_id,
            status,
            jws: body.result,
            at: unixSeconds(ctx.clock),
          },
          {
            audit: {
              actor,
              type: "command.result",
              object: `command:${cmdId}`,
              data: { worker: w.worker_id, status, reason },
            },
          },
        );
      } catch (err) {
        // The store writes nothing when it refuses; the replay is audited here.
        if (isAgentdError(err) && err.code === "AGENTD_E_CP_REPLAY") {
          await ctx.store.appendAudit({
            actor,
            type: "command.result_replay",
            object: `command:${cmdId}`,
            data: { worker: w.worker_id, status },
          });
        }
        throw err;
      }
      const reply: CommandResultResponse = { cmd_id: cmdId, status };
      return { status: 200, body: reply };
    },
  });
}
