import { randomUUID } from "node:crypto";
import { unixSeconds } from "../../lib/clock.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import type { Caller } from "../http/auth.ts";
import { defineRoute, type Route } from "../http/route.ts";
import {
  type EmergencyStopApproveRequest,
  type EmergencyStopRequest,
  type EmergencyStopResponse,
  type QuarantineLiftResponse,
  type QuarantineRequest,
  type QuarantineResponse,
  REQUIRED_APPROVALS,
  STOP_REQUEST_TTL_S,
} from "../protocol/schemas/api-admin.ts";
import { validate } from "../protocol/validate.ts";
import type { EmergencyStop, Worker } from "../store/store.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { periodic } from "./periodic.ts";
import { isNothingToPublish, isOwnerResumed, publishForWorker } from "./publish.ts";

/**
 * Fleet operations (docs/protocol.md sections 5 and 8): quarantining one worker and lifting
 * its quarantine, and the emergency stop of all workers or one cohort under the two-person
 * rule.
 *
 * Two-person rule: a stop executes once two distinct operator keys have approved it. The
 * requester's own approval is recorded at creation when it is an operator (an admin's request
 * counts for nothing: admins can mint operator keys, so only operator keys approve, and every
 * key creation is audited). The store makes a second approval by the same key a conflict and
 * the execution mark single (`markEmergencyStopExecuted`), so of two approvals racing, exactly
 * one executes; the stop `publication`s follow, one per worker in scope, each pushed at once.
 *
 * What a stop covers: the consents accepted up to its execution (`executed_at`; a consent of
 * the same second included — the tie goes to the stop). A worker whose owner posted a
 * consent after that has decided to mine again after the stop, and the stop leaves it alone
 * (`workers_skipped`): decided per worker when its stop is planned, and planned again if a
 * consent is committed meanwhile (publish.ts), so a stop published late — by a slow run over
 * a large fleet, or by a resume after a crash — never overrides an owner who acted since.
 *
 * Who publishes the stops: one claim at a time (`Store.claimEmergencyStop`), a lease renewed
 * while it works. The approval that executes the stop claims it in the same transaction;
 * `resumeEmergencyStops` claims a stop whose executor died (its lease ran out) and finishes
 * it. Of instances racing for one stop exactly one holds the claim, and only the holder
 * records the completion, once.
 */

/** Workers stopped at once during an emergency stop (each is a signature and a commit). */
const STOP_CONCURRENCY = 8;
const WORKER_PAGE = 1000;
/** How long a claim on publishing a stop's publications holds unless renewed. */
export const STOP_CLAIM_LEASE_S = 300;
/** How often each instance looks for executed stops nobody is finishing (default). */
const RESUME_INTERVAL_MS = 60_000;

export interface AdminGroupOptions {
  /** Default 60,000; the first look is at once, when the server starts. */
  readonly resumeIntervalMs?: number;
  /** False: no background resume (tests that call resumeEmergencyStops themselves). */
  readonly resumeInBackground?: boolean;
}

export function adminGroup(ctx: ApiContext, o: AdminGroupOptions = {}): ApiGroup {
  // In the background: a slow resume must not hold up the server's start. Never two at once.
  const resumer = periodic({
    timers: ctx.timers,
    intervalMs: o.resumeIntervalMs ?? RESUME_INTERVAL_MS,
    random: () => 0,
    tick: () => resumeEmergencyStops(ctx),
    onError: (err) => ctx.logger.error({ err }, "resuming emergency stops failed"),
  });
  return {
    routes: [quarantine(ctx), liftQuarantine(ctx), createStop(ctx), approveStop(ctx)],
    async start() {
      if (o.resumeInBackground !== false) resumer.start();
    },
    async stop() {
      await resumer.stop();
    },
  };
}

