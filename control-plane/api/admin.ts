import { randomUUID } from "node:crypto";
import { unixSeconds } from "../../lib/clock.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import type { Caller } from "../http/auth.ts";
import { defineRoute, type Route } from "../http/route.ts";
import {
  type EmergencyStopApproveRequest,
  type EmergencyStopRequest,
  type EmergencyStopResponse,
  type QuarantineRequest,
  type QuarantineResponse,
  REQUIRED_APPROVALS,
  STOP_REQUEST_TTL_S,
} from "../protocol/schemas/api-admin.ts";
import { validate } from "../protocol/validate.ts";
import type { EmergencyStop, Worker } from "../store/store.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { isNothingToPublish, publishForWorker } from "./publish.ts";

/**
 * Fleet operations (docs/protocol.md sections 5 and 8): quarantining one worker, and the
 * emergency stop of all workers or one cohort under the two-person rule.
 *
 * Two-person rule: a stop executes once two distinct operator keys have approved it. The
 * requester's own approval is recorded at creation when it is an operator (an admin's request
 * counts for nothing: admins can mint operator keys, so only operator keys approve, and every
 * key creation is audited). The store makes a second approval by the same key a conflict and
 * the execution mark single (`markEmergencyStopExecuted`), so of two approvals racing, exactly
 * one executes; the stop `publication`s follow, one per worker in scope, each pushed at once.
 */

/** Workers stopped at once during an emergency stop (each is a signature and a commit). */
const STOP_CONCURRENCY = 8;
const WORKER_PAGE = 1000;

export function adminGroup(ctx: ApiContext): ApiGroup {
  let resuming: Promise<unknown> | undefined;
  return {
    routes: [quarantine(ctx), createStop(ctx), approveStop(ctx)],
    // In the background: a slow resume must not hold up the server's start.
    async start() {
      resuming = resumeEmergencyStops(ctx).catch((err: unknown) =>
        ctx.logger.error({ err }, "resuming emergency stops failed"),
      );
    },
    async stop() {
      await resuming;
    },
  };
}

/**
 * An approved emergency stop is executed to the end even across a crash: one marked executed
 * (`emergency_stop.executed` in the audit log) without its `emergency_stop.completed` was cut
 * off while publishing its stops — by a crash, a restart, a lost database connection — so
 * every instance, when it starts, publishes them again for the whole scope (stopping a
 * stopped worker again changes nothing but a version) and then records the completion
 * (`resumed: true`). Returns the ids resumed.
 */
export async function resumeEmergencyStops(ctx: ApiContext): Promise<string[]> {
  const resumed: string[] = [];
  let after = 0;
  for (;;) {
    const executed = await ctx.store.listAudit({
      type: "emergency_stop.executed",
      after_seq: after,
      limit: 1000,
    });
    for (const e of executed) {
      const done = await ctx.store.listAudit({
        type: "emergency_stop.completed",
        object: e.object,
        limit: 1,
      });
      if (done.length > 0) continue;
      const id = e.object.replace(/^emergency_stop:/, "");
      const stop = await ctx.store.getEmergencyStop(id);
      if (stop === null || stop.executed_at === null) continue;
      const counts = await executeStop(ctx, stop, "system");
      await ctx.store.appendAudit({
        actor: "system",
        type: "emergency_stop.completed",
        object: e.object,
        data: { ...counts, resumed: true },
      });
      ctx.logger.warn({ stop: id, ...counts }, "resumed an emergency stop cut off before it ended");
      resumed.push(id);
    }
    const last = executed.at(-1);
    if (last === undefined || executed.length < 1000) break;
    after = last.seq;
  }
  return resumed;
}

function apiKeyId(caller: Caller): string {
  if (caller.kind === "machine" || caller.kind === "token" || caller.kind === "public") {
    throw fail("AGENTD_E_INTERNAL", "an API key caller was expected");
  }
  return caller.keyId;
}

