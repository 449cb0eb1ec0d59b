import type { MachineClient } from "../control-plane/protocol/client-machine.ts";
import { acceptKeySetUpdate, type VerifiedKeySet } from "../control-plane/protocol/keyset.ts";
import { isAgentdError } from "../lib/errors.ts";
import type { Logger } from "../lib/log/logger.ts";
import type { EnforcementEngine } from "../policy-guard/engine.ts";
import type { AuditAppender } from "./audit-sink.ts";
import { type Enrolled, type EnrollmentRecord, storeKeySet } from "./enrollment.ts";

/**
 * The control plane's key set, rotated: fetched at every attestation and whenever a document
 * names a key this machine does not know; accepted only if the pinned root signed it with a
 * higher seq (acceptKeySetUpdate), then kept in enrollment.json and given to the policy guard
 * (publication keys); the command executor and the assignment read `current()`.
 */
export interface KeySetHolder {
  current(): VerifiedKeySet;
  /** The enrollment record as kept (with the key set in force). */
  record(): EnrollmentRecord;
  /**
   * Fetches the key set and takes it if it is a valid rotation. Resolves true when the key
   * set in force is newer than `seenSeq` (the one in force when the caller met an unknown
   * key): also when another path fetched the rotation first, so every path that met an
   * unknown key retries once the new keys are in. Never rejects; one fetch at a time.
   */
  refresh(why: string, seenSeq: number): Promise<boolean>;
}

export function keySetHolder(o: {
  readonly stateDir: string;
  readonly enrolled: Enrolled;
  readonly client: MachineClient;
  readonly engine: EnforcementEngine;
  readonly audit: AuditAppender;
  readonly log: Logger;
}): KeySetHolder {
  let keyset = o.enrolled.keyset;
  let record = o.enrolled.record;
  let inFlight: Promise<boolean> | null = null;

  /** True when it changed. */
  const fetchAndAccept = async (why: string): Promise<boolean> => {
    const { keyset: jws } = await o.client.getKeys();
    if (jws === keyset.jws) return false;
    let next: VerifiedKeySet;
    try {
      next = acceptKeySetUpdate(keyset, jws);
    } catch (err) {
      o.audit.append({
        type: "keys.refused",
        reason: isAgentdError(err) ? err.code : "invalid",
        why,
      });
      o.log.warn({ err }, "the control plane's key set was refused");
      return false;
    }
    record = storeKeySet(o.stateDir, record, jws);
    keyset = next;
    o.audit.append({ type: "keys.updated", keyset_seq: next.seq, why });
    await o.engine.setPublicationKeys(Object.values(next.keys.publication));
    o.log.info({ seq: next.seq, why }, "accepted a rotated key set");
    return true;
  };

  return {
    current: () => keyset,
    record: () => record,
    async refresh(why, seenSeq) {
      inFlight ??= fetchAndAccept(why)
        .catch((err: unknown) => {
          o.log.warn({ err }, "fetching the key set failed");
          return false;
        })
        .finally(() => {
          inFlight = null;
        });
      await inFlight;
      return keyset.seq > seenSeq;
    },
  };
}
