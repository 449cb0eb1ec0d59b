import type { Ed25519PublicJwk } from "../../../lib/crypto/ed25519.ts";
import {
  API_KEY,
  closed,
  ED25519_JWK,
  frozen,
  ID16,
  is,
  isOneOf,
  jws,
  ROLES,
  type Role,
  requires,
  root,
  THUMBPRINT,
  text,
  UNIX_TIME,
  UUID,
  when,
} from "./common.ts";

/** Owners, API keys (creation, revocation), the key set, quarantine (and its lifting) and the emergency stop. */

// ---- owners and API keys -------------------------------------------------------------------

export interface OwnerCreateRequest {
  readonly jwk: Ed25519PublicJwk;
  readonly label?: string;
}

export interface OwnerCreateResponse {
  /** The owner id: the thumbprint of `jwk`. */
  readonly owner: string;
  readonly key_id: string;
  /** Shown once; the control plane keeps only its sha256. */
  readonly api_key: string;
}

export const ownerCreateRequestSchema = frozen(
  root("owner-create-request", "POST /v1/owners request", {
    ...closed({ jwk: ED25519_JWK, label: text(100) }, ["jwk"]),
  }),
);

export const ownerCreateResponseSchema = frozen(
  root("owner-create-response", "POST /v1/owners response", {
    ...closed({ owner: THUMBPRINT, key_id: ID16, api_key: API_KEY }),
  }),
);

export interface ApiKeyCreateRequest {
  readonly role: Role;
  /** Required for (and only for) the owner role: the owner the key acts for. */
  readonly owner?: string;
  readonly label?: string;
}

export interface ApiKeyCreateResponse {
  readonly key_id: string;
  readonly role: Role;
  readonly owner: string | null;
  readonly api_key: string;
}

export const apikeyCreateRequestSchema = frozen(
  root("apikey-create-request", "POST /v1/api-keys request", {
    ...closed({ role: { enum: [...ROLES] }, owner: THUMBPRINT, label: text(100) }, ["role"]),
    allOf: [
      when(is("role", "owner"), requires("owner")),
      when(
        isOneOf(
          "role",
          ROLES.filter((r) => r !== "owner"),
        ),
        { properties: { owner: false } },
      ),
    ],
  }),
);

export const apikeyCreateResponseSchema = frozen(
  root("apikey-create-response", "POST /v1/api-keys response", {
    ...closed({
      key_id: ID16,
      role: { enum: [...ROLES] },
      owner: { ...THUMBPRINT, type: ["string", "null"] },
      api_key: API_KEY,
    }),
  }),
);

export interface ApiKeyRevokeResponse {
  readonly key_id: string;
  readonly role: Role;
  readonly owner: string | null;
  readonly revoked: true;
  readonly revoked_at: number;
}

export const apikeyRevokeResponseSchema = frozen(
  root("apikey-revoke-response", "DELETE /v1/api-keys/{id} response", {
    ...closed({
      key_id: ID16,
      role: { enum: [...ROLES] },
      owner: { ...THUMBPRINT, type: ["string", "null"] },
      revoked: { const: true },
      revoked_at: UNIX_TIME,
    }),
  }),
);

// ---- the key set ---------------------------------------------------------------------------

export interface KeysResponse {
  /** The key set JWS (agentd-keyset+jwt), signed by the root key it names. */
  readonly keyset: string;
}

export const keysResponseSchema = frozen(
  root("keys-response", "GET /v1/keys and POST /v1/admin/keys/rotate response", {
    ...closed({ keyset: jws(16_384) }),
  }),
);

export interface KeysRotateRequest {
  /**
   * Keep the previous working keys in the new set, verify-only (default true), so documents
   * signed just before the rotation still verify; false drops them at once (compromise).
   */
  readonly keep_previous?: boolean;
}

export const keysRotateRequestSchema = frozen(
  root("keys-rotate-request", "POST /v1/admin/keys/rotate request", {
    ...closed({ keep_previous: { type: "boolean" } }, []),
  }),
);

// ---- quarantine ----------------------------------------------------------------------------

export interface QuarantineRequest {
  readonly reason: string;
}

