import type { IncomingMessage } from "node:http";
import { unixSeconds } from "../../lib/clock.ts";
import { decodeJwsUnverified } from "../../lib/crypto/jws.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import { statusForCode } from "../../lib/http/errors.ts";
import type { Metric } from "../../lib/metrics/registry.ts";
import { defineRoute } from "../http/route.ts";
import type { VerifiedDocument } from "../protocol/documents/common.ts";
import { heartbeatAnomalies, verifyHeartbeatAsync } from "../protocol/documents/heartbeat.ts";
import {
  type HeartbeatRequest,
  type HeartbeatResponse,
  MAX_PENDING_COMMANDS,
} from "../protocol/schemas/api-worker.ts";
import type { HeartbeatPayload } from "../protocol/schemas/heartbeat.ts";
import { matches, validate } from "../protocol/validate.ts";
import type { Heartbeat, Worker } from "../store/store.ts";
import { BoundedMap } from "./bounded-map.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { machineTokenAuthenticator } from "./machine-auth.ts";
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

/** Sent without an AgentD-Proof: the heartbeat itself is what authenticates the request. */
function proofless(req: IncomingMessage): boolean {
  return req.headers["agentd-proof"] === undefined;
}

async function verify(
  ctx: ApiContext,
  worker: Worker,
  token: string,
  isProof: boolean,
): Promise<VerifiedHeartbeat> {
  try {
    // On the thread pool: the event loop goes on parsing and storing other heartbeats.
    return await verifyHeartbeatAsync(token, {
      key: ctx.publicKeys.get(worker.jwk),
      clock: ctx.clock,
      worker: worker.worker_id,
      maxSkewS: ctx.settings.maxSkewS,
    });
  } catch (err) {
    // Without a separate proof, a heartbeat that does not verify leaves the caller
    // unauthenticated: 401, whatever the flaw (signature, worker, freshness).
    if (isProof && isAgentdError(err) && statusForCode(err.code) < 500) {
      throw fail(
        "AGENTD_E_CP_PROOF_INVALID",
        `the heartbeat, sent as the request's proof, is invalid (${err.code}): ${err.message}`,
        { reason: err.code },
        err,
      );
    }
    throw err;
  }
}

/**
 * The last accepted heartbeat of each worker, as this instance saw it: the anomaly flags
 * compare against it. Used only while it is the one the store holds (its counter is the
 * worker row's `last_counter`, read for this request); otherwise — another instance took the
 * last one, or it was evicted — the store is asked. Saves a read and a JWS parse per heartbeat.
 */
type LastHeartbeats = BoundedMap<string, HeartbeatPayload>;

async function previousPayload(
  ctx: ApiContext,
  last: LastHeartbeats,
  worker: Worker,
): Promise<HeartbeatPayload | null> {
  const known = last.get(worker.worker_id);
  if (known !== undefined && known.counter === worker.last_counter) return known;
  if (worker.last_counter === 0) return null;
  const [previous] = await ctx.store.listHeartbeats(worker.worker_id, { limit: 1 });
  return storedPayload(previous);
}

async function record(
  ctx: ApiContext,
  last: LastHeartbeats,
  worker: Worker,
  doc: VerifiedHeartbeat,
): Promise<HeartbeatResponse> {
  const hb = doc.payload;
  const workerId = worker.worker_id;
  const now = unixSeconds(ctx.clock);
  const flags = heartbeatAnomalies(hb, await previousPayload(ctx, last, worker), now);
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
  last.set(workerId, hb);
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
  const last: LastHeartbeats = new BoundedMap(100_000);
  return {
    routes: [
      defineRoute<HeartbeatRequest>({
        method: "POST",
        path: "/v1/workers/{id}/heartbeat",
        auth: ["machine"],
        machineParam: "id",
        // The heartbeat is its own proof of possession (docs/protocol.md, "Heartbeats").
        machineSignedBody: machineTokenAuthenticator(ctx),
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
              async () => verify(ctx, worker, body.heartbeat, proofless(req)),
            );
          } catch (err) {
            count("refused");
            throw err;
          }
          let reply: HeartbeatResponse;
          try {
            reply = await record(ctx, last, worker, doc);
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
