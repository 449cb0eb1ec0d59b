import {
  closed,
  frozen,
  jws,
  POSITIVE,
  root,
  SHA256_HEX,
  SMALL_JWS,
  THUMBPRINT,
} from "./common.ts";

/** Consents in, bundles out, owner-signed revocations, assignments. */

export interface PolicyCreateRequest {
  /** The owner-signed consent JWS (DOCUMENTS.md section 3). */
  readonly consent: string;
}

export interface PolicyCreateResponse {
  readonly worker: string;
  readonly seq: number;
  readonly version: number;
  readonly consent_sha256: string;
  readonly publication: string;
}

export const policyCreateRequestSchema = frozen(
  root("policy-create-request", "POST /v1/policies request", { ...closed({ consent: jws() }) }),
);

export const policyCreateResponseSchema = frozen(
  root("policy-create-response", "POST /v1/policies response", {
    ...closed({
      worker: THUMBPRINT,
      seq: POSITIVE,
      version: POSITIVE,
      consent_sha256: SHA256_HEX,
      publication: SMALL_JWS,
    }),
  }),
);

/** The bundle of DOCUMENTS.md section 5, exactly. */
export interface WorkerPolicyResponse {
  readonly consent: string;
  readonly publication: string;
}

export const workerPolicyResponseSchema = frozen(
  root("worker-policy-response", "GET /v1/workers/{id}/policy response (the bundle)", {
    ...closed({ consent: jws(), publication: SMALL_JWS }),
  }),
);

export const OWNER_DOCUMENT_KINDS = ["revocation", "decommission"] as const;

export interface RevocationCreateRequest {
  /** An owner-signed revocation or decommission JWS (DOCUMENTS.md section 5). */
  readonly document: string;
}

export interface RevocationCreateResponse {
  readonly worker: string;
  readonly kind: (typeof OWNER_DOCUMENT_KINDS)[number];
  readonly identity: string;
  /** The stream event that carries it to the agent. */
  readonly event_id: number;
}

export const revocationCreateRequestSchema = frozen(
  root("revocation-create-request", "POST /v1/workers/{id}/revocations request", {
    ...closed({ document: SMALL_JWS }),
  }),
);

export const revocationCreateResponseSchema = frozen(
  root("revocation-create-response", "POST /v1/workers/{id}/revocations response", {
    ...closed({
      worker: THUMBPRINT,
      kind: { enum: [...OWNER_DOCUMENT_KINDS] },
      identity: SHA256_HEX,
      event_id: POSITIVE,
    }),
  }),
);

export interface OwnerRotationCreateRequest {
  /** An owner-key rotation JWS signed by the worker's owner key in force (DOCUMENTS.md section 5). */
  readonly document: string;
}

export interface OwnerRotationCreateResponse {
  readonly worker: string;
  readonly identity: string;
  /** The retired key's thumbprint (the document's `owner`). */
  readonly from_owner: string;
  /** The new key's thumbprint: the key the worker's owner documents are verified with now. */
  readonly to_owner: string;
  /** The stream event that carries it to the agent. */
  readonly event_id: number;
}

export const ownerRotationCreateRequestSchema = frozen(
  root("owner-rotation-create-request", "POST /v1/workers/{id}/owner-rotations request", {
    ...closed({ document: SMALL_JWS }),
  }),
);

export const ownerRotationCreateResponseSchema = frozen(
  root("owner-rotation-create-response", "POST /v1/workers/{id}/owner-rotations response", {
    ...closed({
      worker: THUMBPRINT,
      identity: SHA256_HEX,
      from_owner: THUMBPRINT,
      to_owner: THUMBPRINT,
      event_id: POSITIVE,
    }),
  }),
);

export interface AssignmentResponse {
  readonly assignment: string;
}

export const assignmentResponseSchema = frozen(
  root("assignment-response", "GET /v1/workers/{id}/assignment response", {
    ...closed({ assignment: SMALL_JWS }),
  }),
);
