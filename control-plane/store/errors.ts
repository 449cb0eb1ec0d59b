import { type AgentdError, fail, isAgentdError } from "../../lib/errors.ts";
import type { Backend } from "./store.ts";

/** The expected refusals (docs/errors.md); thrown from inside a transaction, they roll it back. */
export function conflict(message: string, context?: Record<string, string | number>) {
  return fail("AGENTD_E_CP_CONFLICT", message, context);
}

export function notFound(what: string, id: string) {
  return fail("AGENTD_E_CP_NOT_FOUND", `${what} not found`, { [what]: id });
}

/**
 * A driver failure as AGENTD_E_STORE. The message names the backend and the database's error
 * code and constraint, never the SQL parameters or connection string: PostgreSQL's own
 * messages and details can quote values (`Key (x)=(…) already exists`), so they are left out;
 * SQLite's messages quote only names. The original stays as `cause` for the log.
 */
export function storeError(backend: Backend, e: unknown): AgentdError {
  if (isAgentdError(e)) return e;
  const err = (e ?? {}) as {
    code?: unknown;
    errcode?: unknown;
    errstr?: unknown;
    constraint?: unknown;
    message?: unknown;
  };
  const context: Record<string, string | number> = { backend };
  let message: string;
  if (backend === "sqlite") {
    if (typeof err.errcode === "number") context.errcode = err.errcode;
    const text = typeof err.message === "string" ? err.message : String(e);
    message = `SQLite: ${text}`;
  } else {
    const code = typeof err.code === "string" ? err.code : "unknown";
    context.code = code;
    if (typeof err.constraint === "string") context.constraint = err.constraint;
    message = /^[0-9A-Z]{5}$/.test(code)
      ? `PostgreSQL error ${code}${typeof err.constraint === "string" ? ` (${err.constraint})` : ""}`
      : `PostgreSQL unreachable or failed (${code})`;
  }
  return fail("AGENTD_E_STORE", message, context, e);
}
