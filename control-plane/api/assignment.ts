import { unixSeconds } from "../../lib/clock.ts";
import { fail } from "../../lib/errors.ts";
import { defineRoute } from "../http/route.ts";
import { signAssignment } from "../protocol/documents/assignment.ts";
import type { AssignmentResponse } from "../protocol/schemas/api-policy.ts";
import { MAX_ASSIGNMENT_TTL_S } from "../protocol/schemas/assignment.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { authorizeWorker } from "./policies.ts";
import { storedConsentPayload } from "./publish.ts";

/**
 * `GET /v1/workers/{id}/assignment` (docs/protocol.md): which upstream and account to mine
 * to, signed by an `assignment` key and naming the consent it derives from — the consent the
 * latest publication countersigns, i.e. the one the agent enforces. The upstream is the first
 * of that consent's `rules.upstreams`, exactly (the owner's order is the preference order);
 * `signAssignment` refuses anything else, so an assignment can never leave the owner's rules.
 * `exp` is the earliest of the publication's `exp`, the consent's `exp` and iat + 86,400.
 *
 * Refusals:
 * - 404 AGENTD_E_CP_NOT_FOUND: nothing published yet, the consent has expired, or it allows
 *   no upstream (no upstream, no mining);
 * - 409 AGENTD_E_CP_CONFLICT: the latest publication is `stop: true` (`reason: "stop"`: an
 *   assignment would be pointless, the agent must not mine), or it has expired while its
 *   consent is still valid (`reason: "publication_expired"`: it is re-issued shortly; ask
 *   again after fetching the new policy);
 * - 403: quarantined (AGENTD_E_CP_QUARANTINED) or decommissioned workers.
 */

async function assignmentFor(ctx: ApiContext, workerId: string): Promise<AssignmentResponse> {
  const publication = await ctx.store.latestPublication(workerId);
  const consent =
    publication?.consent_identity == null
      ? null
      : await ctx.store.getConsent(publication.consent_identity);
  if (publication === null || consent === null) {
    throw fail("AGENTD_E_CP_NOT_FOUND", "nothing is published for this worker yet");
  }
  const now = unixSeconds(ctx.clock);
  if (consent.exp <= now) throw fail("AGENTD_E_CP_NOT_FOUND", "the worker's consent has expired");
  if (publication.stop) {
    throw fail("AGENTD_E_CP_CONFLICT", "a stop is in force for this worker", { reason: "stop" });
  }
  if (publication.exp <= now) {
    throw fail("AGENTD_E_CP_CONFLICT", "the worker's publication has expired", {
      reason: "publication_expired",
    });
  }
  const payload = storedConsentPayload(consent);
  const upstream = payload.rules.upstreams?.[0];
  if (upstream === undefined) {
    throw fail("AGENTD_E_CP_NOT_FOUND", "the worker's consent allows no upstream");
  }
  const exp = Math.min(publication.exp, consent.exp, now + MAX_ASSIGNMENT_TTL_S);
  const { jws } = signAssignment({
    privateKey: ctx.keys().signing.assignment.privateKey,
    worker: workerId,
    consent: { identity: consent.identity, payload },
    upstream,
    ttlS: exp - now,
    clock: ctx.clock,
  });
  return { assignment: jws };
}

export function assignmentGroup(ctx: ApiContext): ApiGroup {
  return {
    routes: [
      defineRoute({
        method: "GET",
        path: "/v1/workers/{id}/assignment",
        auth: ["machine"],
        machineParam: "id",
        async authorize(a) {
          await authorizeWorker(ctx, a);
        },
        async handler({ params }) {
          return { status: 200, body: await assignmentFor(ctx, params.id ?? "") };
        },
      }),
    ],
  };
}
