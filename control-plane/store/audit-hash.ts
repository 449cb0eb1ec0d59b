import { canonicalSha256Hex } from "../../lib/json/canonical.ts";
import type { AuditEvent } from "./store.ts";

/** prev_hash of the first event, as in lib/fs/chain-log.ts. */
export const AUDIT_GENESIS = "0".repeat(64);

/**
 * sha256 hex of the RFC 8785 canonical JSON of the event without `hash`. Exactly these seven
 * members are hashed, so an exported event can be checked by anyone with a JCS library.
 */
export function auditHash(event: Omit<AuditEvent, "hash">): string {
  return canonicalSha256Hex({
    seq: event.seq,
    at: event.at,
    actor: event.actor,
    type: event.type,
    object: event.object,
    data: event.data,
    prev_hash: event.prev_hash,
  });
}
