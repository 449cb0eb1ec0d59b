/**
 * The one error type of agentd.
 *
 * Every failure that crosses a module boundary is an `AgentdError` whose `code` is one of
 * `ERROR_CODES`. Codes are stable: scripts, the control plane and operators match on them,
 * so a code is never renamed or reused for another meaning. Each code is documented in
 * docs/errors.md (meaning and what to do); test/lib/errors.test.ts fails when the two lists
 * differ in either direction.
 *
 * The exit class says how the CLI ends when the error reaches it (DOCUMENTS.md section 7):
 * `failure` → 1, `usage` → 2 (usage or configuration), `denied` → 3 (verification failed or
 * denied).
 */

export type ExitClass = "failure" | "usage" | "denied";

export const EXIT_CODES: Readonly<Record<ExitClass, number>> = Object.freeze({
  failure: 1,
  usage: 2,
  denied: 3,
});

export const ERROR_CODES = Object.freeze({
  // general
  AGENTD_E_INTERNAL: "failure",
  AGENTD_E_USAGE: "usage",
  AGENTD_E_IO: "failure",

  // configuration
  AGENTD_E_CONFIG_NOT_FOUND: "usage",
  AGENTD_E_CONFIG_UNREADABLE: "usage",
  AGENTD_E_CONFIG_PARSE: "usage",
  AGENTD_E_CONFIG_UNKNOWN_KEY: "usage",
  AGENTD_E_CONFIG_UNKNOWN_ENV: "usage",
  AGENTD_E_CONFIG_TYPE: "usage",
  AGENTD_E_CONFIG_RANGE: "usage",

  // files that must be trustworthy
  AGENTD_E_FILE_INSECURE_MODE: "failure",
  AGENTD_E_FILE_FOREIGN_OWNER: "failure",
  AGENTD_E_FILE_NOT_REGULAR: "failure",
  AGENTD_E_FILE_CORRUPT: "failure",
  AGENTD_E_FILE_FORMAT_NEWER: "failure",
  AGENTD_E_FILE_EXISTS: "failure",
  AGENTD_E_STATE_TRANSITION: "denied",
  AGENTD_E_NOT_ENROLLED: "failure",
  AGENTD_E_IDENTITY_CLONED: "denied",
  AGENTD_E_REVOCATION_REFUSED: "denied",
  AGENTD_E_ROTATION_REFUSED: "denied",

  // keys
  AGENTD_E_KEY_INVALID: "failure",

  // JSON, canonical JSON
  AGENTD_E_JSON_INVALID: "denied",
  AGENTD_E_JSON_DUPLICATE_KEY: "denied",
  AGENTD_E_JSON_INTEGER_RANGE: "denied",
  AGENTD_E_JSON_NOT_CANONICALIZABLE: "failure",

  // JWS (DOCUMENTS.md section 1)
  AGENTD_E_JWS_MALFORMED: "denied",
  AGENTD_E_JWS_BASE64URL: "denied",
  AGENTD_E_JWS_HEADER: "denied",
  AGENTD_E_JWS_ALG: "denied",
  AGENTD_E_JWS_TYP: "denied",
  AGENTD_E_JWS_KID_MISMATCH: "denied",
  AGENTD_E_JWS_UNKNOWN_KEY: "denied",
  AGENTD_E_JWS_SIGNATURE: "denied",
  AGENTD_E_JWS_PAYLOAD: "denied",
  AGENTD_E_JWS_TOO_LARGE: "denied",
  AGENTD_E_JWS_NOT_YET_VALID: "denied",
  AGENTD_E_JWS_EXPIRED: "denied",

  // append-only and hash-chained logs
  AGENTD_E_LOG_RECORD_INVALID: "denied",
  AGENTD_E_LOG_CHAIN_BROKEN: "denied",
  AGENTD_E_LOG_SEQ_GAP: "denied",
  AGENTD_E_LOG_TORN_TAIL: "denied",
  AGENTD_E_LOG_HEAD_MISMATCH: "denied",

  // wire protocol and reference control plane (docs/protocol.md)
  AGENTD_E_SCHEMA: "denied",
  AGENTD_E_HTTP: "failure",
  AGENTD_E_CP_UNAUTHENTICATED: "denied",
  AGENTD_E_CP_FORBIDDEN: "denied",
  AGENTD_E_CP_NOT_FOUND: "failure",
  AGENTD_E_CP_CONFLICT: "denied",
  AGENTD_E_CP_REPLAY: "denied",
  AGENTD_E_CP_PROOF_INVALID: "denied",
  AGENTD_E_CP_TOKEN_INVALID: "denied",
  AGENTD_E_CP_QUARANTINED: "denied",
  AGENTD_E_CP_RATE_LIMITED: "failure",
  AGENTD_E_CP_TOO_LARGE: "denied",
  AGENTD_E_CP_METHOD_NOT_ALLOWED: "denied",
  AGENTD_E_CP_UNSUPPORTED_MEDIA: "denied",
  AGENTD_E_ENROLL_PIN_MISMATCH: "denied",

  // the supervisor (supervisor/)
  AGENTD_E_SERVICE_IMAGE_MISMATCH: "denied",

  // the agent's local API (agent/local-api.ts)
  AGENTD_E_API_BAD_REQUEST: "denied",
  AGENTD_E_API_UNAUTHENTICATED: "denied",
  AGENTD_E_API_FORBIDDEN: "denied",
  AGENTD_E_API_NOT_FOUND: "failure",
  AGENTD_E_API_METHOD_NOT_ALLOWED: "denied",
  AGENTD_E_API_TOO_LARGE: "denied",
  AGENTD_E_API_RATE_LIMITED: "failure",
  AGENTD_E_STORE: "failure",

  // ASIC drivers and the driver host (plugins/)
  AGENTD_E_MINER_UNREACHABLE: "failure",
  AGENTD_E_MINER_TIMEOUT: "failure",
  AGENTD_E_MINER_REPLY_INVALID: "failure",
  AGENTD_E_MINER_REPLY_TOO_LARGE: "failure",
  AGENTD_E_MINER_AUTH: "denied",
  AGENTD_E_MINER_ACCESS_DENIED: "denied",
  AGENTD_E_MINER_UNSUPPORTED: "failure",
  AGENTD_E_MINER_NOT_CONFIRMED: "failure",
  AGENTD_E_MINER_REFUSED: "failure",
  AGENTD_E_MINER_UNKNOWN_FIRMWARE: "failure",
  AGENTD_E_MINER_IDENTITY_CHANGED: "denied",
  AGENTD_E_METER_READ: "failure",
  AGENTD_E_DRIVER_HOST_UNAVAILABLE: "failure",
  AGENTD_E_DRIVER_USER_MISSING: "denied",
  AGENTD_E_DRIVER_MESSAGE_INVALID: "denied",
  AGENTD_E_STORE_SCHEMA_NEWER: "failure",
} as const satisfies Record<string, ExitClass>);

