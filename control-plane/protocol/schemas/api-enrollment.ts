import type { Ed25519PublicJwk } from "../../../lib/crypto/ed25519.ts";
import { CHALLENGE, HOST_FACTS, type HostFacts } from "./attestation.ts";
import {
  ACCESS_TOKEN,
  closed,
  ED25519_JWK,
  frozen,
  ID16,
  jws,
  root,
  SMALL_JWS,
  THUMBPRINT,
  text,
  UNIX_TIME,
} from "./common.ts";

/** Enrollment tokens, machine registration and attestation (the access token). */

export const MIN_TOKEN_TTL_S = 60;
export const MAX_TOKEN_TTL_S = 86_400;
export const DEFAULT_TOKEN_TTL_S = 3_600;

/** `agentd1.` + base64url(canonical JSON of the enrollment-token payload). */
export const ENROLLMENT_TOKEN = {
  type: "string",
  minLength: 9,
  maxLength: 2048,
  pattern: "^agentd1\\.[A-Za-z0-9_-]+$",
} as const;

export interface EnrollmentTokenCreateRequest {
  readonly ttl_s?: number;
  readonly label?: string;
}

export interface EnrollmentTokenCreateResponse {
  readonly id: string;
  /** Shown once; single use. */
  readonly token: string;
  readonly expires_at: number;
}

export const enrollmentTokenCreateRequestSchema = frozen(
  root("enrollment-token-create-request", "POST /v1/enrollment-tokens request", {
    ...closed(
      {
        ttl_s: { type: "integer", minimum: MIN_TOKEN_TTL_S, maximum: MAX_TOKEN_TTL_S },
        label: text(100),
      },
      [],
    ),
  }),
);

export const enrollmentTokenCreateResponseSchema = frozen(
  root("enrollment-token-create-response", "POST /v1/enrollment-tokens response", {
    ...closed({ id: ID16, token: ENROLLMENT_TOKEN, expires_at: UNIX_TIME }),
  }),
);

export interface MachineRegisterRequest {
  readonly token: string;
  readonly jwk: Ed25519PublicJwk;
  readonly facts: HostFacts;
  /**
   * The owner the machine is pinned to (the thumbprint of the key the owner gave it): a token
   * of another owner is refused (403) before it is consumed.
   */
  readonly owner?: string;
}

export interface MachineRegisterResponse {
  /** The worker id: the thumbprint of the machine key. */
  readonly worker: string;
  readonly owner: string;
  /** The root-signed key set (it names the root key; check it against the token's root_kid). */
  readonly keyset: string;
}

export const machineRegisterRequestSchema = frozen(
  root("machine-register-request", "POST /v1/machines/register request", {
    ...closed({ token: ENROLLMENT_TOKEN, jwk: ED25519_JWK, facts: HOST_FACTS, owner: THUMBPRINT }, [
      "token",
      "jwk",
      "facts",
    ]),
  }),
);

export const machineRegisterResponseSchema = frozen(
  root("machine-register-response", "POST /v1/machines/register response", {
    ...closed({ worker: THUMBPRINT, owner: THUMBPRINT, keyset: jws(16_384) }),
  }),
);

export interface ChallengeQuery {
  /** The worker asking: binds the challenge to it (recommended). */
  readonly worker?: string;
}

export const challengeQuerySchema = frozen(
  root("challenge-query", "GET /v1/auth/agent/challenge query", {
    ...closed({ worker: THUMBPRINT }, []),
  }),
);

export interface ChallengeResponse {
  readonly challenge: string;
  readonly expires_at: number;
}

export const challengeResponseSchema = frozen(
  root("challenge-response", "GET /v1/auth/agent/challenge response", {
    ...closed({ challenge: CHALLENGE, expires_at: UNIX_TIME }),
  }),
);

export interface AttestRequest {
  readonly attestation: string;
}

/**
 * `ok`; `clone`: this key was first attested from another machine id; `unknown_binary`: an
 * allowlist of agent binaries is configured and this binary's hash is not on it. Any verdict
 * but `ok` quarantines the worker; the token is issued all the same, so that the quarantined
 * machine can still send heartbeats (its only allowed call) and be seen.
 */
export const ATTEST_VERDICTS = ["ok", "clone", "unknown_binary"] as const;
export type AttestVerdict = (typeof ATTEST_VERDICTS)[number];

export interface AttestResponse {
  readonly verdict: AttestVerdict;
  /** Whether the worker is quarantined now (by this verdict or earlier by an admin). */
  readonly quarantined: boolean;
  readonly access_token: string;
  readonly token_type: "AgentD";
  readonly expires_at: number;
}

/** Access tokens are short-lived: a stolen one (useless without the key) dies quickly too. */
export const ACCESS_TOKEN_TTL_S = 900;

export const attestRequestSchema = frozen(
  root("attest-request", "POST /v1/auth/agent/attest request", {
    ...closed({ attestation: SMALL_JWS }),
  }),
);

export const attestResponseSchema = frozen(
  root("attest-response", "POST /v1/auth/agent/attest response", {
    ...closed({
      verdict: { enum: [...ATTEST_VERDICTS] },
      quarantined: { type: "boolean" },
      access_token: ACCESS_TOKEN,
      token_type: { const: "AgentD" },
      expires_at: UNIX_TIME,
    }),
  }),
);