function quarantine(ctx: ApiContext): Route<QuarantineRequest> {
  return defineRoute({
    method: "POST",
    path: "/v1/admin/workers/{id}/quarantine",
    auth: ["admin", "operator"],
    async authorize({ params }) {
      if ((await ctx.store.getWorker(params.id as string)) === null) {
        throw fail("AGENTD_E_CP_NOT_FOUND", "no such worker");
      }
    },
    body: { validate: (v) => validate("quarantine-request", v) },
    async handler({ caller, params, body }) {
      const workerId = params.id as string;
      const actor = `apikey:${apiKeyId(caller)}`;
      const w = await ctx.store.getWorker(workerId);
      if (w === null) throw fail("AGENTD_E_CP_NOT_FOUND", "no such worker");
      if (w.quarantine !== null) throw fail("AGENTD_E_CP_CONFLICT", "quarantined already");
      if (w.decommissioned_at !== null) {
        throw fail("AGENTD_E_CP_CONFLICT", "this worker is decommissioned");
      }
      const at = unixSeconds(ctx.clock);
      const object = `worker:${workerId}`;
      await ctx.store.setQuarantine(
        workerId,
        { reason: body.reason, at },
        { audit: { actor, type: "worker.quarantined", object, data: { reason: body.reason } } },
      );
      // Its sessions end now: the machine must attest again, and then may only heartbeat.
      await ctx.store.deleteAccessTokens(workerId, {
        audit: (n) => ({ actor, type: "worker.tokens_deleted", object, data: { count: n } }),
      });
      await stopOne(ctx, w, actor, `quarantine: ${body.reason}`);
      const reply: QuarantineResponse = { worker: workerId, quarantined: true, at };
      return { status: 200, body: reply };
    },
  });
}

/**
 * Publishes `stop: true` for one worker; false when it could not (no valid consent to
 * countersign: such an agent does not mine anyway; or a failure, logged). The quarantine or
 * the emergency stop stays recorded either way, and publish.ts keeps a stop in force in every
 * later re-issue until the owner posts a new consent.
 */
async function stopOne(
  ctx: ApiContext,
  w: Worker,
  actor: string,
  reason: string,
): Promise<boolean> {
  if (w.decommissioned_at !== null) return false;
  try {
    await publishForWorker(ctx, w.worker_id, { stop: true, actor, reason });
    return true;
  } catch (err) {
    if (isNothingToPublish(err)) ctx.logger.info({ worker: w.worker_id }, "nothing to stop");
    else ctx.logger.error({ err, worker: w.worker_id }, "stop publication failed");
    return false;
  }
}

function stopResponse(
  s: EmergencyStop,
  now: number,
  workersStopped: number | null,
): EmergencyStopResponse {
  const expiresAt = s.at + STOP_REQUEST_TTL_S;
  return {
    stop_id: s.id,
    status: s.executed_at !== null ? "executed" : now >= expiresAt ? "expired" : "pending",
    scope: "cohort" in s.scope ? "cohort" : "all",
    cohort: "cohort" in s.scope ? s.scope.cohort : null,
    approvals: s.approvals.map((a) => a.approver_key_id).slice(0, REQUIRED_APPROVALS),
    required_approvals: REQUIRED_APPROVALS,
    expires_at: expiresAt,
    executed_at: s.executed_at,
    workers_stopped: workersStopped,
  };
}

function createStop(ctx: ApiContext): Route<EmergencyStopRequest> {
  return defineRoute({
    method: "POST",
    path: "/v1/admin/emergency-stop",
    auth: ["admin", "operator"],
    body: { validate: (v) => validate("emergency-stop-request", v) },
    async handler({ caller, body }) {
      const keyId = apiKeyId(caller);
      const actor = `apikey:${keyId}`;
      const at = unixSeconds(ctx.clock);
      const id = randomUUID();
      const object = `emergency_stop:${id}`;
      let stop = await ctx.store.createEmergencyStop(
        {
          id,
          scope: body.scope === "cohort" ? { cohort: body.cohort } : { all: true },
          requested_by: keyId,
          at,
        },
        {
          audit: {
            actor,
            type: "emergency_stop.created",
            object,
            data: {
              scope: body.scope,
              cohort: body.scope === "cohort" ? body.cohort : null,
              reason: body.reason,
              role: caller.kind,
            },
          },
        },
      );
      if (caller.kind === "operator") {
        stop = await ctx.store.approveEmergencyStop(id, keyId, at, {
          audit: { actor, type: "emergency_stop.approved", object, data: { by_requester: true } },
        });
      }
      return { status: 200, body: stopResponse(stop, at, null) };
    },
  });
}

