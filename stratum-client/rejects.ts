import type { RpcReply } from "./codec.ts";

/**
 * A pool's answer to mining.submit, in any of the three forms pools really use
 * (PROTOCOLS.md "Reject conventions"):
 *   {"result": true, "error": null}                            accepted
 *   {"result": null, "error": [23, "Low difficulty", null]}    rejected with a code
 *     (also the JSON-RPC 2.0 object form {"code": 23, "message": "…"})
 *   {"result": false, "error": null, "reject-reason": "Stale"} rejected with a reason
 *   {"result": false, "error": null}                           rejected, no reason
 * Only a literal `true` with no error counts as accepted: anything unexpected is a reject,
 * so a confused pool can never make us report credit that was not given.
 */
export interface SubmitResult {
  readonly accepted: boolean;
  /** The pool's reason text (bounded), or ours when no answer came. */
  readonly reason?: string;
  /** The pool's numeric code, when it gave one. */
  readonly code?: number;
  /** False when no reply came (timeout, not connected, connection lost). */
  readonly answered: boolean;
}

/** Peer text goes to logs and audit records: keep it short and printable. */
const MAX_REASON = 200;

export function parseSubmitReply(
  reply: Pick<RpcReply, "result" | "error" | "message">,
): SubmitResult {
  const { result, error, message } = reply;
  const rejectReason = text(message["reject-reason"]);
  if (error !== null && error !== undefined) {
    const { code, reason } = parseError(error);
    return rejected(reason ?? rejectReason ?? "rejected", code);
  }
  if (result === true) return { accepted: true, answered: true };
  if (result === false || result === null) return rejected(rejectReason ?? "rejected", undefined);
  return rejected(rejectReason ?? "unexpected result", undefined);
}

/** A submit that got no answer. */
export function unanswered(reason: string): SubmitResult {
  return { accepted: false, reason, answered: false };
}

function parseError(error: unknown): { code: number | undefined; reason: string | undefined } {
  if (Array.isArray(error)) return { code: number(error[0]), reason: text(error[1]) };
  if (typeof error === "object" && error !== null) {
    const o = error as Record<string, unknown>;
    return { code: number(o.code), reason: text(o.message) };
  }
  return { code: undefined, reason: text(error) };
}

function rejected(reason: string, code: number | undefined): SubmitResult {
  return code === undefined
    ? { accepted: false, reason, answered: true }
    : { accepted: false, reason, code, answered: true };
}

function number(v: unknown): number | undefined {
  if (typeof v === "number" && Number.isSafeInteger(v)) return v;
  if (typeof v === "string" && /^-?[0-9]{1,9}$/.test(v)) return Number(v);
  return undefined;
}

function text(v: unknown): string | undefined {
  if (typeof v !== "string" || v.length === 0) return undefined;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
  return v.slice(0, MAX_REASON).replace(/[\u0000-\u001f\u007f]/g, "?");
}
