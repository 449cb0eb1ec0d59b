import type { IncomingMessage } from "node:http";
import { unixSeconds } from "../../lib/clock.ts";
import { checkValidityTimes, decodeJwsUnverified, verifyJws } from "../../lib/crypto/jws.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import { statusForCode } from "../../lib/http/errors.ts";
import { DOC_TYP, parseConsentPayload } from "../../policy-guard/documents.ts";
import { EMPTY_COUNTERS, verifyDocuments } from "../../policy-guard/verify.ts";
import type { Caller } from "../http/auth.ts";
import { conditionalJson, etagOf, ifNoneMatchHits } from "../http/conditional.ts";
import { longPoll, preferWait } from "../http/long-poll.ts";
import { type AuthorizeContext, defineRoute } from "../http/route.ts";
import type {
  PolicyCreateRequest,
  PolicyCreateResponse,
  WorkerPolicyResponse,
} from "../protocol/schemas/api-policy.ts";
import { validate } from "../protocol/validate.ts";
import type { Worker } from "../store/store.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { workerReadAtAuthentication } from "./machine-auth.ts";
import { ownerKeyInForce } from "./owner-key.ts";
import { publishNewConsent } from "./publish.ts";

/**
 * Consents in, bundles out (docs/protocol.md, "Consent, policy, revocation, assignment").
 *
 * `POST /v1/policies`: the owner's consent is checked as an agent would check it — signed by
 * the worker's owner key in force (the calling owner's registered key, or the key an
 * owner-key rotation for that worker named: owner-key.ts), for one of that owner's workers, well
 * formed, unexpired, `seq` above the highest accepted and not covered by a stored revocation
 * (policy-guard's own binding rules, `verifyDocuments`) — then stored and published with the
 * next version in one transaction, in which the store decides seq, ownership, revocation and
 * decommission again under the worker's lock (what was read before may have changed).
 *
 * `GET /v1/workers/{id}/policy`: the bundle `{consent, publication}` where `consent` is the
 * consent the latest publication countersigns (so the two always bind, even while a newer
 * consent is being published), with a strong ETag and `Prefer: wait=N` long polls woken by
 * `ctx.policyNotifier`.
 *
 * This file also holds the worker-scoped access check the other worker groups use.
 */

/** 128 KiB: a consent may carry a 64 KiB payload (docs/protocol.md, "Sizes"). */
export const POLICY_BODY_LIMIT = 128 * 1024;

// ---- access to a worker (shared by the worker-scoped groups) --------------------------------

export interface WorkerAccess {
  /** Machine calls allowed while the worker is quarantined (only the heartbeat). */
  readonly allowQuarantined?: boolean;
  /** The call changes the worker: refused for every caller once it is decommissioned. */
  readonly mutation?: boolean;
}

// The worker read by `authorize`, handed to the handler of the same request without a second
// read. Keyed by the request object, so nothing outlives it.
const authorized = new WeakMap<IncomingMessage, Worker>();

/**
 * The worker named by path parameter `param`, if the caller may act on it: unknown → 404; an
 * owner's key for another owner's worker → 403; a machine (already bound to its own id by
 * `machineParam`) of a decommissioned worker → 403, of a quarantined one → 403
 * AGENTD_E_CP_QUARANTINED unless allowed.
 */
export async function authorizeWorker(
  ctx: ApiContext,
  a: AuthorizeContext,
  access: WorkerAccess = {},
  param = "id",
): Promise<Worker> {
  const id = a.params[param] ?? "";
  const worker =
    (a.caller.kind === "machine" ? workerReadAtAuthentication(a.req, id) : undefined) ??
    (await ctx.store.getWorker(id));
  if (worker === null) throw fail("AGENTD_E_CP_NOT_FOUND", "no such worker");
  const { caller } = a;
  if (caller.kind === "owner" && worker.owner_id !== caller.ownerId) {
    throw fail("AGENTD_E_CP_FORBIDDEN", "this worker belongs to another owner");
  }
  if (caller.kind === "machine") {
    if (caller.workerId !== worker.worker_id) {
      throw fail("AGENTD_E_CP_FORBIDDEN", "a machine may only act on its own worker");
    }
    if (worker.decommissioned_at !== null) {
      throw fail("AGENTD_E_CP_FORBIDDEN", "this worker is decommissioned");
    }
    if (worker.quarantine !== null && access.allowQuarantined !== true) {
      throw fail("AGENTD_E_CP_QUARANTINED", "this worker is quarantined");
    }
  }
  if (access.mutation === true && worker.decommissioned_at !== null) {
    throw fail("AGENTD_E_CP_FORBIDDEN", "this worker is decommissioned");
  }
  authorized.set(a.req, worker);
  return worker;
}

