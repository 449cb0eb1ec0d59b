import { unixSeconds } from "../../lib/clock.ts";
import { publicKeyFromJwk } from "../../lib/crypto/ed25519.ts";
import { decodeJwsUnverified } from "../../lib/crypto/jws.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import type { Metric } from "../../lib/metrics/registry.ts";
import { defineRoute } from "../http/route.ts";
import type { VerifiedDocument } from "../protocol/documents/common.ts";
import { heartbeatAnomalies, verifyHeartbeat } from "../protocol/documents/heartbeat.ts";
import {
  type HeartbeatRequest,
  type HeartbeatResponse,
  MAX_PENDING_COMMANDS,
} from "../protocol/schemas/api-worker.ts";
import type { HeartbeatPayload } from "../protocol/schemas/heartbeat.ts";
import { matches, validate } from "../protocol/validate.ts";
import type { Heartbeat, Worker } from "../store/store.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { actorOf, auditingRefusals, authorizedWorker, authorizeWorker } from "./policies.ts";

/**
 * `POST /v1/workers/{id}/heartbeat` (docs/protocol.md, "Heartbeats"): the machine's signed
 * account of itself. Verified under the worker's registered key, about the worker of the path,
 * `|iat − now| ≤ maxSkewS`; then stored if its counter is above the last stored one — one
 * conditional update in the store's group commit, so concurrent duplicates cannot both pass
 * and many machines cost few commits. Equal or lower counters are 409 AGENTD_E_CP_REPLAY,
 * audited in the same transaction. Anomaly flags are computed against the previous stored
 * heartbeat, stored with it, audited when present and returned; they refuse nothing. Allowed
 * while the worker is quarantined, so that it stays visible.
 */

type Outcome = "accepted" | "replay" | "refused";
type VerifiedHeartbeat = VerifiedDocument<HeartbeatPayload>;

/** The payload of a stored heartbeat (verified when it was stored); null if unreadable. */
function storedPayload(h: Heartbeat | undefined): HeartbeatPayload | null {
  if (h === undefined) return null;
  try {
    const { payload } = decodeJwsUnverified(h.jws);
    return matches("heartbeat", payload) ? (payload as HeartbeatPayload) : null;
  } catch {
    return null;
  }
}

function verify(ctx: ApiContext, worker: Worker, token: string): VerifiedHeartbeat {
  return verifyHeartbeat(token, {
    key: publicKeyFromJwk(worker.jwk),
    clock: ctx.clock,
    worker: worker.worker_id,
    maxSkewS: ctx.settings.maxSkewS,
  });
}

async function record(
  ctx: ApiContext,
  worker: Worker,
  doc: VerifiedHeartbeat,
): Promise<HeartbeatResponse> {
  const hb = doc.payload;
  const workerId = worker.worker_id;
  const now = unixSeconds(ctx.clock);
  const [previous] = await ctx.store.listHeartbeats(workerId, { limit: 1 });
  const flags = heartbeatAnomalies(hb, storedPayload(previous), now);
  const object = `worker:${workerId}`;
  const actor = `worker:${workerId}`;
  const [result, pending] = await Promise.all([
    ctx.store.recordHeartbeat(
      {
        worker_id: workerId,
        counter: hb.counter,
        iat: hb.iat,
        received_at: now,
        jws: doc.jws,
        flags,
      },
      {
        audit: (r) => {
          if (r.status === "replay") {
            return {
              actor,
              type: "heartbeat.replay",
              object,
              data: { counter: hb.counter, last_counter: r.last_counter, identity: doc.identity },
            };
          }
          if (r.status === "accepted" && flags.length > 0) {
            return {
              actor,
              type: "heartbeat.anomaly",
              object,
              data: { counter: hb.counter, previous_counter: r.previous_counter, flags },
            };
          }
          return null;
        },
      },
    ),
    ctx.store.listPendingCommands(workerId, now),
  ]);
  if (result.status === "replay") {
    throw fail(
      "AGENTD_E_CP_REPLAY",
      `heartbeat counter ${hb.counter} is not above the last stored ${result.last_counter}`,
      { counter: hb.counter, last_counter: result.last_counter },
    );
  }
  if (result.status === "unknown_worker") throw fail("AGENTD_E_CP_NOT_FOUND", "no such worker");
  return {
    accepted: true,
    counter: hb.counter,
    flags,
    pending_commands: pending.slice(0, MAX_PENDING_COMMANDS).map((c) => c.cmd_id),
    server_time: now,
    // As read when the request was authorised: a publication racing with it shows next time.
    policy_version: worker.publication_version,
  };
}

export function heartbeatGroup(ctx: ApiContext): ApiGroup {
  const heartbeats: Metric = ctx.metrics.counter(
    "agentd_cp_heartbeats_total",
    "Heartbeats received, by outcome (accepted, replay, refused).",
    ["outcome"],
  );
  const count = (outcome: Outcome) => heartbeats.inc({ outcome });
  return {
    routes: [
      defineRoute<HeartbeatRequest>({
        method: "POST",
        path: "/v1/workers/{id}/heartbeat",
        auth: ["machine"],
        machineParam: "id",
        async authorize(a) {
          await authorizeWorker(ctx, a, { allowQuarantined: true });
        },
        body: { validate: (v) => validate("heartbeat-request", v) },
        async handler({ caller, req, body }) {
          const worker = authorizedWorker(req);
          let doc: VerifiedHeartbeat;
          try {
            // Signature, skew and another worker's document: audited here. Replays are
            // audited by the store, in the transaction that refuses them.
            doc = await auditingRefusals(
              ctx,
              {
                actor: actorOf(caller),
                type: "heartbeat.refused",
                object: () => `worker:${worker.worker_id}`,
              },
              async () => verify(ctx, worker, body.heartbeat),
            );
          } catch (err) {
            count("refused");
            throw err;
          }
          let reply: HeartbeatResponse;
          try {
            reply = await record(ctx, worker, doc);
          } catch (err) {
            if (isAgentdError(err) && err.code === "AGENTD_E_CP_REPLAY") count("replay");
            throw err;
          }
          count("accepted");
          return { status: 200, body: reply };
        },
      }),
    ],
  };
}
