import type { KeyObject } from "node:crypto";
import { publicJwk, publicKeyFromJwk } from "../lib/crypto/ed25519.ts";
import { fail } from "../lib/errors.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";
import type { Bundle } from "./documents.ts";
import {
  NO_ROTATIONS,
  type RotationHistory,
  rotationFromJson,
  rotationToJson,
} from "./rotation.ts";
import { EMPTY_COUNTERS, type GuardCounters } from "./verify.ts";

/**
 * The policy guard's durable state, one atomically written file: the counters that make
 * rollback and replay impossible (highest seq; highest version and the consent it counts
 * for; revoked-through seq, the clock floor, decommissioned), the current bundle, the owner key
 * if a rotation replaced the one pinned at enrollment, and what makes rotations single-use and
 * ordered (rotation.ts). Revocations are kept forever: re-enrollment does not touch this file.
 * The bundle in it is not trusted for being on disk: it is verified again on every load.
 *
 * Formats: 1 kept one version counter for the machine and no rotation history; 2 (issue 15)
 * binds the version counter to a consent (`versionConsentId`) and adds `rotation`. A format 1
 * file is read with its version counter bound to the consent in force when it was written —
 * its highest-seq consent, which its bundle holds — and no rotation history, and is written as
 * format 2 at the next change. From format 2 on a missing history is corrupt, not "none": the
 * format went up so that an older agentd refuses the file rather than rewrite it without that
 * history, which would make old rotations acceptable again.
 */

export const GUARD_STATE_FORMAT = 2;

/** The guard state's file name inside the state directory. */
export const GUARD_STATE_FILE = "policy-state.json";

export interface GuardState {
  readonly counters: GuardCounters;
  readonly bundle: Bundle | null;
  /** Set by a verified owner-key rotation; overrides the key pinned at enrollment. */
  readonly rotatedOwner: KeyObject | null;
  /** The rotations accepted: single-use, in order, the consent they kept (rotation.ts). */
  readonly rotation: RotationHistory;
}

export const EMPTY_STATE: GuardState = Object.freeze({
  counters: EMPTY_COUNTERS,
  bundle: null,
  rotatedOwner: null,
  rotation: NO_ROTATIONS,
});

export function loadGuardState(path: string): GuardState {
  const file = readStateFile(path, { format: GUARD_STATE_FORMAT });
  if (file === undefined) return EMPTY_STATE;
  if (typeof file.data !== "object" || file.data === null || Array.isArray(file.data)) {
    throw fail("AGENTD_E_FILE_CORRUPT", `${path}: data is not an object`, { path });
  }
  const d = file.data as {
    counters?: Partial<GuardCounters>;
    bundle?: { consent?: unknown; publication?: unknown } | null;
    rotated_owner_jwk?: unknown;
    rotation?: unknown;
  };
  const c = typeof d.counters === "object" && d.counters !== null ? d.counters : {};
  const ints = ["highestSeq", "highestVersion", "revokedThroughSeq", "clockFloorS"] as const;
  for (const k of ints) {
    if (!Number.isSafeInteger(c[k]) || (c[k] as number) < 0) {
      throw fail("AGENTD_E_FILE_CORRUPT", `${path}: counters.${k} is not a non-negative integer`, {
        path,
      });
    }
  }
  const idOk = (v: unknown) => v === null || (typeof v === "string" && /^[0-9a-f]{64}$/.test(v));
  // Format 1 had no versionConsentId: its version counted for the consent in force then.
  const versionConsentId = file.format === 1 ? c.highestSeqId : c.versionConsentId;
  if (
    !idOk(c.highestSeqId) ||
    !idOk(c.highestVersionId) ||
    !idOk(versionConsentId) ||
    typeof c.decommissioned !== "boolean"
  ) {
    throw fail("AGENTD_E_FILE_CORRUPT", `${path}: counters are malformed`, { path });
  }
  const counters: GuardCounters = {
    highestSeq: c.highestSeq as number,
    highestSeqId: c.highestSeqId as string | null,
    highestVersion: c.highestVersion as number,
    highestVersionId: c.highestVersionId as string | null,
    versionConsentId: versionConsentId as string | null,
    revokedThroughSeq: c.revokedThroughSeq as number,
    clockFloorS: c.clockFloorS as number,
    decommissioned: c.decommissioned,
  };
  let bundle: Bundle | null = null;
  if (d.bundle !== null && d.bundle !== undefined) {
    if (typeof d.bundle.consent !== "string" || typeof d.bundle.publication !== "string") {
      throw fail("AGENTD_E_FILE_CORRUPT", `${path}: bundle is malformed`, { path });
    }
    bundle = { consent: d.bundle.consent, publication: d.bundle.publication };
  }
  let rotatedOwner: KeyObject | null = null;
  if (d.rotated_owner_jwk !== undefined && d.rotated_owner_jwk !== null) {
    try {
      rotatedOwner = publicKeyFromJwk(d.rotated_owner_jwk);
    } catch (err) {
      throw fail("AGENTD_E_FILE_CORRUPT", `${path}: rotated owner key is malformed`, { path }, err);
    }
  }
  // Format 1 had no history; from format 2 on a missing one is corrupt, not "none".
  const rotation = rotationFromJson(file.format >= 2 ? (d.rotation ?? null) : undefined, path);
  return { counters, bundle, rotatedOwner, rotation };
}

export function saveGuardState(path: string, state: GuardState): void {
  writeStateFile(path, GUARD_STATE_FORMAT, {
    counters: { ...state.counters },
    bundle: state.bundle === null ? null : { ...state.bundle },
    rotated_owner_jwk: state.rotatedOwner === null ? null : { ...publicJwk(state.rotatedOwner) },
    rotation: rotationToJson(state.rotation),
  });
}
