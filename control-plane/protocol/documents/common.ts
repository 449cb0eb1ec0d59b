import type { KeyObject } from "node:crypto";
import { type Clock, unixSeconds } from "../../../lib/clock.ts";
import { jwkThumbprint } from "../../../lib/crypto/ed25519.ts";
import { checkValidityTimes, signJws, verifyJws, verifyJwsAsync } from "../../../lib/crypto/jws.ts";
import { fail } from "../../../lib/errors.ts";
import type { SchemaName, SchemaTypes } from "../schemas/index.ts";
import { validate } from "../validate.ts";

/**
 * What every signed protocol document shares: JWS per DOCUMENTS.md section 1
 * (lib/crypto/jws.ts), a payload validated against its schema both before signing (never
 * sign what a verifier refuses) and after verifying (unknown or mistyped members refused),
 * and validity times against an injected clock.
 */

/** DOCUMENTS.md section 1: tolerance for a signer's clock. */
export const MAX_SKEW_S = 60;

export type KeyResolver = (kid: string) => KeyObject | undefined;

/** The verifying key: one known key, or a resolver over pinned keys of the right use. */
export type VerifyKey = KeyObject | KeyResolver;

export function resolverOf(key: VerifyKey): KeyResolver {
  if (typeof key === "function") return key;
  const kid = jwkThumbprint(key);
  return (k) => (k === kid ? key : undefined);
}

export interface VerifiedDocument<P> {
  readonly payload: P;
  /** sha256 hex of the signing input: the document's identity. */
  readonly identity: string;
  /** Thumbprint of the key that signed it. */
  readonly kid: string;
  readonly jws: string;
}

export function signDocument<N extends SchemaName>(
  schema: N,
  typ: string,
  payload: SchemaTypes[N],
  privateKey: KeyObject,
): string {
  const checked = validate(schema, payload);
  return signJws({ typ, payload: { ...checked }, privateKey });
}

export function verifyDocument<N extends SchemaName>(
  token: string,
  schema: N,
  typ: string,
  key: VerifyKey,
): VerifiedDocument<SchemaTypes[N]> {
  const v = verifyJws(token, { typ, resolveKey: resolverOf(key) });
  return {
    payload: validate(schema, v.payload),
    identity: v.identity,
    kid: v.header.kid,
    jws: token,
  };
}

/** verifyDocument with the signature checked off the event-loop thread (verifyJwsAsync). */
export async function verifyDocumentAsync<N extends SchemaName>(
  token: string,
  schema: N,
  typ: string,
  key: VerifyKey,
): Promise<VerifiedDocument<SchemaTypes[N]>> {
  const v = await verifyJwsAsync(token, { typ, resolveKey: resolverOf(key) });
  return {
    payload: validate(schema, v.payload),
    identity: v.identity,
    kid: v.header.kid,
    jws: token,
  };
}

/** A binding between members (or a member and the signer) that does not hold. */
export function mismatch(member: string, message: string): never {
  throw fail("AGENTD_E_JWS_PAYLOAD", message, { member });
}

/**
 * `iat` within `maxSkewS` of now in the future (AGENTD_E_JWS_NOT_YET_VALID) and, when
 * `maxAgeS` is given, not older than that (AGENTD_E_JWS_EXPIRED): for documents that speak
 * about the present (heartbeats, attestations, proofs), an old one is a replay or stale.
 */
export function checkIat(
  iat: number,
  clock: Clock,
  options: { readonly maxSkewS?: number; readonly maxAgeS?: number } = {},
): void {
  const now = unixSeconds(clock);
  const skew = options.maxSkewS ?? MAX_SKEW_S;
  checkValidityTimes({ iat }, now, skew);
  if (options.maxAgeS !== undefined && iat < now - options.maxAgeS) {
    throw fail(
      "AGENTD_E_JWS_EXPIRED",
      `iat ${iat} is more than ${options.maxAgeS} s before now ${now}`,
      { claim: "iat", value: iat, now, max_age_s: options.maxAgeS },
    );
  }
}

/**
 * `iat` not in the future beyond the skew, `exp` after `iat` by at most `maxTtlS`, and not
 * reached yet (AGENTD_E_JWS_EXPIRED from `exp` on).
 */
export function checkLifetime(
  claims: { readonly iat: number; readonly exp: number },
  clock: Clock,
  maxTtlS: number,
): void {
  if (claims.exp <= claims.iat) mismatch("exp", `exp ${claims.exp} is not after iat ${claims.iat}`);
  if (claims.exp - claims.iat > maxTtlS) {
    mismatch("exp", `exp - iat is ${claims.exp - claims.iat} s, at most ${maxTtlS}`);
  }
  checkValidityTimes(claims, unixSeconds(clock), MAX_SKEW_S);
}
