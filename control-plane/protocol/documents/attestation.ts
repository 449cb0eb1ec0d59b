import type { KeyObject } from "node:crypto";
import { type Clock, unixSeconds } from "../../../lib/clock.ts";
import { jwkThumbprint, publicKeyOf } from "../../../lib/crypto/ed25519.ts";
import type { AttestationPayload, HostFacts } from "../schemas/attestation.ts";
import {
  checkIat,
  MAX_SKEW_S,
  mismatch,
  signDocument,
  type VerifiedDocument,
  type VerifyKey,
  verifyDocument,
} from "./common.ts";

/**
 * Attestations (`agentd-attestation+jwt`), signed by the machine key in answer to a
 * challenge. ADVISORY: the facts are what the machine's software says about itself. A
 * verified attestation proves possession of the key and freshness (the challenge), nothing
 * about the hardware or the binary actually running; the control plane uses the facts to
 * flag clones (one key, two machine ids) and binaries outside an allowlist.
 */

export const ATTESTATION_TYP = "agentd-attestation+jwt";

export function signAttestation(a: {
  readonly privateKey: KeyObject;
  readonly challenge: string;
  readonly facts: HostFacts;
  readonly clock: Clock;
}): string {
  const payload: AttestationPayload = {
    v: 1,
    worker: jwkThumbprint(publicKeyOf(a.privateKey)),
    challenge: a.challenge,
    iat: unixSeconds(a.clock),
    facts: a.facts,
  };
  return signDocument("attestation", ATTESTATION_TYP, payload, a.privateKey);
}

/**
 * Signed by the worker's registered key, about that worker, fresh (iat within 60 s either
 * way) and, when `challenge` is given, answering it. That the challenge was issued by this
 * control plane, is unexpired and is used once is the store's check.
 */
export function verifyAttestation(
  token: string,
  o: { readonly key: VerifyKey; readonly clock: Clock; readonly challenge?: string },
): VerifiedDocument<AttestationPayload> {
  const doc = verifyDocument(token, "attestation", ATTESTATION_TYP, o.key);
  if (doc.payload.worker !== doc.kid) {
    mismatch("worker", "attestation worker is not the thumbprint of the key that signed it");
  }
  if (o.challenge !== undefined && doc.payload.challenge !== o.challenge) {
    mismatch("challenge", "attestation answers another challenge");
  }
  checkIat(doc.payload.iat, o.clock, { maxSkewS: MAX_SKEW_S, maxAgeS: MAX_SKEW_S });
  return doc;
}
