import type { KeyObject } from "node:crypto";
import { type Clock, unixSeconds } from "../../../lib/clock.ts";
import type { ConsentPayload, Upstream } from "../../../policy-guard/documents.ts";
import {
  type AssignmentPayload,
  type AssignmentUpstream,
  MAX_ASSIGNMENT_TTL_S,
} from "../schemas/assignment.ts";
import {
  checkLifetime,
  mismatch,
  signDocument,
  type VerifiedDocument,
  type VerifyKey,
  verifyDocument,
} from "./common.ts";

/**
 * Assignments (`agentd-assignment+jwt`), signed by a control-plane `assignment` key: which
 * upstream and account the worker mines to. Never outside the owner's rules: the upstream
 * must be, exactly (url and user), one of the consent's `rules.upstreams`, and the
 * assignment names that consent by identity. Both signing and verifying check it.
 */

export const ASSIGNMENT_TYP = "agentd-assignment+jwt";

/** The consent an assignment derives from: its identity and its parsed payload. */
export interface AssignmentConsent {
  readonly identity: string;
  readonly payload: Pick<ConsentPayload, "worker" | "rules">;
}

function checkAgainstConsent(p: AssignmentPayload, consent: AssignmentConsent): void {
  if (p.consent_sha256 !== consent.identity) {
    mismatch("consent_sha256", "assignment derives from another consent");
  }
  if (consent.payload.worker !== p.worker) {
    mismatch("worker", "the consent is for another worker");
  }
  if (!upstreamAllowed(p.upstream, consent.payload.rules.upstreams)) {
    mismatch("upstream", "assignment upstream is not one of the consent's upstreams");
  }
}

/** Exactly one of the owner's upstreams: same url and same user, byte for byte. */
export function upstreamAllowed(
  upstream: AssignmentUpstream,
  allowed: readonly Upstream[] | undefined,
): boolean {
  return (allowed ?? []).some((u) => u.url === upstream.url && u.user === upstream.user);
}

export function signAssignment(a: {
  readonly privateKey: KeyObject;
  readonly worker: string;
  readonly consent: AssignmentConsent;
  readonly upstream: AssignmentUpstream;
  readonly ttlS: number;
  readonly clock: Clock;
}): { jws: string; payload: AssignmentPayload } {
  const iat = unixSeconds(a.clock);
  const payload: AssignmentPayload = {
    v: 1,
    worker: a.worker,
    consent_sha256: a.consent.identity,
    upstream: { url: a.upstream.url, user: a.upstream.user },
    iat,
    exp: iat + a.ttlS,
  };
  if (a.ttlS < 1 || a.ttlS > MAX_ASSIGNMENT_TTL_S) {
    mismatch("exp", `an assignment lives 1 to ${MAX_ASSIGNMENT_TTL_S} s`);
  }
  checkAgainstConsent(payload, a.consent);
  return { jws: signDocument("assignment", ASSIGNMENT_TYP, payload, a.privateKey), payload };
}

/**
 * Signed by a pinned `assignment` key, for `worker`, unexpired, deriving from `consent` (the
 * consent the machine currently enforces) and naming one of its upstreams exactly.
 */
export function verifyAssignment(
  token: string,
  o: {
    readonly key: VerifyKey;
    readonly worker: string;
    readonly consent: AssignmentConsent;
    readonly clock: Clock;
  },
): VerifiedDocument<AssignmentPayload> {
  const doc = verifyDocument(token, "assignment", ASSIGNMENT_TYP, o.key);
  if (doc.payload.worker !== o.worker) mismatch("worker", "assignment is for another worker");
  checkAgainstConsent(doc.payload, o.consent);
  checkLifetime(doc.payload, o.clock, MAX_ASSIGNMENT_TTL_S);
  return doc;
}
