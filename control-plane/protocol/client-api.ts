import { fail } from "../../lib/errors.ts";
import { call, createTransport, type TransportOptions } from "./client-http.ts";
import type { Method } from "./roles.ts";
import type {
  ApiKeyCreateRequest,
  ApiKeyCreateResponse,
  ApiKeyRevokeResponse,
  EmergencyStopRequest,
  EmergencyStopResponse,
  KeysResponse,
  KeysRotateRequest,
  OwnerCreateRequest,
  OwnerCreateResponse,
  QuarantineLiftResponse,
  QuarantineResponse,
} from "./schemas/api-admin.ts";
import type { AuditEvent, AuditEventsQuery, AuditEventsResponse } from "./schemas/api-audit.ts";
import type { HealthResponse } from "./schemas/api-basics.ts";
import type {
  EnrollmentTokenCreateRequest,
  EnrollmentTokenCreateResponse,
} from "./schemas/api-enrollment.ts";
import type {
  OwnerRotationCreateResponse,
  PolicyCreateResponse,
  RevocationCreateResponse,
  WorkerPolicyResponse,
} from "./schemas/api-policy.ts";
import type { CommandCreateRequest, CommandCreateResponse } from "./schemas/api-worker.ts";

/**
 * The calls people and their scripts make with an API key (`Authorization: Bearer agentd_…`):
 * admins, operators, owners and auditors (docs/protocol.md sections 3–5). The control plane
 * decides what the key's role may do; this client only speaks the protocol.
 */

export interface ApiClientOptions extends TransportOptions {
  /** `agentd_<role>_…`; absent for the public endpoints only. */
  readonly apiKey?: string;
}

export interface ApiClient {
  readonly origin: string;
  health(): Promise<HealthResponse>;
  ready(): Promise<HealthResponse>;
  /** The root-signed key set JWS (verify it against a pinned root: keyset.ts). */
  getKeys(): Promise<KeysResponse>;
  rotateKeys(r?: KeysRotateRequest): Promise<KeysResponse>;
  createOwner(r: OwnerCreateRequest): Promise<OwnerCreateResponse>;
  createApiKey(r: ApiKeyCreateRequest): Promise<ApiKeyCreateResponse>;
  /** Revokes an API key by its id, for good (admin). */
  revokeApiKey(keyId: string): Promise<ApiKeyRevokeResponse>;
  createEnrollmentToken(r?: EnrollmentTokenCreateRequest): Promise<EnrollmentTokenCreateResponse>;
  /** An owner posts its signed consent. */
  postConsent(consent: string): Promise<PolicyCreateResponse>;
  getWorkerPolicy(worker: string): Promise<WorkerPolicyResponse>;
  /** An owner posts a signed revocation or decommission. */
  postRevocation(worker: string, document: string): Promise<RevocationCreateResponse>;
  /** An owner-key rotation for the control plane to check, store and push to the worker. */
  postOwnerRotation(worker: string, document: string): Promise<OwnerRotationCreateResponse>;
  createCommand(r: CommandCreateRequest): Promise<CommandCreateResponse>;
  quarantine(worker: string, reason: string): Promise<QuarantineResponse>;
  /** Lifts a worker's quarantine on the control plane (operator); resumes no mining. */
  liftQuarantine(worker: string): Promise<QuarantineLiftResponse>;
  emergencyStop(r: EmergencyStopRequest): Promise<EmergencyStopResponse>;
  approveEmergencyStop(id: string): Promise<EmergencyStopResponse>;
  /** One page of the audit log. */
  auditEvents(q?: AuditEventsQuery): Promise<AuditEventsResponse>;
  /** Every audit event after `after` (default: from the start), page by page. */
  auditExport(o?: {
    readonly after?: number;
    readonly pageSize?: number;
  }): AsyncGenerator<AuditEvent, void, undefined>;
  /** Prometheus text. */
  metrics(): Promise<string>;
  close(): void;
}

export function createApiClient(o: ApiClientOptions): ApiClient {
  const t = createTransport(o);
  const auth = () => {
    if (o.apiKey === undefined) throw fail("AGENTD_E_USAGE", "an API key is needed for this call");
    return { authorization: `Bearer ${o.apiKey}` };
  };
  const send = async <R>(method: Method, path: string, body?: unknown, query?: object) =>
    (
      await call(t, method, path, {
        headers: auth,
        ...(body === undefined ? {} : { body }),
        ...(query === undefined ? {} : { query: query as Record<string, string> }),
      })
    ).body as R;
  const open = async <R>(path: string) => (await call(t, "GET", path)).body as R;

  return {
    origin: t.origin,
    health: () => open("/healthz"),
    ready: () => open("/readyz"),
    getKeys: () => open("/v1/keys"),
    rotateKeys: (r = {}) => send("POST", "/v1/admin/keys/rotate", r),
    createOwner: (r) => send("POST", "/v1/owners", r),
    createApiKey: (r) => send("POST", "/v1/api-keys", r),
    revokeApiKey: (keyId) => send("DELETE", `/v1/api-keys/${keyId}`),
    createEnrollmentToken: (r = {}) => send("POST", "/v1/enrollment-tokens", r),
    postConsent: (consent) => send("POST", "/v1/policies", { consent }),
    getWorkerPolicy: (worker) => send("GET", `/v1/workers/${worker}/policy`),
    postRevocation: (worker, document) =>
      send("POST", `/v1/workers/${worker}/revocations`, { document }),
    postOwnerRotation: (worker, document) =>
      send("POST", `/v1/workers/${worker}/owner-rotations`, { document }),
    createCommand: (r) => send("POST", "/v1/commands", r),
    quarantine: (worker, reason) =>
      send("POST", `/v1/admin/workers/${worker}/quarantine`, { reason }),
    liftQuarantine: (worker) => send("DELETE", `/v1/admin/workers/${worker}/quarantine`),
    emergencyStop: (r) => send("POST", "/v1/admin/emergency-stop", r),
    approveEmergencyStop: (id) => send("POST", `/v1/admin/emergency-stop/${id}/approve`, {}),
    auditEvents: (q = {}) => send("GET", "/v1/audit/events", undefined, q),
    async *auditExport(e = {}) {
      let after: string | undefined = e.after === undefined ? undefined : String(e.after);
      for (;;) {
        const page: AuditEventsResponse = await send("GET", "/v1/audit/events", undefined, {
          ...(after === undefined ? {} : { after }),
          limit: String(e.pageSize ?? 1000),
        });
        yield* page.events;
        if (page.next_cursor === null) return;
        if (page.events.length === 0 || page.next_cursor === after) {
          throw fail("AGENTD_E_HTTP", "GET /v1/audit/events: the cursor does not advance");
        }
        after = page.next_cursor;
      }
    },
    metrics: () => send("GET", "/metrics"),
    close: () => t.close(),
  };
}
