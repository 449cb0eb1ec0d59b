import * as admin from "./api-admin.ts";
import * as audit from "./api-audit.ts";
import * as basics from "./api-basics.ts";
import * as enrollment from "./api-enrollment.ts";
import * as policy from "./api-policy.ts";
import * as worker from "./api-worker.ts";
import { type AssignmentPayload, assignmentSchema } from "./assignment.ts";
import { type AttestationPayload, attestationSchema } from "./attestation.ts";
import { type CommandPayload, commandSchema } from "./command.ts";
import { type CommandResultPayload, commandResultSchema } from "./command-result.ts";
import { type JsonSchema, SCHEMA_BASE } from "./common.ts";
import { type EnrollmentTokenPayload, enrollmentTokenSchema } from "./enrollment-token.ts";
import { type HeartbeatPayload, heartbeatSchema } from "./heartbeat.ts";
import { type KeySetPayload, keysetSchema } from "./keyset.ts";
import { type ProofPayload, proofSchema } from "./proof.ts";

/**
 * Every wire schema by name. The name is the last segment of the schema's `$id`
 * (`https://agentd.dev/schemas/<name>.json`) and of its published file
 * `docs/schemas/<name>.json` (scripts/gen-protocol-schemas.ts).
 */

/** The TypeScript type of a value that passed each schema. */
export interface SchemaTypes {
  // signed documents (payloads)
  keyset: KeySetPayload;
  "enrollment-token": EnrollmentTokenPayload;
  attestation: AttestationPayload;
  heartbeat: HeartbeatPayload;
  command: CommandPayload;
  "command-result": CommandResultPayload;
  assignment: AssignmentPayload;
  proof: ProofPayload;
  // HTTP bodies
  error: basics.ErrorBody;
  "health-response": basics.HealthResponse;
  "keys-response": admin.KeysResponse;
  "keys-rotate-request": admin.KeysRotateRequest;
  "owner-create-request": admin.OwnerCreateRequest;
  "owner-create-response": admin.OwnerCreateResponse;
  "apikey-create-request": admin.ApiKeyCreateRequest;
  "apikey-create-response": admin.ApiKeyCreateResponse;
  "apikey-revoke-response": admin.ApiKeyRevokeResponse;
  "enrollment-token-create-request": enrollment.EnrollmentTokenCreateRequest;
  "enrollment-token-create-response": enrollment.EnrollmentTokenCreateResponse;
  "machine-register-request": enrollment.MachineRegisterRequest;
  "machine-register-response": enrollment.MachineRegisterResponse;
  "challenge-query": enrollment.ChallengeQuery;
  "challenge-response": enrollment.ChallengeResponse;
  "attest-request": enrollment.AttestRequest;
  "attest-response": enrollment.AttestResponse;
  "policy-create-request": policy.PolicyCreateRequest;
  "policy-create-response": policy.PolicyCreateResponse;
  "worker-policy-response": policy.WorkerPolicyResponse;
  "revocation-create-request": policy.RevocationCreateRequest;
  "revocation-create-response": policy.RevocationCreateResponse;
  "owner-rotation-create-request": policy.OwnerRotationCreateRequest;
  "owner-rotation-create-response": policy.OwnerRotationCreateResponse;
  "assignment-response": policy.AssignmentResponse;
  "heartbeat-request": worker.HeartbeatRequest;
  "heartbeat-response": worker.HeartbeatResponse;
  "command-create-request": worker.CommandCreateRequest;
  "command-create-response": worker.CommandCreateResponse;
  "worker-commands-query": worker.WorkerCommandsQuery;
  "worker-commands-response": worker.WorkerCommandsResponse;
  "command-result-request": worker.CommandResultRequest;
  "command-result-response": worker.CommandResultResponse;
  "stream-client-message": worker.StreamClientMessage;
  "stream-server-message": worker.StreamServerMessage;
  "quarantine-request": admin.QuarantineRequest;
  "quarantine-response": admin.QuarantineResponse;
  "quarantine-lift-response": admin.QuarantineLiftResponse;
  "emergency-stop-request": admin.EmergencyStopRequest;
  "emergency-stop-response": admin.EmergencyStopResponse;
  "emergency-stop-approve-request": admin.EmergencyStopApproveRequest;
  "audit-events-query": audit.AuditEventsQuery;
  "audit-events-response": audit.AuditEventsResponse;
}

