import { type ErrorCode, isAgentdError } from "../../lib/errors.ts";

/**
 * From a thrown error to the HTTP response: status, stable code, message.
 *
 * Client errors (4xx) carry the AgentdError's own code and message: those are written for the
 * caller (a JSON position, a schema pointer). Everything else becomes 500 AGENTD_E_INTERNAL, or
 * 503 for the store, with a fixed message and the request id: stack traces, SQL, file paths
 * and library messages stay in the log.
 *
 * Every AGENTD_E_CP_* code has an explicit row (test/control-plane/http/errors.test.ts walks
 * lib/errors.ts), so a new code cannot silently fall through to 500.
 */

export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}

export interface ErrorResponse {
  readonly status: number;
  readonly code: ErrorCode;
  readonly body: ErrorBody;
  readonly headers: Readonly<Record<string, string>>;
}

export const CODE_STATUS: Readonly<Partial<Record<ErrorCode, number>>> = Object.freeze({
  AGENTD_E_SCHEMA: 400,
  AGENTD_E_CP_UNAUTHENTICATED: 401,
  AGENTD_E_CP_PROOF_INVALID: 401,
  AGENTD_E_CP_TOKEN_INVALID: 401,
  AGENTD_E_CP_FORBIDDEN: 403,
  AGENTD_E_CP_QUARANTINED: 403,
  AGENTD_E_CP_NOT_FOUND: 404,
  AGENTD_E_CP_CONFLICT: 409,
  AGENTD_E_CP_REPLAY: 409,
  AGENTD_E_CP_TOO_LARGE: 413,
  AGENTD_E_CP_METHOD_NOT_ALLOWED: 405,
  AGENTD_E_CP_UNSUPPORTED_MEDIA: 415,
  AGENTD_E_CP_RATE_LIMITED: 429,
  AGENTD_E_STORE: 503,
});

/** The status for a code: the route's override, then the table, then the prefix rules. */
export function statusForCode(
  code: ErrorCode,
  overrides: Readonly<Partial<Record<ErrorCode, number>>> = {},
): number {
  const status = overrides[code] ?? CODE_STATUS[code];
  if (status !== undefined) return status;
  if (code.startsWith("AGENTD_E_JSON_") || code.startsWith("AGENTD_E_JWS_")) return 400;
  return 500;
}

/** What `WWW-Authenticate` says on 401: the two schemes this API accepts. */
export const WWW_AUTHENTICATE = 'Bearer realm="agentd", AgentD realm="agentd"';

const GENERIC: Readonly<Record<number, string>> = {
  500: "internal error",
  503: "the store is unavailable; retry later",
};

/**
 * The response for `err`: its status from its code alone (statusForCode), so a context can
 * never turn an internal failure into something that shows its message.
 */
export function errorResponse(
  err: unknown,
  requestId: string,
  overrides: Readonly<Partial<Record<ErrorCode, number>>> = {},
): ErrorResponse {
  if (!isAgentdError(err)) return internal(requestId, 500);
  const status = statusForCode(err.code, overrides);
  if (status >= 500) return internal(requestId, status);
  const headers: Record<string, string> = {};
  if (status === 401) headers["www-authenticate"] = WWW_AUTHENTICATE;
  if (status === 429) headers["retry-after"] = String(retryAfter(err.context.retry_after_s));
  const allow = err.context.allow;
  if (status === 405 && typeof allow === "string") headers.allow = allow;
  return {
    status,
    code: err.code,
    body: { error: { code: err.code, message: err.message } },
    headers,
  };
}

function internal(requestId: string, status: number): ErrorResponse {
  const code: ErrorCode = status === 503 ? "AGENTD_E_STORE" : "AGENTD_E_INTERNAL";
  const message = `${GENERIC[status] ?? GENERIC[500]} (request ${requestId})`;
  return {
    status,
    code,
    body: { error: { code, message } },
    headers: status === 503 ? { "retry-after": "1" } : {},
  };
}

function retryAfter(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? Math.max(1, Math.ceil(value)) : 1;
}
