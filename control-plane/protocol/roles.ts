import type { SchemaName } from "./schemas/index.ts";

/**
 * Who may call which endpoint: the role matrix as data. docs/protocol.md carries the same
 * matrix as a hand-written table (between `<!-- roles:begin -->` and `<!-- roles:end -->`);
 * test/control-plane/protocol/roles.test.ts keeps the two equal in both directions, and the
 * HTTP tests walk every cell against a live server.
 *
 * Callers:
 * - `admin`, `operator`, `owner`, `auditor`: `Authorization: Bearer agentd_<role>_…` API keys.
 * - `machine`: a registered machine proving possession of its key on every request
 *   (`Authorization: AgentD <access token>` + `AgentD-Proof`; on attest the proof and the
 *   signed attestation alone, as no token exists yet).
 * - `token`: the holder of an unused enrollment token (registration only).
 * - `public`: anyone, no credentials (and none looked at).
 *
 * Access: `yes` — any caller of that kind; `own` — only for its own objects: an owner for the
 * workers registered under its owner id, a machine for its own worker id (the `{id}` of the
 * path, or the worker a command was addressed to).
 */

export const CALLERS = [
  "admin",
  "operator",
  "owner",
  "auditor",
  "machine",
  "token",
  "public",
] as const;
export type Caller = (typeof CALLERS)[number];
export type Access = "yes" | "own";
/** The methods the endpoints use (DELETE: undoing an administrative action, API keys only). */
export type Method = "GET" | "POST" | "DELETE";

export interface Route {
  readonly method: Method;
  /** The path template; `{id}` is one path segment. */
  readonly path: string;
  readonly access: Readonly<Partial<Record<Caller, Access>>>;
  /** Schema of the JSON request body, if the endpoint takes one. */
  readonly request?: SchemaName;
  /** Schema of the query parameters (each at most once, as strings). */
  readonly query?: SchemaName;
  /** Schema of the 2xx JSON response body (absent: not JSON, e.g. /metrics). */
  readonly response?: SchemaName;
  /** A WebSocket upgrade (its messages: stream-client-message / stream-server-message). */
  readonly websocket?: true;
}

const yes = "yes" as const;
const own = "own" as const;

export const ROUTES: readonly Route[] = Object.freeze([
  // probes and public keys
  { method: "GET", path: "/healthz", access: { public: yes }, response: "health-response" },
  { method: "GET", path: "/readyz", access: { public: yes }, response: "health-response" },
  { method: "GET", path: "/metrics", access: { admin: yes, operator: yes, auditor: yes } },
  { method: "GET", path: "/v1/keys", access: { public: yes }, response: "keys-response" },
  {
    method: "POST",
    path: "/v1/admin/keys/rotate",
    access: { admin: yes },
    request: "keys-rotate-request",
    response: "keys-response",
  },
  // owners and API keys
  {
    method: "POST",
    path: "/v1/owners",
    access: { admin: yes },
    request: "owner-create-request",
    response: "owner-create-response",
  },
  {
    method: "POST",
    path: "/v1/api-keys",
    access: { admin: yes },
    request: "apikey-create-request",
    response: "apikey-create-response",
  },
  {
    method: "DELETE",
    path: "/v1/api-keys/{id}",
    access: { admin: yes },
    response: "apikey-revoke-response",
  },
  // enrollment and attestation
  {
    method: "POST",
    path: "/v1/enrollment-tokens",
    access: { owner: yes },
    request: "enrollment-token-create-request",
    response: "enrollment-token-create-response",
  },
  {
    method: "POST",
    path: "/v1/machines/register",
    access: { token: yes },
    request: "machine-register-request",
    response: "machine-register-response",
  },
  {
    method: "GET",
    path: "/v1/auth/agent/challenge",
    access: { public: yes },
    query: "challenge-query",
    response: "challenge-response",
  },
  {
    method: "POST",
    path: "/v1/auth/agent/attest",
    access: { machine: yes },
    request: "attest-request",
    response: "attest-response",
  },
  // consent, policy, revocation, assignment
  {
    method: "POST",
    path: "/v1/policies",
    access: { owner: own },
    request: "policy-create-request",
    response: "policy-create-response",
  },
  {
    method: "GET",
    path: "/v1/workers/{id}/policy",
    access: { admin: yes, owner: own, machine: own },
    response: "worker-policy-response",
  },
  {
    method: "POST",
    path: "/v1/workers/{id}/revocations",
    access: { owner: own },
    request: "revocation-create-request",
    response: "revocation-create-response",
  },
  {
    method: "POST",
    path: "/v1/workers/{id}/owner-rotations",
    access: { owner: own },
    request: "owner-rotation-create-request",
    response: "owner-rotation-create-response",
  },
  {
    method: "GET",
    path: "/v1/workers/{id}/assignment",
    access: { machine: own },
    response: "assignment-response",
  },
  // the machine's loop
  {
    method: "POST",
    path: "/v1/workers/{id}/heartbeat",
    access: { machine: own },
    request: "heartbeat-request",
    response: "heartbeat-response",
  },
  {
    method: "GET",
    path: "/v1/workers/{id}/commands",
    access: { machine: own },
    query: "worker-commands-query",
    response: "worker-commands-response",
  },
  {
    method: "GET",
    path: "/v1/workers/{id}/stream",
    access: { machine: own },
    websocket: true,
  },
  {
    method: "POST",
    path: "/v1/commands/{id}/result",
    access: { machine: own },
    request: "command-result-request",
    response: "command-result-response",
  },
  // operations
  {
    method: "POST",
    path: "/v1/commands",
    access: { operator: yes },
    request: "command-create-request",
    response: "command-create-response",
  },
  {
    method: "POST",
    path: "/v1/admin/workers/{id}/quarantine",
    access: { admin: yes, operator: yes },
    request: "quarantine-request",
    response: "quarantine-response",
  },
  {
    method: "DELETE",
    path: "/v1/admin/workers/{id}/quarantine",
    access: { operator: yes },
    response: "quarantine-lift-response",
  },
  {
    method: "POST",
    path: "/v1/admin/emergency-stop",
    access: { admin: yes, operator: yes },
    request: "emergency-stop-request",
    response: "emergency-stop-response",
  },
  {
    method: "POST",
    path: "/v1/admin/emergency-stop/{id}/approve",
    access: { operator: yes },
    request: "emergency-stop-approve-request",
    response: "emergency-stop-response",
  },
  {
    method: "GET",
    path: "/v1/audit/events",
    access: { admin: yes, auditor: yes },
    query: "audit-events-query",
    response: "audit-events-response",
  },
] satisfies Route[]);

/** A path segment that `{id}` matches: ids are base64url thumbprints, key ids or UUIDs. */
const ID_SEGMENT = "[A-Za-z0-9_-]{1,64}";

const compiled = ROUTES.map((route) => ({
  route,
  re: new RegExp(
    `^${route.path
      .split("{id}")
      .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
      .join(`(${ID_SEGMENT})`)}$`,
  ),
}));

/** The route for a request and the `{id}` in its path, or undefined. */
export function matchRoute(
  method: string,
  path: string,
): { readonly route: Route; readonly id: string | null } | undefined {
  for (const { route, re } of compiled) {
    if (route.method !== method) continue;
    const m = re.exec(path);
    if (m !== null) return { route, id: m[1] ?? null };
  }
  return undefined;
}

/** Whether `caller` may call `route` at all, and how (`own`: for its own objects only). */
export function accessOf(route: Route, caller: Caller): Access | undefined {
  return route.access[caller];
}