/** The worker `authorizeWorker` admitted for this request. */
export function authorizedWorker(req: IncomingMessage): Worker {
  const worker = authorized.get(req);
  if (worker === undefined) throw fail("AGENTD_E_INTERNAL", "route has no authorizeWorker");
  return worker;
}

/** The audit actor for a caller. */
export function actorOf(caller: Caller): string {
  switch (caller.kind) {
    case "machine":
      return `worker:${caller.workerId}`;
    case "token":
    case "public":
      return caller.kind;
    default:
      return `apikey:${caller.keyId}`;
  }
}

/**
 * Runs `fn`; a refusal it throws (a 4xx AgentdError: forged or tampered documents, replays,
 * someone else's worker) is appended to the audit log as `type` before it is rethrown.
 * Internal and store failures are not refusals and are not audited here.
 */
export async function auditingRefusals<T>(
  ctx: ApiContext,
  event: { readonly actor: string; readonly type: string; readonly object: () => string },
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isAgentdError(err) && statusForCode(err.code) < 500) {
      const reason = err.context.reason;
      await ctx.store.appendAudit({
        actor: event.actor,
        type: event.type,
        object: event.object(),
        data: { code: err.code, ...(typeof reason === "string" ? { reason } : {}) },
      });
    }
    throw err;
  }
}

// ---- POST /v1/policies ----------------------------------------------------------------------

const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;

/**
 * `owner` and `worker` as the consent claims them, before anything is verified; only values
 * shaped like ids (they reach a store lookup and the audit log's `object`).
 */
function claimed(consent: string): { owner?: string; worker?: string } {
  const { payload } = decodeJwsUnverified(consent);
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) return {};
  const p = payload as Record<string, unknown>;
  const id = (v: unknown) => typeof v === "string" && THUMBPRINT.test(v);
  return {
    ...(id(p.owner) ? { owner: p.owner as string } : {}),
    ...(id(p.worker) ? { worker: p.worker as string } : {}),
  };
}

async function acceptConsent(
  ctx: ApiContext,
  caller: Extract<Caller, { kind: "owner" }>,
  body: PolicyCreateRequest,
  onWorker: (id: string) => void,
): Promise<PolicyCreateResponse> {
  const actor = actorOf(caller);
  const claims = claimed(body.consent);
  // Who and what first (403/404), then the signature and the document (400), then seq (409).
  if (claims.worker !== undefined) onWorker(claims.worker);
  const [owner, worker] = await Promise.all([
    ctx.store.getOwner(caller.ownerId),
    claims.worker === undefined ? null : ctx.store.getWorker(claims.worker),
  ]);
  if (owner === null) throw fail("AGENTD_E_CP_FORBIDDEN", "the owner is not registered");
  if (claims.worker !== undefined) {
    if (worker === null) throw fail("AGENTD_E_CP_NOT_FOUND", "no such worker");
    if (worker.owner_id !== caller.ownerId) {
      throw fail("AGENTD_E_CP_FORBIDDEN", "this worker belongs to another owner");
    }
    if (worker.decommissioned_at !== null) {
      throw fail("AGENTD_E_CP_FORBIDDEN", "this worker is decommissioned");
    }
  }
  // The key the consent must be signed by: the worker's owner key in force, which follows
  // owner-key rotations (owner-key.ts); the owner's own key when the consent names no worker
  // (it is refused below in any case).
  const signer =
    worker === null
      ? { id: owner.id, key: ctx.publicKeys.get(owner.jwk) }
      : await ownerKeyInForce(ctx, worker, owner);
  if (claims.owner !== undefined && claims.owner !== signer.id) {
    throw fail("AGENTD_E_CP_FORBIDDEN", "the consent names another owner key");
  }
  const ownerKey = signer.key;
  const verified = verifyJws(body.consent, {
    typ: DOC_TYP.consent,
    resolveKey: (kid) => (kid === signer.id ? ownerKey : undefined),
  });
  const payload = parseConsentPayload(verified.payload);
  // A parsed consent always names a worker, so `worker` was looked up above.
  if (worker === null) throw fail("AGENTD_E_INTERNAL", "consent worker not looked up");
  const now = unixSeconds(ctx.clock);
  // nbf may lie ahead (a consent for later); iat may not, beyond the signer's clock skew.
  checkValidityTimes({ iat: payload.iat, exp: payload.exp }, now, ctx.settings.maxSkewS);

  const revocations = await ctx.store.listRevocations(worker.worker_id);
  const revokedThroughSeq = Math.max(
    0,
    ...revocations.map((r) => (r.kind === "revocation" ? (r.through_seq ?? 0) : 0)),
  );
  // The agent's own binding rules, so the control plane never publishes what agents refuse.
  const docs = verifyDocuments({
    bundle: { consent: body.consent },
    trust: { owner: ownerKey, publication: [] },
    worker: worker.worker_id,
    counters: { ...EMPTY_COUNTERS, highestSeq: worker.consent_seq ?? 0, revokedThroughSeq },
  });
  for (const reason of docs.consentReasons) {
    if (reason === "consent.revoked") {
      throw fail("AGENTD_E_CP_CONFLICT", `consent seq ${payload.seq} is revoked`, {
        reason: "revoked",
        seq: payload.seq,
        revoked_through_seq: revokedThroughSeq,
      });
    }
    if (reason === "consent.seq_rollback" || reason === "consent.seq_conflict") {
      throw fail("AGENTD_E_CP_CONFLICT", `consent seq ${payload.seq} is not above the stored`, {
        reason: "seq",
        seq: payload.seq,
      });
    }
    throw fail("AGENTD_E_JWS_PAYLOAD", `the consent does not bind: ${reason}`, { reason });
  }

  // Stored together with the publication that countersigns it, in one transaction that
  // re-decides the seq, revocation and decommission checks under the worker's lock: two
  // consents racing cannot both pass the checks above and both be stored, nor can one be
  // answered with a publication of the other (publish.ts, publishNewConsent).
  const { publication } = await publishNewConsent(
    ctx,
    {
      identity: verified.identity,
      worker_id: worker.worker_id,
      owner_id: caller.ownerId,
      seq: payload.seq,
      jws: body.consent,
      exp: payload.exp,
      accepted_at: now,
    },
    {
      actor,
      reason: "consent",
      audit: {
        actor,
        type: "consent.accepted",
        object: `worker:${worker.worker_id}`,
        data: {
          identity: verified.identity,
          seq: payload.seq,
          policy_id: payload.policy_id,
          exp: payload.exp,
        },
      },
    },
  );
  return {
    worker: worker.worker_id,
    seq: payload.seq,
    version: publication.version,
    consent_sha256: verified.identity,
    publication: publication.jws,
  };
}