function approveStop(ctx: ApiContext): Route<EmergencyStopApproveRequest> {
  return defineRoute({
    method: "POST",
    path: "/v1/admin/emergency-stop/{id}/approve",
    auth: ["operator"],
    async authorize({ params }) {
      if ((await ctx.store.getEmergencyStop(params.id as string)) === null) {
        throw fail("AGENTD_E_CP_NOT_FOUND", "no such emergency stop");
      }
    },
    body: { validate: (v) => validate("emergency-stop-approve-request", v) },
    async handler({ caller, params }) {
      const id = params.id as string;
      const keyId = apiKeyId(caller);
      const actor = `apikey:${keyId}`;
      const object = `emergency_stop:${id}`;
      const now = unixSeconds(ctx.clock);
      const current = await ctx.store.getEmergencyStop(id);
      if (current === null) throw fail("AGENTD_E_CP_NOT_FOUND", "no such emergency stop");
      const refuse = async (reason: string, message: string): Promise<never> => {
        await ctx.store.appendAudit({
          actor,
          type: "emergency_stop.approval_refused",
          object,
          data: { reason },
        });
        throw fail("AGENTD_E_CP_CONFLICT", message, { reason });
      };
      if (current.executed_at !== null) return refuse("executed", "executed already");
      if (now >= current.at + STOP_REQUEST_TTL_S) return refuse("expired", "this stop expired");
      let stop: EmergencyStop;
      try {
        stop = await ctx.store.approveEmergencyStop(id, keyId, now, {
          audit: { actor, type: "emergency_stop.approved", object, data: { by_requester: false } },
        });
      } catch (err) {
        if (!isAgentdError(err) || err.code !== "AGENTD_E_CP_CONFLICT") throw err;
        const latest = await ctx.store.getEmergencyStop(id);
        const again = latest?.approvals.some((a) => a.approver_key_id === keyId) === true;
        return refuse(again ? "same_key" : "executed", err.message);
      }
      if (stop.approvals.length < REQUIRED_APPROVALS) {
        return { status: 200, body: stopResponse(stop, now, null) };
      }
      let executed: EmergencyStop;
      try {
        executed = await ctx.store.markEmergencyStopExecuted(id, now, {
          audit: {
            actor,
            type: "emergency_stop.executed",
            object,
            data: { approvals: stop.approvals.map((a) => a.approver_key_id) },
          },
        });
      } catch (err) {
        // A concurrent approval executed it: this approval is recorded; the other request
        // publishes the stops and reports how many.
        if (!isAgentdError(err) || err.code !== "AGENTD_E_CP_CONFLICT") throw err;
        const s = await ctx.store.getEmergencyStop(id);
        return { status: 200, body: stopResponse(s ?? stop, now, null) };
      }
      const counts = await executeStop(ctx, executed, actor);
      await ctx.store.appendAudit({
        actor,
        type: "emergency_stop.completed",
        object,
        data: { ...counts },
      });
      return { status: 200, body: stopResponse(executed, now, counts.workers_stopped) };
    },
  });
}

/** `stop: true` for every live worker in scope, a few at a time; failures are counted. */
async function executeStop(
  ctx: ApiContext,
  stop: EmergencyStop,
  actor: string,
): Promise<{ workers_stopped: number; workers_not_stopped: number }> {
  const created = await ctx.store.listAudit({
    type: "emergency_stop.created",
    object: `emergency_stop:${stop.id}`,
    limit: 1,
  });
  const why = created[0]?.data.reason;
  const reason = `emergency stop ${stop.id}${typeof why === "string" ? `: ${why}` : ""}`;
  let stopped = 0;
  let notStopped = 0;
  let after: string | undefined;
  for (;;) {
    const page = await ctx.store.listWorkers({
      ...("cohort" in stop.scope ? { cohort: stop.scope.cohort } : {}),
      ...(after === undefined ? {} : { after }),
      limit: WORKER_PAGE,
    });
    const live = page.filter((w) => w.decommissioned_at === null);
    for (let i = 0; i < live.length; i += STOP_CONCURRENCY) {
      const done = await Promise.all(
        live.slice(i, i + STOP_CONCURRENCY).map((w) => stopOne(ctx, w, actor, reason)),
      );
      for (const ok of done) {
        if (ok) stopped++;
        else notStopped++;
      }
    }
    if (page.length < WORKER_PAGE) break;
    after = (page[page.length - 1] as Worker).worker_id;
  }
  return { workers_stopped: stopped, workers_not_stopped: notStopped };
}
