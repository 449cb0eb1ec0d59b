import type { AuditEvent } from "../../control-plane/protocol/schemas/api-audit.ts";
import { matches } from "../../control-plane/protocol/validate.ts";
import { AUDIT_GENESIS, auditHash } from "../../control-plane/store/audit-hash.ts";
import type { ErrorCode } from "../../lib/errors.ts";
import { parseJsonObjectStrict } from "../../lib/json/strict-parse.ts";

/**
 * Recomputes the control plane's audit chain from an export (JSON lines, one event each, from
 * seq 1): each `seq` the previous + 1, each `prev_hash` the previous `hash` (64 zeros for
 * seq 1), each `hash` the SHA-256 of the RFC 8785 form of the event without it
 * (control-plane/store/audit-hash.ts). Stops at the first line that does not verify.
 */

export type AuditVerdict =
  | { readonly valid: true; readonly count: number; readonly head: AuditHead | null }
  | {
      readonly valid: false;
      readonly count: number;
      /** The line (1-based) and the event seq that does not verify. */
      readonly line: number;
      readonly code: ErrorCode;
      readonly message: string;
    };

interface AuditHead {
  readonly seq: number;
  readonly hash: string;
}

/** Verifies an export (JSON lines, one event each, from seq 1); empty lines are refused. */
export function verifyAuditLines(text: string): AuditVerdict {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  let prev: AuditHead | null = null;
  const broken = (line: number, code: ErrorCode, message: string): AuditVerdict => ({
    valid: false,
    count: line - 1,
    line,
    code,
    message,
  });
  for (const [i, raw] of lines.entries()) {
    const line = i + 1;
    let event: AuditEvent;
    try {
      event = parseJsonObjectStrict(raw) as unknown as AuditEvent;
    } catch {
      return broken(line, "AGENTD_E_LOG_RECORD_INVALID", `line ${line}: not a JSON object`);
    }
    // The event schema is the one of an audit page's items.
    if (!matches("audit-events-response", { events: [event], next_cursor: null })) {
      return broken(line, "AGENTD_E_LOG_RECORD_INVALID", `line ${line}: not an audit event`);
    }
    const expected: number = (prev?.seq ?? 0) + 1;
    if (event.seq !== expected) {
      return broken(
        line,
        "AGENTD_E_LOG_SEQ_GAP",
        `line ${line}: seq ${event.seq}, expected ${expected}`,
      );
    }
    if (event.prev_hash !== (prev?.hash ?? AUDIT_GENESIS)) {
      return broken(
        line,
        "AGENTD_E_LOG_CHAIN_BROKEN",
        `seq ${event.seq}: prev_hash is not the previous event's hash`,
      );
    }
    if (auditHash(event) !== event.hash) {
      return broken(
        line,
        "AGENTD_E_LOG_CHAIN_BROKEN",
        `seq ${event.seq}: hash does not match the event`,
      );
    }
    prev = { seq: event.seq, hash: event.hash };
  }
  return { valid: true, count: lines.length, head: prev };
}