export interface QuarantineResponse {
  readonly worker: string;
  readonly quarantined: true;
  readonly at: number;
}

export const quarantineRequestSchema = frozen(
  root("quarantine-request", "POST /v1/admin/workers/{id}/quarantine request", {
    ...closed({ reason: text(200) }),
  }),
);

export const quarantineResponseSchema = frozen(
  root("quarantine-response", "POST /v1/admin/workers/{id}/quarantine response", {
    ...closed({ worker: THUMBPRINT, quarantined: { const: true }, at: UNIX_TIME }),
  }),
);

export interface QuarantineLiftResponse {
  readonly worker: string;
  readonly quarantined: false;
  /** When it was lifted. */
  readonly at: number;
  /** The quarantine that was lifted: its reason and since when. */
  readonly lifted: { readonly reason: string; readonly at: number };
}

export const quarantineLiftResponseSchema = frozen(
  root("quarantine-lift-response", "DELETE /v1/admin/workers/{id}/quarantine response", {
    ...closed({
      worker: THUMBPRINT,
      quarantined: { const: false },
      at: UNIX_TIME,
      lifted: closed({ reason: text(200), at: UNIX_TIME }),
    }),
  }),
);

// ---- emergency stop (two-person rule) ------------------------------------------------------

export const STOP_SCOPES = ["all", "cohort"] as const;
export const STOP_STATUSES = ["pending", "executed", "expired"] as const;
export const REQUIRED_APPROVALS = 2;
/** A request not approved by then is dead; approvals do not wait for a later crisis. */
export const STOP_REQUEST_TTL_S = 3600;

/** A cohort name, as workers carry it (`default` unless set otherwise). */
export const COHORT = {
  type: "string",
  minLength: 1,
  maxLength: 64,
  pattern: "^[a-z0-9][a-z0-9_.-]*$",
} as const;

export type EmergencyStopRequest =
  | { readonly scope: "all"; readonly reason: string }
  | { readonly scope: "cohort"; readonly cohort: string; readonly reason: string };

export interface EmergencyStopResponse {
  readonly stop_id: string;
  readonly status: (typeof STOP_STATUSES)[number];
  readonly scope: (typeof STOP_SCOPES)[number];
  /** The cohort stopped, null for `all`. */
  readonly cohort: string | null;
  /** Key ids of the distinct operator keys that approved, in order. */
  readonly approvals: readonly string[];
  readonly required_approvals: 2;
  readonly expires_at: number;
  readonly executed_at: number | null;
  /** How many workers got a `stop` publication; null until executed. */
  readonly workers_stopped: number | null;
}

export type EmergencyStopApproveRequest = Readonly<Record<string, never>>;

export const emergencyStopRequestSchema = frozen(
  root("emergency-stop-request", "POST /v1/admin/emergency-stop request", {
    ...closed({ scope: { enum: [...STOP_SCOPES] }, cohort: COHORT, reason: text(200) }, [
      "scope",
      "reason",
    ]),
    allOf: [
      when(is("scope", "all"), { properties: { cohort: false } }),
      when(is("scope", "cohort"), requires("cohort")),
    ],
  }),
);

export const emergencyStopResponseSchema = frozen(
  root("emergency-stop-response", "POST /v1/admin/emergency-stop[/{id}/approve] response", {
    ...closed({
      stop_id: UUID,
      status: { enum: [...STOP_STATUSES] },
      scope: { enum: [...STOP_SCOPES] },
      cohort: { ...COHORT, type: ["string", "null"] },
      approvals: { type: "array", maxItems: REQUIRED_APPROVALS, uniqueItems: true, items: ID16 },
      required_approvals: { const: REQUIRED_APPROVALS },
      expires_at: UNIX_TIME,
      executed_at: { ...UNIX_TIME, type: ["integer", "null"] },
      workers_stopped: { type: ["integer", "null"], minimum: 0, maximum: 9007199254740991 },
    }),
  }),
);

export const emergencyStopApproveRequestSchema = frozen(
  root("emergency-stop-approve-request", "POST /v1/admin/emergency-stop/{id}/approve request", {
    ...closed({}),
  }),
);
