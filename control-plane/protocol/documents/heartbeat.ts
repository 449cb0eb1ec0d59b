import type { KeyObject } from "node:crypto";
import { type Clock, unixSeconds } from "../../../lib/clock.ts";
import { jwkThumbprint, publicKeyOf } from "../../../lib/crypto/ed25519.ts";
import type { AnomalyFlag, HeartbeatPayload } from "../schemas/heartbeat.ts";
import {
  checkIat,
  MAX_SKEW_S,
  mismatch,
  signDocument,
  type VerifiedDocument,
  type VerifyKey,
  verifyDocument,
  verifyDocumentAsync,
} from "./common.ts";

/**
 * Heartbeats (`agentd-heartbeat+jwt`), signed by the machine key: the machine's own account
 * of its state, decision and telemetry. Whether its counter is above the last stored one is
 * the store's atomic check (docs/protocol.md); this module checks the document itself and
 * computes the anomaly flags.
 */

export const HEARTBEAT_TYP = "agentd-heartbeat+jwt";

/** A heartbeat's iat further than this from the control plane's clock is flagged. */
export const CLOCK_SKEW_FLAG_S = 10;

/** Everything the agent says; `v`, `worker` (its key) and `iat` (its clock) are filled in. */
export type HeartbeatBody = Omit<HeartbeatPayload, "v" | "worker" | "iat">;

export function signHeartbeat(a: {
  readonly privateKey: KeyObject;
  readonly body: HeartbeatBody;
  readonly clock: Clock;
}): string {
  const payload: HeartbeatPayload = {
    v: 1,
    worker: jwkThumbprint(publicKeyOf(a.privateKey)),
    iat: unixSeconds(a.clock),
    ...a.body,
  };
  return signDocument("heartbeat", HEARTBEAT_TYP, payload, a.privateKey);
}

/**
 * The heartbeat signed by the worker's registered key, about that worker, with an `iat`
 * within `maxSkewS` (default 60) of now in either direction: a heartbeat speaks about the
 * present, so an old one is refused as well as one from the future.
 */
export interface VerifyHeartbeatOptions {
  readonly key: VerifyKey;
  readonly clock: Clock;
  /** The worker it must be about (the `{id}` of the request path). */
  readonly worker?: string;
  readonly maxSkewS?: number;
}

export function verifyHeartbeat(
  token: string,
  o: VerifyHeartbeatOptions,
): VerifiedDocument<HeartbeatPayload> {
  return checkHeartbeat(verifyDocument(token, "heartbeat", HEARTBEAT_TYP, o.key), o);
}

/** verifyHeartbeat with the signature checked on the thread pool (the control plane's path). */
export async function verifyHeartbeatAsync(
  token: string,
  o: VerifyHeartbeatOptions,
): Promise<VerifiedDocument<HeartbeatPayload>> {
  return checkHeartbeat(await verifyDocumentAsync(token, "heartbeat", HEARTBEAT_TYP, o.key), o);
}

function checkHeartbeat(
  doc: VerifiedDocument<HeartbeatPayload>,
  o: VerifyHeartbeatOptions,
): VerifiedDocument<HeartbeatPayload> {
  if (doc.payload.worker !== doc.kid) {
    mismatch("worker", "heartbeat worker is not the thumbprint of the key that signed it");
  }
  if (o.worker !== undefined && doc.payload.worker !== o.worker) {
    mismatch("worker", "heartbeat is about another worker");
  }
  const skew = o.maxSkewS ?? MAX_SKEW_S;
  checkIat(doc.payload.iat, o.clock, { maxSkewS: skew, maxAgeS: skew });
  return doc;
}

/**
 * The anomaly flags of an accepted heartbeat (docs/protocol.md, "Heartbeats"), given the
 * previous accepted heartbeat of the same worker (null for the first) and the control
 * plane's clock. Flags do not refuse anything: they are stored, audited and shown.
 */
export function heartbeatAnomalies(
  current: HeartbeatPayload,
  previous: HeartbeatPayload | null,
  nowS: number,
): AnomalyFlag[] {
  const flags: AnomalyFlag[] = [];
  if (previous !== null && current.counter > previous.counter + 1) flags.push("counter_gap");
  if (Math.abs(current.iat - nowS) > CLOCK_SKEW_FLAG_S) flags.push("clock_skew");
  if (telemetryInconsistent(current, previous)) flags.push("telemetry_inconsistent");
  return flags;
}

function telemetryInconsistent(c: HeartbeatPayload, p: HeartbeatPayload | null): boolean {
  const t = c.telemetry;
  // Hashrate needs hashing hardware.
  if (t.hashrate_hs > 0 && t.asics === 0) return true;
  // The agent says it mines while its own policy decision says it must not.
  if (c.state === "MINING" && !c.decision.mining) return true;
  if (p === null) return false;
  const q = p.telemetry;
  const restarted = t.uptime_s < q.uptime_s;
  if (!restarted) {
    // Without a restart, lifetime share counters never go down...
    if (t.shares_accepted < q.shares_accepted || t.shares_rejected < q.shares_rejected) {
      return true;
    }
    // ...and uptime cannot grow faster than time itself (two skews of slack).
    if (t.uptime_s - q.uptime_s > c.iat - p.iat + 2 * MAX_SKEW_S) return true;
  }
  return false;
}