/**
 * An approved emergency stop is executed to the end even across a crash: one executed but not
 * completed whose claim has run out was cut off while publishing its stops — by a crash, a
 * restart, a lost database connection — so an instance claims it (one only: the claim is a
 * conditional update), publishes the stops again for the whole scope (stopping a stopped
 * worker again changes nothing but a version; a worker whose owner consented after the stop
 * is left alone) and records the completion (`resumed: true`). Every instance looks when it
 * starts and every minute after. Returns the ids it finished.
 */
export async function resumeEmergencyStops(ctx: ApiContext): Promise<string[]> {
  const resumed: string[] = [];
  for (const candidate of await ctx.store.listUnfinishedEmergencyStops(100)) {
    const by = randomUUID();
    const now = unixSeconds(ctx.clock);
    const stop = await ctx.store.claimEmergencyStop(
      candidate.id,
      {
        by,
        until: now + STOP_CLAIM_LEASE_S,
      },
      now,
    );
    // Another instance is on it (or finished it meanwhile).
    if (stop === null) continue;
    const counts = await runStop(ctx, stop, "system", by, true);
    if (counts === null) continue;
    ctx.logger.warn(
      { stop: stop.id, ...counts },
      "resumed an emergency stop cut off before it ended",
    );
    resumed.push(stop.id);
  }
  return resumed;
}

/**
 * Publishes the stops of an executed stop under the claim `by`, then records the completion
 * (audited `emergency_stop.completed`). Null when the claim was lost on the way (another
 * instance took over after the lease ran out, and finishes it).
 */
