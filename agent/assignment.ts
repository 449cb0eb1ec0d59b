import { verifyAssignment } from "../control-plane/protocol/documents/assignment.ts";
import type { VerifiedKeySet } from "../control-plane/protocol/keyset.ts";
import { resolverFor } from "../control-plane/protocol/keyset.ts";
import type { AssignmentUpstream } from "../control-plane/protocol/schemas/assignment.ts";
import type { Clock } from "../lib/clock.ts";
import { decodeJwsUnverified } from "../lib/crypto/jws.ts";
import { isAgentdError } from "../lib/errors.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";
import type { ConsentPayload } from "../policy-guard/documents.ts";
import type { EnforcementEngine } from "../policy-guard/engine.ts";

/**
 * The control plane's assignment (docs/protocol.md, "Assignment"): which of the owner's
 * upstreams this machine mines to, signed by an `assignment` key and naming the consent in
 * force. BRIEF section 6: mining happens only in ASSIGNED and MINING, so without an assignment
 * for the consent in force the data path is held (`agent.unassigned`).
 *
 * An assignment is fetched with every accepted bundle and again before it expires. It is kept
 * (assignment.json) and verified again at start and whenever the consent changes. Past its
 * `exp` it still counts only while fetching a new one fails — the control plane is
 * unreachable, or answers with one already expired by this machine's clock — because then the
 * owner's rules say how long mining may go on (the publication's offline grace and the clock
 * floor, which the decision applies); an assignment must not cut that short, and can never
 * extend it: the data path needs the decision to allow as well.
 */
export const ASSIGNMENT_FILE = "assignment.json";

export interface Assignment {
  readonly jws: string;
  readonly consent: string;
  readonly upstream: AssignmentUpstream;
  /** Unix seconds. */
  readonly exp: number;
}

export interface ConsentInForce {
  readonly identity: string;
  readonly payload: ConsentPayload;
}

export type AssignmentCheck =
  | { readonly ok: true; readonly assignment: Assignment }
  | { readonly ok: false; readonly reason: string };

/** Verifies an assignment against the pinned keys and the consent in force. */
export function checkAssignment(
  jws: string,
  o: {
    readonly keyset: VerifiedKeySet;
    readonly worker: string;
    readonly consent: ConsentInForce;
    readonly clock: Clock;
    /**
     * A kept assignment past its `exp` is still checked for everything else (signature, key,
     * worker, consent, upstream), as of just before it expired; assignmentInForce decides
     * whether it still counts.
     */
    readonly acceptExpired?: boolean;
  },
): AssignmentCheck {
  try {
    let clock = o.clock;
    if (o.acceptExpired === true) {
      const exp = Number((decodeJwsUnverified(jws).payload as { exp?: unknown }).exp);
      if (Number.isSafeInteger(exp)) {
        clock = { now: () => Math.min(o.clock.now(), exp * 1000 - 1000) };
      }
    }
    const v = verifyAssignment(jws, {
      key: resolverFor(o.keyset, "assignment"),
      worker: o.worker,
      consent: { identity: o.consent.identity, payload: o.consent.payload },
      clock,
    });
    return {
      ok: true,
      assignment: {
        jws,
        consent: v.payload.consent_sha256,
        upstream: v.payload.upstream,
        exp: v.payload.exp,
      },
    };
  } catch (err) {
    return { ok: false, reason: isAgentdError(err) ? err.code : "invalid" };
  }
}

/** The kept assignment's JWS, or null (it is verified again before use). */
export function readAssignmentJws(path: string): string | null {
  try {
    const f = readStateFile(path, { format: 1 });
    const jws = (f?.data as { jws?: unknown } | undefined)?.jws;
    return typeof jws === "string" ? jws : null;
  } catch {
    return null; // an unreadable file is no assignment: fail closed, fetch a new one
  }
}

export function writeAssignmentJws(path: string, jws: string | null): void {
  writeStateFile(path, 1, { jws });
}

/**
 * Whether an assignment lets this machine mine now: for the consent in force, and either
 * unexpired or kept because the last fetch failed (see above).
 */
export function assignmentInForce(
  a: Assignment | null,
  consentIdentity: string | null,
  nowMs: number,
  lastFetchFailed: boolean,
): boolean {
  if (a === null || consentIdentity === null || a.consent !== consentIdentity) return false;
  return nowMs < a.exp * 1000 || lastFetchFailed;
}

/** The consent in force: verified, not revoked, expired or decommissioned; null otherwise. */
export function consentInForce(
  engine: Pick<EnforcementEngine, "documents">,
): ConsentInForce | null {
  const d = engine.documents();
  if (d.consent === null || d.consentReasons.length > 0) return null;
  return { identity: d.consent.identity, payload: d.consent.payload };
}
