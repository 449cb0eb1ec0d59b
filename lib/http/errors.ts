import { type ErrorCode, isAgentdError } from "../errors.ts";

/**
 * From a thrown error to the HTTP answer: status, stable code, message. The one table of
 * agentd's HTTP servers (the control plane's API and the agent's local API).
 *
 * Client errors (4xx) carry the AgentdError's own code and message: those are written for the
 * caller (a JSON position, a schema pointer). Everything else becomes 500 AGENTD_E_INTERNAL, or
 * 503 with the error's own code when it is worth a retry (the store, a disk that filled up),
 * always with a fixed message and the request id: stack traces, SQL, file paths and library
 * messages stay in the log.
 *
 * Every code of lib/errors.ts has a row (the type says so, and test/lib/http/errors.test.ts
 * walks the list), so a new code cannot silently fall through to 500: whoever adds one
 * decides here what a caller sees.
 */

export type StatusOverrides = Readonly<Partial<Record<ErrorCode, number>>>;

export const CODE_STATUS: Readonly<Record<ErrorCode, number>> = Object.freeze({
  AGENTD_E_INTERNAL: 500,
  // The caller's request is wrong (the local API's `n`); a server's own misuse of a library
  // fails before it listens.
  AGENTD_E_USAGE: 400,
  // A server fault by default; see TRANSIENT_IO_STATUS for a server whose disk comes back.
  AGENTD_E_IO: 500,

  // A server's own configuration and files: its fault, never the caller's.
  AGENTD_E_CONFIG_NOT_FOUND: 500,
  AGENTD_E_CONFIG_UNREADABLE: 500,
  AGENTD_E_CONFIG_PARSE: 500,
  AGENTD_E_CONFIG_UNKNOWN_KEY: 500,
  AGENTD_E_CONFIG_UNKNOWN_ENV: 500,
  AGENTD_E_CONFIG_TYPE: 500,
  AGENTD_E_CONFIG_RANGE: 500,
  AGENTD_E_FILE_INSECURE_MODE: 500,
  AGENTD_E_FILE_FOREIGN_OWNER: 500,
  AGENTD_E_FILE_NOT_REGULAR: 500,
  AGENTD_E_FILE_CORRUPT: 500,
  AGENTD_E_FILE_FORMAT_NEWER: 500,
  AGENTD_E_FILE_EXISTS: 500,
  AGENTD_E_STATE_TRANSITION: 500,
  AGENTD_E_NOT_ENROLLED: 500,
  AGENTD_E_IDENTITY_CLONED: 500,
  AGENTD_E_REVOCATION_REFUSED: 500,
  AGENTD_E_ROTATION_REFUSED: 500,
  AGENTD_E_KEY_INVALID: 500,
  AGENTD_E_LOG_RECORD_INVALID: 500,
  AGENTD_E_LOG_CHAIN_BROKEN: 500,
  AGENTD_E_LOG_SEQ_GAP: 500,
  AGENTD_E_LOG_TORN_TAIL: 500,
  AGENTD_E_LOG_HEAD_MISMATCH: 500,
  AGENTD_E_SERVICE_IMAGE_MISMATCH: 500,
  AGENTD_E_ENROLL_PIN_MISMATCH: 500,
  // An outgoing call of the server failed (the agent's own client): not the caller's doing.
  AGENTD_E_HTTP: 500,
  AGENTD_E_STORE_SCHEMA_NEWER: 500,

  // What the caller sent: a body, a document, a signature.
  AGENTD_E_SCHEMA: 400,
  AGENTD_E_JSON_INVALID: 400,
  AGENTD_E_JSON_DUPLICATE_KEY: 400,
  AGENTD_E_JSON_INTEGER_RANGE: 400,
  AGENTD_E_JSON_NOT_CANONICALIZABLE: 400,
  AGENTD_E_JWS_MALFORMED: 400,
  AGENTD_E_JWS_BASE64URL: 400,
  AGENTD_E_JWS_HEADER: 400,
  AGENTD_E_JWS_ALG: 400,
  AGENTD_E_JWS_TYP: 400,
  AGENTD_E_JWS_KID_MISMATCH: 400,
  AGENTD_E_JWS_UNKNOWN_KEY: 400,
  AGENTD_E_JWS_SIGNATURE: 400,
  AGENTD_E_JWS_PAYLOAD: 400,
  AGENTD_E_JWS_TOO_LARGE: 400,
  AGENTD_E_JWS_NOT_YET_VALID: 400,
  AGENTD_E_JWS_EXPIRED: 400,

  // The control plane's API.
  AGENTD_E_CP_UNAUTHENTICATED: 401,
  AGENTD_E_CP_PROOF_INVALID: 401,
  AGENTD_E_CP_TOKEN_INVALID: 401,
  AGENTD_E_CP_FORBIDDEN: 403,
  AGENTD_E_CP_QUARANTINED: 403,
  AGENTD_E_CP_NOT_FOUND: 404,
  AGENTD_E_CP_METHOD_NOT_ALLOWED: 405,
  AGENTD_E_CP_CONFLICT: 409,
  AGENTD_E_CP_REPLAY: 409,
  AGENTD_E_CP_TOO_LARGE: 413,
  AGENTD_E_CP_UNSUPPORTED_MEDIA: 415,
  AGENTD_E_CP_RATE_LIMITED: 429,
  AGENTD_E_STORE: 503,

  // The agent's local API.
  AGENTD_E_API_BAD_REQUEST: 400,
  AGENTD_E_API_UNAUTHENTICATED: 401,
  AGENTD_E_API_FORBIDDEN: 403,
  AGENTD_E_API_NOT_FOUND: 404,
  AGENTD_E_API_METHOD_NOT_ALLOWED: 405,
  AGENTD_E_API_TOO_LARGE: 413,
  AGENTD_E_API_RATE_LIMITED: 429,

  // A miner or the driver host answered badly, or an action on a miner failed (the local API's
  // miner views and actions): the agent is fine, the miner is the one to look at.
  AGENTD_E_MINER_UNREACHABLE: 502,
  AGENTD_E_MINER_TIMEOUT: 504,
  AGENTD_E_MINER_REPLY_INVALID: 502,
  AGENTD_E_MINER_REPLY_TOO_LARGE: 502,
  AGENTD_E_MINER_AUTH: 502,
  AGENTD_E_MINER_ACCESS_DENIED: 502,
  AGENTD_E_MINER_UNSUPPORTED: 409,
  AGENTD_E_MINER_NOT_CONFIRMED: 502,
  AGENTD_E_MINER_REFUSED: 502,
  AGENTD_E_MINER_UNKNOWN_FIRMWARE: 502,
  AGENTD_E_MINER_IDENTITY_CHANGED: 409,
  AGENTD_E_METER_READ: 502,
  AGENTD_E_DRIVER_HOST_UNAVAILABLE: 503,
  AGENTD_E_DRIVER_USER_MISSING: 503,
  AGENTD_E_DRIVER_MESSAGE_INVALID: 502,
} satisfies Record<ErrorCode, number>);

