import { isAgentdError } from "../../lib/errors.ts";

/**
 * Whether the control plane refused a request for good: it answered, with a client error
 * other than "too many requests" (client-http.ts keeps the status in the error's context). The
 * same request will be refused again, so a caller drops it instead of retrying it; everything
 * else — no answer, a timeout, a 5xx, a 429 — is worth another try. The agent branches on
 * this, never on a status.
 */
export function isRefusal(err: unknown): boolean {
  if (!isAgentdError(err)) return false;
  const status = err.context.status;
  return typeof status === "number" && status >= 400 && status < 500 && status !== 429;
}
