import { createHash, type KeyObject, randomBytes } from "node:crypto";
import { type Clock, unixSeconds } from "../../lib/clock.ts";
import { encodeBase64url } from "../../lib/crypto/base64url.ts";
import { signJws, verifyJws } from "../../lib/crypto/jws.ts";
import { AgentdError, type ErrorCode, fail } from "../../lib/errors.ts";
import { MAX_SKEW_S, resolverOf, type VerifyKey } from "./documents/common.ts";
import type { HttpMethod, ProofPayload } from "./schemas/proof.ts";
import { validate } from "./validate.ts";

/**
 * Per-request proof of possession of the machine key, in the spirit of DPoP (RFC 9449).
 *
 * Every machine request carries `Authorization: AgentD <access token>` and
 * `AgentD-Proof: <JWS agentd-proof+jwt>` signed by the machine key over the method, the
 * normalised URL, the time, a fresh `jti` and `ath` = base64url(sha256(access token)). The
 * access token is bound to the machine key when issued, so a stolen token is useless
 * without the key, and a captured proof is useless for another request, later, or twice.
 *
 * `verifyProof` checks everything that needs no state. The replay check — this `jti` never
 * seen before — is NOT here: the caller does it against the store with an atomic insert
 * (unique constraint) kept at least twice the skew window (120 s), so that it holds across
 * concurrent requests and across control-plane instances.
 */

export const PROOF_TYP = "agentd-proof+jwt";
/** HTTP header names (case-insensitive on the wire). */
export const PROOF_HEADER = "AgentD-Proof";
export const AUTHORIZATION_SCHEME = "AgentD";
/** How long the store must remember a `jti`: the whole window in which its iat is valid. */
export const JTI_RETENTION_S = 2 * MAX_SKEW_S;
/** A proof is about 300 bytes; the bound keeps hostile headers cheap to refuse. */
const MAX_PROOF_PAYLOAD_BYTES = 2048;

export type ProofFailure =
  | "malformed"
  | "typ"
  | "key"
  | "signature"
  | "payload"
  | "htm"
  | "htu"
  | "iat"
  | "ath_missing"
  | "ath_mismatch"
  | "ath_unexpected";

function invalid(reason: ProofFailure, message: string, cause?: unknown): AgentdError {
  return fail("AGENTD_E_CP_PROOF_INVALID", `request proof: ${message}`, { reason }, cause);
}

/**
 * The `htu` form of a URL: scheme and host lower case, default port removed, no user
 * information, no query and no fragment; `wss:` is written `https:` (a WebSocket upgrade is
 * an HTTPS request). Anything but https/wss is refused: the protocol runs on TLS only.
 */
export function normalizeHtu(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch (cause) {
    throw invalid("htu", "URL does not parse", cause);
  }
  if (u.protocol !== "https:" && u.protocol !== "wss:") {
    throw invalid("htu", `scheme ${u.protocol} is not https`);
  }
  if (u.username !== "" || u.password !== "") throw invalid("htu", "URL carries user information");
  // WHATWG URL already lower-cases the host and drops the scheme's default port (443 for
  // both https and wss), and resolves dot segments in the path.
  return `https://${u.host}${u.pathname}`;
}

/** `ath`: base64url(sha256(ASCII access token)). */
export function accessTokenHash(accessToken: string): string {
  return encodeBase64url(createHash("sha256").update(accessToken, "utf8").digest());
}

export function createProof(a: {
  readonly privateKey: KeyObject;
  readonly method: HttpMethod;
  readonly url: string;
  /** Absent only for register and attest, which carry no access token. */
  readonly accessToken?: string;
  readonly clock: Clock;
  readonly jti?: string;
}): string {
  const payload: ProofPayload = {
    htm: a.method,
    htu: normalizeHtu(a.url),
    iat: unixSeconds(a.clock),
    jti: a.jti ?? encodeBase64url(randomBytes(16)),
    ...(a.accessToken === undefined ? {} : { ath: accessTokenHash(a.accessToken) }),
  };
  validate("proof", payload);
  return signJws({ typ: PROOF_TYP, payload: { ...payload }, privateKey: a.privateKey });
}

export interface VerifiedProof {
  readonly jti: string;
  readonly iat: number;
  /** The signer: the worker id. */
  readonly kid: string;
}

const JWS_FAILURES: Partial<Record<ErrorCode, ProofFailure>> = {
  AGENTD_E_JWS_TYP: "typ",
  AGENTD_E_JWS_UNKNOWN_KEY: "key",
  AGENTD_E_JWS_KID_MISMATCH: "key",
  AGENTD_E_JWS_SIGNATURE: "signature",
  AGENTD_E_JWS_PAYLOAD: "payload",
  AGENTD_E_JSON_INVALID: "payload",
  AGENTD_E_JSON_DUPLICATE_KEY: "payload",
  AGENTD_E_JSON_INTEGER_RANGE: "payload",
};

/**
 * The proof for this request, or AGENTD_E_CP_PROOF_INVALID whose context `reason` says why
 * (a ProofFailure). `key` is the worker's registered key (or a resolver over registered
 * keys); `url` is the request's URL as received (`https://` + Host + target; query and
 * fragment are ignored); `accessToken` the token of the Authorization header, or undefined on
 * the two endpoints that take none (register, attest).
 */
export function verifyProof(
  token: unknown,
  o: {
    readonly method: string;
    readonly url: string;
    readonly accessToken?: string;
    readonly key: VerifyKey;
    readonly clock: Clock;
    readonly maxSkewS?: number;
  },
): VerifiedProof {
  if (typeof token !== "string" || token.length === 0) throw invalid("malformed", "missing");
  let header: { kid: string };
  let raw: Record<string, unknown>;
  try {
    const v = verifyJws(token, {
      typ: PROOF_TYP,
      resolveKey: resolverOf(o.key),
      maxPayloadBytes: MAX_PROOF_PAYLOAD_BYTES,
    });
    header = v.header;
    raw = v.payload;
  } catch (cause) {
    const code: ErrorCode = cause instanceof AgentdError ? cause.code : "AGENTD_E_INTERNAL";
    const reason = JWS_FAILURES[code] ?? "malformed";
    throw invalid(reason, `${reason} (${code})`, cause);
  }
  let p: ProofPayload;
  try {
    p = validate("proof", raw);
  } catch (cause) {
    throw invalid("payload", cause instanceof Error ? cause.message : "payload", cause);
  }
  if (p.htm !== o.method) throw invalid("htm", `signed for ${p.htm}, request is ${o.method}`);
  if (p.htu !== normalizeHtu(o.url)) throw invalid("htu", "signed for another URL");
  const now = unixSeconds(o.clock);
  const skew = o.maxSkewS ?? MAX_SKEW_S;
  if (Math.abs(p.iat - now) > skew) {
    throw invalid("iat", `iat is ${p.iat - now} s from now, at most ±${skew}`);
  }
  if (o.accessToken === undefined) {
    if (p.ath !== undefined) throw invalid("ath_unexpected", "ath given where no token is sent");
  } else if (p.ath === undefined) {
    throw invalid("ath_missing", "ath missing");
  } else if (p.ath !== accessTokenHash(o.accessToken)) {
    throw invalid("ath_mismatch", "bound to another access token");
  }
  return { jti: p.jti, iat: p.iat, kid: header.kid };
}
