import { unixSeconds } from "../../lib/clock.ts";
import { checkValidityTimes, documentIdentity, verifyJws } from "../../lib/crypto/jws.ts";
import { fail } from "../../lib/errors.ts";
import {
  DOC_TYP,
  parseDecommissionPayload,
  parseRevocationPayload,
} from "../../policy-guard/documents.ts";
import type { Caller } from "../http/auth.ts";
import { defineRoute } from "../http/route.ts";
import type {
  RevocationCreateRequest,
  RevocationCreateResponse,
} from "../protocol/schemas/api-policy.ts";
import { validate } from "../protocol/validate.ts";
import type { RevocationKind, Worker } from "../store/store.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { ownerKeyInForce } from "./owner-key.ts";
import { actorOf, auditingRefusals, authorizedWorker, authorizeWorker } from "./policies.ts";
import { stopWorker } from "./publish.ts";

/**
 * `POST /v1/workers/{id}/revocations` (docs/protocol.md): an owner-signed revocation or
 * decommission (DOCUMENTS.md section 5, told apart by `typ`), signed by the worker's owner key
 * in force (the owner's registered key, or the last owner-key rotation's: owner-rotations.ts),
 * about the worker of the path. It is stored with its
 * stream event in one transaction (the stream pushes it to the agent at once) and audited.
 *
 * A revocation that covers the current consent (`through_seq` ≥ its seq), and every
 * decommission, is followed by a `stop: true` publication, so that an agent that only polls
 * stops too. A revocation of older consents only is stored and pushed, but stops nothing:
 * the consent in force is not revoked, and a stop would stay in force until the owner signed
 * again. The same document twice is 409 AGENTD_E_CP_CONFLICT.
 */

interface OwnerDocument {
  readonly kind: RevocationKind;
  readonly identity: string;
  readonly throughSeq: number | null;
  readonly iat: number;
}

async function verifyOwnerDocument(
  ctx: ApiContext,
  worker: Worker,
  jws: string,
): Promise<OwnerDocument> {
  const owner = await ownerKeyInForce(ctx, worker);
  const verified = verifyJws(jws, {
    typ: [DOC_TYP.revocation, DOC_TYP.decommission],
    resolveKey: (kid) => (kid === owner.id ? owner.key : undefined),
  });
  const kind: RevocationKind =
    verified.header.typ === DOC_TYP.revocation ? "revocation" : "decommission";
  const revocation = kind === "revocation" ? parseRevocationPayload(verified.payload) : null;
  const payload = revocation ?? parseDecommissionPayload(verified.payload);
  if (payload.owner !== verified.header.kid) {
    throw fail("AGENTD_E_JWS_PAYLOAD", "owner is not the key that signed it", { member: "owner" });
  }
  if (payload.worker !== worker.worker_id) {
    throw fail("AGENTD_E_JWS_PAYLOAD", "the document is about another worker", {
      member: "worker",
    });
  }
  checkValidityTimes({ iat: payload.iat }, unixSeconds(ctx.clock), ctx.settings.maxSkewS);
  return {
    kind,
    identity: verified.identity,
    throughSeq: revocation?.through_seq ?? null,
    iat: payload.iat,
  };
}

function identityOf(jws: string): string | null {
  try {
    return documentIdentity(jws);
  } catch {
    return null;
  }
}

async function revoke(
  ctx: ApiContext,
  caller: Caller,
  worker: Worker,
  body: RevocationCreateRequest,
): Promise<RevocationCreateResponse> {
  const actor = actorOf(caller);
  const doc = await verifyOwnerDocument(ctx, worker, body.document);
  const stored = await ctx.store.listRevocations(worker.worker_id);
  // A quick answer for the common case; the store checks again under the worker's lock, so
  // two racing copies cannot both be stored.
  if (stored.some((r) => identityOf(r.jws) === doc.identity)) {
    throw fail("AGENTD_E_CP_CONFLICT", "this document is stored already", { reason: "duplicate" });
  }
  const { event } = await ctx.store.storeRevocation(
    {
      worker_id: worker.worker_id,
      kind: doc.kind,
      through_seq: doc.throughSeq,
      jws: body.document,
      at: unixSeconds(ctx.clock),
    },
    {
      audit: ({ revocation, event: e }) => ({
        actor,
        type: `${doc.kind}.accepted`,
        object: `worker:${worker.worker_id}`,
        data: {
          identity: doc.identity,
          id: revocation.id,
          through_seq: doc.throughSeq,
          iat: doc.iat,
          event_id: e.id,
        },
      }),
    },
  );
  const consent = await ctx.store.latestConsent(worker.worker_id);
  const covers =
    doc.kind === "decommission" ||
    (consent !== null && doc.throughSeq !== null && doc.throughSeq >= consent.seq);
  if (covers) await stopWorker(ctx, worker.worker_id, { actor, reason: doc.kind });
  return { worker: worker.worker_id, kind: doc.kind, identity: doc.identity, event_id: event.id };
}

export function revocationsGroup(ctx: ApiContext): ApiGroup {
  return {
    routes: [
      defineRoute<RevocationCreateRequest>({
        method: "POST",
        path: "/v1/workers/{id}/revocations",
        auth: ["owner"],
        async authorize(a) {
          await authorizeWorker(ctx, a, { mutation: true });
        },
        body: { validate: (v) => validate("revocation-create-request", v) },
        async handler({ caller, req, body }) {
          const worker = authorizedWorker(req);
          const reply = await auditingRefusals(
            ctx,
            {
              actor: actorOf(caller),
              type: "revocation.refused",
              object: () => `worker:${worker.worker_id}`,
            },
            () => revoke(ctx, caller, worker, body),
          );
          return { status: 200, body: reply };
        },
      }),
    ],
  };
}
