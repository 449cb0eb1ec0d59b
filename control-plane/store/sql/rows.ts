import { canonicalize } from "../../../lib/json/canonical.ts";
import type {
  AttestationVerdict,
  AuditEvent,
  Command,
  CommandStatus,
  Consent,
  EmergencyStopScope,
  JsonObject,
  OwnerRotation,
  Publication,
  Revocation,
  RevocationKind,
  StreamEvent,
  StreamKind,
  Worker,
} from "../store.ts";

/**
 * From stored rows to the interface's types. JSON members are stored as their RFC 8785
 * text (written only by this code), so reading them back with JSON.parse is exact. Both
 * drivers hand integers over as JavaScript numbers (the PostgreSQL one checks the range).
 */

export function toJsonText(value: unknown): string {
  return canonicalize(value);
}

export function fromJsonText<T = JsonObject>(text: unknown): T {
  return JSON.parse(String(text)) as T;
}

function n(v: unknown): number {
  return Number(v);
}

function nOrNull(v: unknown): number | null {
  return v === null || v === undefined ? null : Number(v);
}

function sOrNull(v: unknown): string | null {
  return v === null || v === undefined ? null : String(v);
}

export type Row = Record<string, unknown>;

export const WORKER_COLUMNS =
  "worker_id, owner_id, jwk, facts, cohort, registered_at, quarantine_reason, quarantined_at, " +
  "machine_id_sha256, att_machine_id_sha256, att_binary_sha256, att_verdict, att_at, " +
  "last_counter, last_seen, consent_seq, pub_version, last_event_id, decommissioned_at";

export function toWorker(r: Row): Worker {
  return {
    worker_id: String(r.worker_id),
    owner_id: String(r.owner_id),
    jwk: fromJsonText(r.jwk),
    facts: fromJsonText(r.facts),
    cohort: String(r.cohort),
    registered_at: n(r.registered_at),
    quarantine:
      r.quarantine_reason === null
        ? null
        : { reason: String(r.quarantine_reason), at: n(r.quarantined_at) },
    machine_id_sha256: sOrNull(r.machine_id_sha256),
    attestation:
      r.att_verdict === null
        ? null
        : {
            machine_id_sha256: String(r.att_machine_id_sha256),
            binary_sha256: String(r.att_binary_sha256),
            verdict: String(r.att_verdict) as AttestationVerdict,
            at: n(r.att_at),
          },
    last_counter: n(r.last_counter),
    last_seen: nOrNull(r.last_seen),
    consent_seq: nOrNull(r.consent_seq),
    publication_version: nOrNull(r.pub_version),
    last_event_id: n(r.last_event_id),
    decommissioned_at: nOrNull(r.decommissioned_at),
  };
}

export const CONSENT_COLUMNS = "identity, worker_id, owner_id, seq, jws, exp, accepted_at";

export function toConsent(r: Row): Consent {
  return {
    identity: String(r.identity),
    worker_id: String(r.worker_id),
    owner_id: String(r.owner_id),
    seq: n(r.seq),
    jws: String(r.jws),
    exp: n(r.exp),
    accepted_at: n(r.accepted_at),
  };
}

export const PUBLICATION_COLUMNS = "worker_id, version, consent_identity, jws, iat, exp, stop";

export function toPublication(r: Row): Publication {
  return {
    worker_id: String(r.worker_id),
    version: n(r.version),
    consent_identity: sOrNull(r.consent_identity),
    jws: String(r.jws),
    iat: n(r.iat),
    exp: n(r.exp),
    stop: n(r.stop) !== 0,
  };
}

export const REVOCATION_COLUMNS = "id, worker_id, kind, through_seq, jws, at";

export function toRevocation(r: Row): Revocation {
  return {
    id: n(r.id),
    worker_id: String(r.worker_id),
    kind: String(r.kind) as RevocationKind,
    through_seq: nOrNull(r.through_seq),
    jws: String(r.jws),
    at: n(r.at),
  };
}

export const OWNER_ROTATION_COLUMNS =
  "id, worker_id, identity, from_owner, to_owner, new_owner_jwk, iat, jws, at";

export function toOwnerRotation(r: Row): OwnerRotation {
  return {
    id: n(r.id),
    worker_id: String(r.worker_id),
    identity: String(r.identity),
    from_owner: String(r.from_owner),
    to_owner: String(r.to_owner),
    new_owner_jwk: fromJsonText(r.new_owner_jwk),
    iat: n(r.iat),
    jws: String(r.jws),
    at: n(r.at),
  };
}

export const COMMAND_COLUMNS =
  "cmd_id, worker_id, action, args, jws, iat, exp, seq, consent_identity, result_status, " +
  "result_jws, result_at";

export function toCommand(r: Row): Command {
  return {
    cmd_id: String(r.cmd_id),
    worker_id: String(r.worker_id),
    action: String(r.action),
    args: fromJsonText(r.args),
    jws: String(r.jws),
    iat: n(r.iat),
    exp: n(r.exp),
    seq: n(r.seq),
    consent_identity: sOrNull(r.consent_identity),
    result:
      r.result_status === null
        ? null
        : {
            status: String(r.result_status) as CommandStatus,
            jws: String(r.result_jws),
            at: n(r.result_at),
          },
  };
}

export const STREAM_COLUMNS = "worker_id, id, kind, ref, at";

export function toStreamEvent(r: Row): StreamEvent {
  return {
    worker_id: String(r.worker_id),
    id: n(r.id),
    kind: String(r.kind) as StreamKind,
    ref: String(r.ref),
    at: n(r.at),
  };
}

export const AUDIT_COLUMNS = "seq, at, actor, type, object, data, prev_hash, hash";

export function toAuditEvent(r: Row): AuditEvent {
  return {
    seq: n(r.seq),
    at: n(r.at),
    actor: String(r.actor),
    type: String(r.type),
    object: String(r.object),
    data: fromJsonText(r.data),
    prev_hash: String(r.prev_hash),
    hash: String(r.hash),
  };
}

export function toScope(text: unknown): EmergencyStopScope {
  return fromJsonText<EmergencyStopScope>(text);
}
