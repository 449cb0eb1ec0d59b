import { type KeyObject, randomBytes } from "node:crypto";
import { encodeBase64url } from "../lib/crypto/base64url.ts";
import { jwkThumbprint, publicJwk, publicKeyOf } from "../lib/crypto/ed25519.ts";
import { documentIdentity, signJws } from "../lib/crypto/jws.ts";
import {
  type Bundle,
  type ConsentPayload,
  DOC_TYP,
  type PublicationPayload,
  parseConsentPayload,
  parsePublicationPayload,
  parseRules,
  type Rules,
} from "./documents.ts";

/**
 * Making the documents: the owner's side (consent, revocation, decommission, rotation) and
 * the control plane's (publication). Every payload is validated with the same parser the
 * verifier uses before it is signed, so agentd never signs what it would refuse.
 */

export const newNonce = (): string => encodeBase64url(randomBytes(16));

export interface ConsentArgs {
  readonly ownerKey: KeyObject;
  readonly worker: string;
  readonly rules: unknown;
  readonly seq: number;
  readonly policyId: string;
  /** Unix seconds. */
  readonly iat: number;
  readonly nbf?: number;
  readonly exp: number;
  readonly nonce?: string;
}

export function signConsent(a: ConsentArgs): string {
  const payload: ConsentPayload = parseConsentPayload({
    v: 1,
    owner: jwkThumbprint(publicKeyOf(a.ownerKey)),
    worker: a.worker,
    policy_id: a.policyId,
    seq: a.seq,
    nonce: a.nonce ?? newNonce(),
    iat: a.iat,
    nbf: a.nbf ?? a.iat,
    exp: a.exp,
    rules: parseRules(a.rules) as Rules,
  });
  return signJws({ typ: DOC_TYP.consent, payload: { ...payload }, privateKey: a.ownerKey });
}

export interface PublicationArgs {
  readonly cpKey: KeyObject;
  readonly consent: string;
  readonly worker: string;
  readonly version: number;
  readonly iat: number;
  readonly ttlS: number;
  readonly stop?: boolean;
}

export function signPublication(a: PublicationArgs): string {
  const payload: PublicationPayload = parsePublicationPayload({
    v: 1,
    worker: a.worker,
    consent_sha256: documentIdentity(a.consent),
    version: a.version,
    iat: a.iat,
    nbf: a.iat,
    exp: a.iat + a.ttlS,
    stop: a.stop ?? false,
  });
  return signJws({ typ: DOC_TYP.publication, payload: { ...payload }, privateKey: a.cpKey });
}

export function makeBundle(consent: string, publication: string): Bundle {
  return { consent, publication };
}

interface OwnerDocArgs {
  readonly ownerKey: KeyObject;
  readonly worker: string;
  readonly iat: number;
  readonly nonce?: string;
}

export function signRevocation(a: OwnerDocArgs & { readonly throughSeq: number }): string {
  return signJws({
    typ: DOC_TYP.revocation,
    privateKey: a.ownerKey,
    payload: {
      v: 1,
      owner: jwkThumbprint(publicKeyOf(a.ownerKey)),
      worker: a.worker,
      through_seq: a.throughSeq,
      iat: a.iat,
      nonce: a.nonce ?? newNonce(),
    },
  });
}

export function signDecommission(a: OwnerDocArgs): string {
  return signJws({
    typ: DOC_TYP.decommission,
    privateKey: a.ownerKey,
    payload: {
      v: 1,
      owner: jwkThumbprint(publicKeyOf(a.ownerKey)),
      worker: a.worker,
      iat: a.iat,
      nonce: a.nonce ?? newNonce(),
    },
  });
}

/** `newOwnerKey`: the new key, public or private (only its public half goes in the document). */
export function signOwnerRotation(a: OwnerDocArgs & { readonly newOwnerKey: KeyObject }): string {
  const next = a.newOwnerKey.type === "private" ? publicKeyOf(a.newOwnerKey) : a.newOwnerKey;
  return signJws({
    typ: DOC_TYP.rotation,
    privateKey: a.ownerKey,
    payload: {
      v: 1,
      owner: jwkThumbprint(publicKeyOf(a.ownerKey)),
      worker: a.worker,
      new_owner_jwk: { ...publicJwk(next) },
      iat: a.iat,
      nonce: a.nonce ?? newNonce(),
    },
  });
}