export type SchemaName = keyof SchemaTypes;

export const SCHEMAS: Readonly<Record<SchemaName, JsonSchema>> = Object.freeze({
  keyset: keysetSchema,
  "enrollment-token": enrollmentTokenSchema,
  attestation: attestationSchema,
  heartbeat: heartbeatSchema,
  command: commandSchema,
  "command-result": commandResultSchema,
  assignment: assignmentSchema,
  proof: proofSchema,
  error: basics.errorSchema,
  "health-response": basics.healthResponseSchema,
  "keys-response": admin.keysResponseSchema,
  "keys-rotate-request": admin.keysRotateRequestSchema,
  "owner-create-request": admin.ownerCreateRequestSchema,
  "owner-create-response": admin.ownerCreateResponseSchema,
  "apikey-create-request": admin.apikeyCreateRequestSchema,
  "apikey-create-response": admin.apikeyCreateResponseSchema,
  "apikey-revoke-response": admin.apikeyRevokeResponseSchema,
  "enrollment-token-create-request": enrollment.enrollmentTokenCreateRequestSchema,
  "enrollment-token-create-response": enrollment.enrollmentTokenCreateResponseSchema,
  "machine-register-request": enrollment.machineRegisterRequestSchema,
  "machine-register-response": enrollment.machineRegisterResponseSchema,
  "challenge-query": enrollment.challengeQuerySchema,
  "challenge-response": enrollment.challengeResponseSchema,
  "attest-request": enrollment.attestRequestSchema,
  "attest-response": enrollment.attestResponseSchema,
  "policy-create-request": policy.policyCreateRequestSchema,
  "policy-create-response": policy.policyCreateResponseSchema,
  "worker-policy-response": policy.workerPolicyResponseSchema,
  "revocation-create-request": policy.revocationCreateRequestSchema,
  "revocation-create-response": policy.revocationCreateResponseSchema,
  "owner-rotation-create-request": policy.ownerRotationCreateRequestSchema,
  "owner-rotation-create-response": policy.ownerRotationCreateResponseSchema,
  "assignment-response": policy.assignmentResponseSchema,
  "heartbeat-request": worker.heartbeatRequestSchema,
  "heartbeat-response": worker.heartbeatResponseSchema,
  "command-create-request": worker.commandCreateRequestSchema,
  "command-create-response": worker.commandCreateResponseSchema,
  "worker-commands-query": worker.workerCommandsQuerySchema,
  "worker-commands-response": worker.workerCommandsResponseSchema,
  "command-result-request": worker.commandResultRequestSchema,
  "command-result-response": worker.commandResultResponseSchema,
  "stream-client-message": worker.streamClientMessageSchema,
  "stream-server-message": worker.streamServerMessageSchema,
  "quarantine-request": admin.quarantineRequestSchema,
  "quarantine-response": admin.quarantineResponseSchema,
  "quarantine-lift-response": admin.quarantineLiftResponseSchema,
  "emergency-stop-request": admin.emergencyStopRequestSchema,
  "emergency-stop-response": admin.emergencyStopResponseSchema,
  "emergency-stop-approve-request": admin.emergencyStopApproveRequestSchema,
  "audit-events-query": audit.auditEventsQuerySchema,
  "audit-events-response": audit.auditEventsResponseSchema,
});

export const SCHEMA_NAMES = Object.freeze(Object.keys(SCHEMAS) as SchemaName[]);

export function isSchemaName(s: string): s is SchemaName {
  return Object.hasOwn(SCHEMAS, s);
}

/** The published file of each schema: `<name>.json` → its text (2-space JSON, final newline). */
export function schemaFiles(): ReadonlyMap<string, string> {
  return new Map(
    SCHEMA_NAMES.map((name) => [`${name}.json`, `${JSON.stringify(SCHEMAS[name], null, 2)}\n`]),
  );
}

export { SCHEMA_BASE };
