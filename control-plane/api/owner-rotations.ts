import type { KeyObject } from "node:crypto";
import { unixSeconds } from "../../lib/clock.ts";
import { jwkThumbprint, publicJwk, publicKeyFromJwk } from "../../lib/crypto/ed25519.ts";
import { checkValidityTimes, verifyJws } from "../../lib/crypto/jws.ts";
import { fail } from "../../lib/errors.ts";
import { DOC_TYP, parseOwnerRotationPayload } from "../../policy-guard/documents.ts";
import type { Caller } from "../http/auth.ts";
import { defineRoute } from "../http/route.ts";
import type {
  OwnerRotationCreateRequest,
  OwnerRotationCreateResponse,
} from "../protocol/schemas/api-policy.ts";
import { validate } from "../protocol/validate.ts";
import type { Worker } from "../store/store.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { ownerKeyInForce } from "./owner-key.ts";
import { actorOf, auditingRefusals, authorizedWorker, authorizeWorker } from "./policies.ts";

/**
 * `POST /v1/workers/{id}/owner-rotations` (docs/protocol.md): the owner relays an owner-key
 * rotation (DOCUMENTS.md section 5) for one of its workers. It is checked as the agent will
 * check it — signed by the worker's owner key in force (kid and signature), about this
 * worker, naming an Ed25519 key that is not the one in force, its `iat` not ahead of our clock
 * beyond the skew — then stored with its `owner_rotation` stream event in one transaction, in
 * which the store decides the chain again under the worker's lock (signed by the key in force,
 * later than the last rotation, never stored before), and audited.
 *
 * From then on the worker's owner documents — consents, revocations, decommissions, the next
 * rotation — are verified under the new key (owner-key.ts). The owner account does not
 * change: its id and API keys still act for the worker; the rotation changes which key signs
 * for it. The control plane is not trusted with this: the agent verifies the same document
 * under the key it holds, and refuses one the control plane should not have relayed.
 */

async function rotate(
  ctx: ApiContext,
  caller: Caller,
  worker: Worker,
  body: OwnerRotationCreateRequest,
): Promise<OwnerRotationCreateResponse> {
  const inForce = await ownerKeyInForce(ctx, worker);
  const verified = verifyJws(body.document, {
    typ: DOC_TYP.rotation,
    resolveKey: (kid) => (kid === inForce.id ? inForce.key : undefined),
  });
  const p = parseOwnerRotationPayload(verified.payload);
  if (p.owner !== verified.header.kid) {
    throw fail("AGENTD_E_JWS_PAYLOAD", "owner is not the key that signed it", { member: "owner" });
  }
  if (p.worker !== worker.worker_id) {
    throw fail("AGENTD_E_JWS_PAYLOAD", "the document is about another worker", {
      member: "worker",
    });
  }
  const now = unixSeconds(ctx.clock);
  checkValidityTimes({ iat: p.iat }, now, ctx.settings.maxSkewS);
  let newKey: KeyObject;
  try {
    newKey = publicKeyFromJwk(p.new_owner_jwk);
  } catch (cause) {
    throw fail(
      "AGENTD_E_JWS_PAYLOAD",
      "new_owner_jwk is not an Ed25519 public JWK",
      { member: "new_owner_jwk" },
      cause,
    );
  }
  const to = jwkThumbprint(newKey);
  if (to === p.owner) {
    throw fail("AGENTD_E_JWS_PAYLOAD", "new_owner_jwk is the owner key in force", {
      member: "new_owner_jwk",
    });
  }
  const actor = actorOf(caller);
  const { event } = await ctx.store.storeOwnerRotation(
    {
      worker_id: worker.worker_id,
      identity: verified.identity,
      from_owner: p.owner,
      to_owner: to,
      new_owner_jwk: { ...publicJwk(newKey) },
      iat: p.iat,
      jws: body.document,
      at: now,
    },
    {
      audit: ({ rotation, event: e }) => ({
        actor,
        type: "owner_rotation.accepted",
        object: `worker:${worker.worker_id}`,
        data: {
          identity: rotation.identity,
          id: rotation.id,
          from_owner: rotation.from_owner,
          to_owner: rotation.to_owner,
          iat: rotation.iat,
          event_id: e.id,
        },
      }),
    },
  );
  return {
    worker: worker.worker_id,
    identity: verified.identity,
    from_owner: p.owner,
    to_owner: to,
    event_id: event.id,
  };
}

export function ownerRotationsGroup(ctx: ApiContext): ApiGroup {
  return {
    routes: [
      defineRoute<OwnerRotationCreateRequest>({
        method: "POST",
        path: "/v1/workers/{id}/owner-rotations",
        auth: ["owner"],
        async authorize(a) {
          await authorizeWorker(ctx, a, { mutation: true });
        },
        body: { validate: (v) => validate("owner-rotation-create-request", v) },
        async handler({ caller, req, body }) {
          const worker = authorizedWorker(req);
          const reply = await auditingRefusals(
            ctx,
            {
              actor: actorOf(caller),
              type: "owner_rotation.refused",
              object: () => `worker:${worker.worker_id}`,
            },
            () => rotate(ctx, caller, worker, body),
          );
          return { status: 200, body: reply };
        },
      }),
    ],
  };
}