/**
 * For a server whose AGENTD_E_IO is its own disk filling up or going read-only (the agent: the
 * audit log, a state file), which comes back: 503, retry once it can write. Where an I/O error
 * is a broken installation (the control plane's key files) it stays 500.
 */
export const TRANSIENT_IO_STATUS: StatusOverrides = Object.freeze({ AGENTD_E_IO: 503 });

/**
 * The codes a server's own refusals carry: each API has its set (so a client sees which API
 * refused), with the statuses above (404, 405, 413, 415, 429).
 */
export interface HttpErrorCodes {
  readonly notFound: ErrorCode;
  readonly methodNotAllowed: ErrorCode;
  readonly tooLarge: ErrorCode;
  /** Absent: the server does not look at `Content-Type` (lib/http/body.ts). */
  readonly unsupportedMedia?: ErrorCode;
  readonly rateLimited: ErrorCode;
}

/** The status for a code: the override, then the table. */
export function statusForCode(code: ErrorCode, overrides: StatusOverrides = {}): number {
  return overrides[code] ?? CODE_STATUS[code] ?? 500;
}

export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}

export interface ErrorResponse {
  readonly status: number;
  readonly code: ErrorCode;
  readonly body: ErrorBody;
  readonly headers: Readonly<Record<string, string>>;
}

export interface ErrorResponseOptions {
  /** The server's (or the route's) statuses that differ from the table. */
  readonly overrides?: StatusOverrides;
  /** `WWW-Authenticate` on 401: the schemes the server accepts. */
  readonly wwwAuthenticate?: string;
}

/** What a 401 says when the server names no scheme of its own. */
export const DEFAULT_WWW_AUTHENTICATE = 'Bearer realm="agentd"';

/** The message of a 5xx: fixed per code, so nothing of the failure leaks. */
const GENERIC: Readonly<Partial<Record<ErrorCode, string>>> = {
  AGENTD_E_INTERNAL: "internal error",
  AGENTD_E_STORE: "the store is unavailable; retry later",
  AGENTD_E_IO: "storage is unavailable; retry later",
};

/**
 * The response for `err`: its status from its code alone (statusForCode), so a context can
 * never turn an internal failure into something that shows its message.
 */
export function errorResponse(
  err: unknown,
  requestId: string,
  options: ErrorResponseOptions = {},
): ErrorResponse {
  if (!isAgentdError(err)) return internal(requestId, 500, "AGENTD_E_INTERNAL");
  const status = statusForCode(err.code, options.overrides);
  if (status >= 500) {
    // A 503 keeps its code (the client may retry on it); any other 5xx is just internal.
    return internal(requestId, status, status === 503 ? err.code : "AGENTD_E_INTERNAL");
  }
  const headers: Record<string, string> = {};
  if (status === 401) {
    headers["www-authenticate"] = options.wwwAuthenticate ?? DEFAULT_WWW_AUTHENTICATE;
  }
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

function internal(requestId: string, status: number, code: ErrorCode): ErrorResponse {
  const message = `${GENERIC[code] ?? "internal error"} (request ${requestId})`;
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
