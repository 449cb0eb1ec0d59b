import type { KeyObject } from "node:crypto";
import { jwkThumbprint } from "../lib/crypto/ed25519.ts";
import { documentIdentity, type VerifiedJws, verifyJws } from "../lib/crypto/jws.ts";
import { AgentdError, type ErrorCode } from "../lib/errors.ts";
import {
  type Bundle,
  type ConsentPayload,
  DEFAULT_MAX_PUBLICATION_TTL_S,
  DOC_TYP,
  type PublicationPayload,
  parseConsentPayload,
  parsePublicationPayload,
} from "./documents.ts";
import type { Reason } from "./reasons.ts";

/**
 * Verification of a bundle's documents: everything that does not depend on the time of
 * evaluation (signatures, pinned keys and their uses, payload shape, binding to this machine
 * and to each other, seq/version monotonicity, revocation). Time-dependent checks (validity
 * windows, offline grace, the clock floor) are the decision's, so that one verification
 * serves every later instant. Never throws on bad documents: it collects reasons.
 */

/** The keys a machine trusts, each for one use only (DOCUMENTS.md section 2). */
export interface TrustAnchors {
  /** The owner key given by the owner at enrollment (or by a verified rotation). */
  readonly owner: KeyObject;
  /** Control-plane keys whose use is `publication`. */
  readonly publication: readonly KeyObject[];
  /**
   * The consent that was in force when the owner key was rotated, with the retired key that
   * signed it (policy-guard/rotation.ts): that one document still verifies under that key,
   * nothing else does.
   */
  readonly retained?: RetainedConsent;
}

/** A consent kept in force across an owner-key rotation: its identity and its signer. */
export interface RetainedConsent {
  readonly identity: string;
  readonly key: KeyObject;
}

/** The keys a consent may be signed by: the owner key, and a retired one for its own consent. */
function consentKeys(trust: TrustAnchors, token: unknown): readonly KeyObject[] {
  if (trust.retained === undefined || typeof token !== "string") return [trust.owner];
  let identity: string;
  try {
    identity = documentIdentity(token);
  } catch {
    return [trust.owner]; // malformed: verifyOne says why
  }
  return identity === trust.retained.identity ? [trust.owner, trust.retained.key] : [trust.owner];
}

/**
 * What this machine has accepted before; persisted by the engine (state.ts).
 *
 * The consent `seq` is one space per machine, for ever (revocations and rollback protection
 * depend on it). The publication `version` is one space per consent (DOCUMENTS.md section 4):
 * `highestVersion` counts for the consent `versionConsentId` only, and a newer consent from
 * the owner starts afresh — so a publication key, stolen or not, that spent every version
 * (2^53 − 1) locks out nothing beyond the consent it countersigned.
 */
export interface GuardCounters {
  readonly highestSeq: number;
  readonly highestSeqId: string | null;
  readonly highestVersion: number;
  readonly highestVersionId: string | null;
  /**
   * The identity of the consent `highestVersion` counts for. Null only when no publication
   * was bound to a consent (a fresh machine, whose version is 0): a version bound to none
   * counts for every consent, the strict reading.
   */
  readonly versionConsentId: string | null;
  readonly revokedThroughSeq: number;
  /** Unix seconds: the latest time this machine has seen. */
  readonly clockFloorS: number;
  readonly decommissioned: boolean;
}

export const EMPTY_COUNTERS: GuardCounters = Object.freeze({
  highestSeq: 0,
  highestSeqId: null,
  highestVersion: 0,
  highestVersionId: null,
  versionConsentId: null,
  revokedThroughSeq: 0,
  clockFloorS: 0,
  decommissioned: false,
});

export interface VerifiedDocument<P> {
  readonly payload: P;
  /** sha256 hex of the signing input (DOCUMENTS.md section 1). */
  readonly identity: string;
  readonly jws: string;
}

export interface VerifiedDocuments {
  readonly worker: string;
  /** The consent when it verified and parsed, even if a later check (seq, revoked) failed. */
  readonly consent: VerifiedDocument<ConsentPayload> | null;
  readonly publication: VerifiedDocument<PublicationPayload> | null;
  /** Problems with the consent: deny mining and services. */
  readonly consentReasons: readonly Reason[];
  /** Problems with the publication: deny mining. */
  readonly publicationReasons: readonly Reason[];
  readonly clockFloorS: number;
}

/** Finds a pinned key by its thumbprint (thumbprints are cached per key object). */
function resolverFor(keys: readonly KeyObject[]): (kid: string) => KeyObject | undefined {
  return (kid) => keys.find((k) => jwkThumbprint(k) === kid);
}

type Prefix = "consent" | "publication";