// ---- GET /v1/workers/{id}/policy ------------------------------------------------------------

/** The latest publication with the consent it countersigns, or null before the first. */
export async function currentBundle(
  ctx: ApiContext,
  workerId: string,
): Promise<WorkerPolicyResponse | null> {
  const publication = await ctx.store.latestPublication(workerId);
  if (publication === null || publication.consent_identity === null) return null;
  const consent = await ctx.store.getConsent(publication.consent_identity);
  if (consent === null) return null;
  return { consent: consent.jws, publication: publication.jws };
}

// ---- the group ------------------------------------------------------------------------------

export function policiesGroup(ctx: ApiContext): ApiGroup {
  return {
    routes: [
      defineRoute<PolicyCreateRequest>({
        method: "POST",
        path: "/v1/policies",
        auth: ["owner"],
        body: {
          limit: POLICY_BODY_LIMIT,
          validate: (v) => validate("policy-create-request", v),
        },
        async handler({ caller, body }) {
          if (caller.kind !== "owner") throw fail("AGENTD_E_CP_FORBIDDEN", "owners only");
          let object = `owner:${caller.ownerId}`;
          const reply = await auditingRefusals(
            ctx,
            { actor: actorOf(caller), type: "consent.refused", object: () => object },
            () =>
              acceptConsent(ctx, caller, body, (id) => {
                object = `worker:${id}`;
              }),
          );
          return { status: 200, body: reply };
        },
      }),
      defineRoute({
        method: "GET",
        path: "/v1/workers/{id}/policy",
        auth: ["admin", "owner", "machine"],
        machineParam: "id",
        async authorize(a) {
          await authorizeWorker(ctx, a);
        },
        async handler({ req, params, signal }) {
          const id = params.id ?? "";
          const wait = preferWait(req.headers.prefer, ctx.settings.longPollMaxS);
          const known = req.headers["if-none-match"];
          // A bundle the client does not have yet; undefined keeps a long poll waiting.
          const fresh = await longPoll({
            key: id,
            notifier: ctx.policyNotifier,
            waitSeconds: wait,
            signal,
            timers: ctx.timers,
            async check() {
              const bundle = await currentBundle(ctx, id);
              if (bundle === null || ifNoneMatchHits(known, etagOf(bundle))) return undefined;
              return bundle;
            },
          });
          const bundle = fresh ?? (await currentBundle(ctx, id));
          if (bundle === null) {
            throw fail("AGENTD_E_CP_NOT_FOUND", "nothing is published for this worker yet");
          }
          return conditionalJson(req, bundle, {
            "cache-control": "no-cache",
            ...(wait > 0 ? { "preference-applied": `wait=${wait}` } : {}),
          });
        },
      }),
    ],
  };
}