export type ErrorCode = keyof typeof ERROR_CODES;

/** Structured facts about an error. Values must be JSON-serialisable and never secrets. */
export type ErrorContext = Readonly<Record<string, string | number | boolean | null | undefined>>;

/** The control plane's codes: a client keeps the HTTP status the server answered with. */
type ControlPlaneCode = Extract<ErrorCode, `AGENTD_E_CP_${string}`>;

/**
 * The facts callers read, typed per code (any code may carry other facts too, for people and
 * logs): reading `err.context.errno` after `err.code === "AGENTD_E_IO"` is a string or absent,
 * and making one with a number there does not compile.
 */
interface KnownContext {
  AGENTD_E_IO: { readonly path?: string; readonly errno?: string };
  AGENTD_E_HTTP: {
    /** The status the server answered with; absent when there was no answer. */
    readonly status?: number;
    /** The socket's error (ECONNREFUSED…), null when it had none. */
    readonly errno?: string | null;
    /** The server's error code when it is not one of ours. */
    readonly code?: string | null;
  };
  AGENTD_E_CP_CONFLICT: { readonly status?: number; readonly reason?: string };
  AGENTD_E_CP_RATE_LIMITED: { readonly status?: number; readonly retry_after_s?: number };
  AGENTD_E_API_RATE_LIMITED: { readonly retry_after_s?: number };
  AGENTD_E_CP_METHOD_NOT_ALLOWED: { readonly status?: number; readonly allow?: string };
}

export type ContextOf<C extends ErrorCode> = ErrorContext &
  (C extends keyof KnownContext
    ? KnownContext[C]
    : C extends ControlPlaneCode
      ? { readonly status?: number }
      : unknown);

export class AgentdError<C extends ErrorCode = ErrorCode> extends Error {
  override readonly name = "AgentdError";
  readonly code: C;
  readonly context: ContextOf<C>;

  constructor(code: C, message: string, options: { context?: ContextOf<C>; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = Object.freeze({ ...(options.context ?? {}) }) as ContextOf<C>;
  }

  get exitClass(): ExitClass {
    return ERROR_CODES[this.code];
  }

  get exitCode(): number {
    return EXIT_CODES[this.exitClass];
  }

  /** The error as machine-readable JSON (for `--json` output and audit records). */
  toJSON(): { code: C; message: string; context: ContextOf<C> } {
    return { code: this.code, message: this.message, context: this.context };
  }
}

/**
 * A union of one `AgentdError` instantiation per code, so that `switch (e.code)` narrows.
 */
export type AnyAgentdError = { [C in ErrorCode]: AgentdError<C> }[ErrorCode];

export function isAgentdError(value: unknown): value is AnyAgentdError {
  return value instanceof AgentdError;
}

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(ERROR_CODES, value);
}

/** Shorthand used throughout: `throw fail("AGENTD_E_IO", "...", {path})`. */
export function fail<C extends ErrorCode>(
  code: C,
  message: string,
  context?: ContextOf<C>,
  cause?: unknown,
): AgentdError<C> {
  return new AgentdError(code, message, {
    ...(context === undefined ? {} : { context }),
    ...(cause === undefined ? {} : { cause }),
  });
}