function reasonFor(prefix: Prefix, code: ErrorCode): Reason {
  switch (code) {
    case "AGENTD_E_JWS_ALG":
      return `${prefix}.alg`;
    case "AGENTD_E_JWS_TYP":
      return `${prefix}.typ`;
    case "AGENTD_E_JWS_UNKNOWN_KEY":
      return `${prefix}.unknown_key`;
    case "AGENTD_E_JWS_KID_MISMATCH":
      return `${prefix}.kid_mismatch`;
    case "AGENTD_E_JWS_SIGNATURE":
      return `${prefix}.signature`;
    case "AGENTD_E_JWS_TOO_LARGE":
      return `${prefix}.too_large`;
    case "AGENTD_E_JWS_PAYLOAD":
    case "AGENTD_E_JSON_INVALID":
    case "AGENTD_E_JSON_DUPLICATE_KEY":
    case "AGENTD_E_JSON_INTEGER_RANGE":
      return `${prefix}.payload`;
    default:
      return `${prefix}.malformed`;
  }
}

/** Verifies one JWS and parses its payload; returns the reason instead of throwing. */
function verifyOne<P>(
  prefix: Prefix,
  token: unknown,
  typ: string,
  keys: readonly KeyObject[],
  parse: (payload: Record<string, unknown>) => P,
): { ok: true; jws: VerifiedJws; payload: P } | { ok: false; reason: Reason; detail: string } {
  if (typeof token !== "string" || token === "") {
    return { ok: false, reason: `${prefix}.missing`, detail: "absent" };
  }
  try {
    const jws = verifyJws(token, { typ, resolveKey: resolverFor(keys) });
    return { ok: true, jws, payload: parse(jws.payload) };
  } catch (err) {
    if (err instanceof AgentdError) {
      return { ok: false, reason: reasonFor(prefix, err.code), detail: err.message };
    }
    throw err;
  }
}

export interface VerifyInput {
  readonly bundle: Partial<Bundle> | null;
  readonly trust: TrustAnchors;
  readonly worker: string;
  readonly counters: GuardCounters;
}

export function verifyDocuments(input: VerifyInput): VerifiedDocuments {
  const { bundle, trust, worker, counters } = input;
  const consentReasons: Reason[] = [];
  const publicationReasons: Reason[] = [];
  let consent: VerifiedDocument<ConsentPayload> | null = null;
  let publication: VerifiedDocument<PublicationPayload> | null = null;

  if (counters.decommissioned) consentReasons.push("consent.decommissioned");

  const c = verifyOne(
    "consent",
    bundle?.consent,
    DOC_TYP.consent,
    consentKeys(trust, bundle?.consent),
    parseConsentPayload,
  );
  if (!c.ok) {
    consentReasons.push(c.reason);
  } else {
    const p = c.payload;
    consent = { payload: p, identity: c.jws.identity, jws: bundle?.consent as string };
    if (p.owner !== c.jws.header.kid) consentReasons.push("consent.owner_mismatch");
    if (p.worker !== worker) consentReasons.push("consent.worker_mismatch");
    if (p.seq <= counters.revokedThroughSeq) consentReasons.push("consent.revoked");
    if (p.seq < counters.highestSeq) consentReasons.push("consent.seq_rollback");
    else if (p.seq === counters.highestSeq && c.jws.identity !== counters.highestSeqId) {
      consentReasons.push("consent.seq_conflict");
    }
  }

  const pub = verifyOne(
    "publication",
    bundle?.publication,
    DOC_TYP.publication,
    trust.publication,
    parsePublicationPayload,
  );
  if (!pub.ok) {
    publicationReasons.push(pub.reason);
  } else {
    const p = pub.payload;
    publication = { payload: p, identity: pub.jws.identity, jws: bundle?.publication as string };
    if (p.worker !== worker) publicationReasons.push("publication.worker_mismatch");
    if (consent !== null && p.consent_sha256 !== consent.identity) {
      publicationReasons.push("publication.consent_mismatch");
    }
    const maxTtl = consent?.payload.rules.max_publication_ttl_s ?? DEFAULT_MAX_PUBLICATION_TTL_S;
    if (p.exp - p.iat > maxTtl) publicationReasons.push("publication.ttl_exceeds_max");
    // The version space is the consent's the publication names (it must be the bundle's
    // consent, checked above): a newer consent starts afresh. Only a consent that passes the
    // seq checks can be new, so this opens nothing to a publication key alone.
    const sameSpace =
      counters.versionConsentId === null || counters.versionConsentId === p.consent_sha256;
    if (sameSpace && p.version < counters.highestVersion) {
      publicationReasons.push("publication.version_rollback");
    } else if (
      sameSpace &&
      p.version === counters.highestVersion &&
      pub.jws.identity !== counters.highestVersionId
    ) {
      publicationReasons.push("publication.version_conflict");
    }
  }

  return {
    worker,
    consent,
    publication,
    consentReasons,
    publicationReasons,
    clockFloorS: counters.clockFloorS,
  };
}