async function runStop(
  ctx: ApiContext,
  stop: EmergencyStop,
  actor: string,
  by: string,
  resumed: boolean,
): Promise<StopCounts | null> {
  const counts = await executeStop(ctx, stop, actor, by);
  if (counts === null) return null;
  const object = `emergency_stop:${stop.id}`;
  try {
    await ctx.store.completeEmergencyStop(stop.id, by, unixSeconds(ctx.clock), {
      audit: {
        actor,
        type: "emergency_stop.completed",
        object,
        data: { ...counts, ...(resumed ? { resumed: true } : {}) },
      },
    });
  } catch (err) {
    if (!isAgentdError(err) || err.code !== "AGENTD_E_CP_CONFLICT") throw err;
    ctx.logger.warn({ stop: stop.id, err }, "another instance finishes this emergency stop");
    return null;
  }
  return counts;
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

function liftQuarantine(ctx: ApiContext): Route {
  return defineRoute({
    method: "DELETE",
    path: "/v1/admin/workers/{id}/quarantine",
    auth: ["operator"],
    async authorize({ params }) {
      if ((await ctx.store.getWorker(params.id as string)) === null) {
        throw fail("AGENTD_E_CP_NOT_FOUND", "no such worker");
      }
    },
    async handler({ caller, params }) {
      const workerId = params.id as string;
      const actor = `apikey:${apiKeyId(caller)}`;
      const at = unixSeconds(ctx.clock);
      // Conditional in the store: not quarantined (or decommissioned) is 409, nothing audited.
      const { lifted } = await ctx.store.liftQuarantine(workerId, {
        audit: (r) => ({
          actor,
          type: "worker.quarantine_lifted",
          object: `worker:${workerId}`,
          data: { reason: r.lifted.reason, quarantined_at: r.lifted.at },
        }),
      });
      // Nothing is published: a stop in force stays until the owner posts a new consent.
      const reply: QuarantineLiftResponse = { worker: workerId, quarantined: false, at, lifted };
      return { status: 200, body: reply };
    },
  });
}

type StopOutcome = "stopped" | "not_stopped" | "skipped";

/**
 * Publishes `stop: true` for one worker: `not_stopped` when it could not (no valid consent
 * to countersign: such an agent does not mine anyway; or a failure, logged), `skipped` when
 * the stop covers consents up to `coversConsentsUntil` and the owner consented after that.
 * The quarantine or the emergency stop stays recorded either way, and publish.ts keeps a stop
 * in force in every later re-issue until the owner posts a new consent.
 */
async function stopOne(
  ctx: ApiContext,
  w: Worker,
  actor: string,
  reason: string,
  coversConsentsUntil?: number,
): Promise<StopOutcome> {
  if (w.decommissioned_at !== null) return "not_stopped";
  try {
    await publishForWorker(ctx, w.worker_id, {
      stop: true,
      actor,
      reason,
      ...(coversConsentsUntil === undefined ? {} : { coversConsentsUntil }),
    });
    return "stopped";
  } catch (err) {
    if (isOwnerResumed(err)) {
      ctx.logger.info({ worker: w.worker_id }, "the owner consented after the stop: left alone");
      return "skipped";
    }
    if (isNothingToPublish(err)) ctx.logger.info({ worker: w.worker_id }, "nothing to stop");
    else ctx.logger.error({ err, worker: w.worker_id }, "stop publication failed");
    return "not_stopped";
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
      // This request publishes the stops: claimed in the same transaction as the execution.
      const by = randomUUID();
      try {
        executed = await ctx.store.markEmergencyStopExecuted(id, now, {
          claim: { by, until: now + STOP_CLAIM_LEASE_S },
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
      const counts = await runStop(ctx, executed, actor, by, false);
      return {
        status: 200,
        body: stopResponse(executed, now, counts === null ? null : counts.workers_stopped),
      };
    },
  });
}

interface StopCounts {
  readonly workers_stopped: number;
  readonly workers_not_stopped: number;
  /** Left alone: their owner consented after the stop was executed. */
  readonly workers_skipped: number;
}

/**
 * `stop: true` for every live worker in scope whose consent the stop covers, a few at a
 * time; failures are counted. The claim `by` is renewed as it goes; null when it was lost
 * (another instance took the stop over): this one then stops publishing.
 */
async function executeStop(
  ctx: ApiContext,
  stop: EmergencyStop,
  actor: string,
  by: string,
): Promise<StopCounts | null> {
  if (stop.executed_at === null) throw fail("AGENTD_E_INTERNAL", "the stop is not executed");
  const executedAt = stop.executed_at;
  const created = await ctx.store.listAudit({
    type: "emergency_stop.created",
    object: `emergency_stop:${stop.id}`,
    limit: 1,
  });
  const why = created[0]?.data.reason;
  const reason = `emergency stop ${stop.id}${typeof why === "string" ? `: ${why}` : ""}`;
  const counts = { stopped: 0, not_stopped: 0, skipped: 0 };
  let renewed = unixSeconds(ctx.clock);
  let after: string | undefined;
  for (;;) {
    const page = await ctx.store.listWorkers({
      ...("cohort" in stop.scope ? { cohort: stop.scope.cohort } : {}),
      ...(after === undefined ? {} : { after }),
      limit: WORKER_PAGE,
    });
    const live = page.filter((w) => w.decommissioned_at === null);
    for (let i = 0; i < live.length; i += STOP_CONCURRENCY) {
      const now = unixSeconds(ctx.clock);
      if (now - renewed >= STOP_CLAIM_LEASE_S / 3) {
        const held = await ctx.store.claimEmergencyStop(
          stop.id,
          { by, until: now + STOP_CLAIM_LEASE_S },
          now,
        );
        if (held === null) {
          ctx.logger.warn({ stop: stop.id }, "lost the claim on an emergency stop: stopping here");
          return null;
        }
        renewed = now;
      }
      const done = await Promise.all(
        live.slice(i, i + STOP_CONCURRENCY).map((w) => stopOne(ctx, w, actor, reason, executedAt)),
      );
      for (const outcome of done) counts[outcome]++;
    }
    if (page.length < WORKER_PAGE) break;
    after = (page[page.length - 1] as Worker).worker_id;
  }
  return {
    workers_stopped: counts.stopped,
    workers_not_stopped: counts.not_stopped,
    workers_skipped: counts.skipped,
  };
}
