import type { KeyObject } from "node:crypto";
import { jwkThumbprint, publicJwk, publicKeyFromJwk } from "../lib/crypto/ed25519.ts";
import { fail } from "../lib/errors.ts";
import { SKEW_S } from "./decision.ts";
import type { Reason } from "./reasons.ts";
import type { RetainedConsent } from "./verify.ts";

/**
 * Owner-key rotations (DOCUMENTS.md section 5): what the guard keeps about the rotations it
 * accepted, and the rules a new one must pass besides its signature by the current owner key.
 *
 * - **Single-use**: the identities of the last MAX_SEEN_ROTATIONS rotations accepted are kept;
 *   one of them again is `rotation.replayed`.
 * - **Ordered**: a rotation's `iat` must be later than the last one accepted
 *   (`rotation.stale`), and not beyond the skew ahead of now (`rotation.not_yet_valid`: a far
 *   future `iat` would block every later rotation). Because `iat` only goes up, the bounded
 *   identity list loses nothing: a rotation too old to be in it is stale anyway. Together
 *   they make A→B, B→A and then A→B again (the same document) fail: the replay is signed by
 *   the key in force (A), and only its identity and `iat` tell it from a fresh decision.
 * - **The consent in force survives**: it was signed by the owner key of its time, so the
 *   guard keeps its identity with that key (`retained`) and verifies that one document — no
 *   other — under the retired key. The next consent must be signed by the new key (its seq
 *   above the retained one's, as ever); a consent the old key signs after the rotation, or
 *   signed before and delivered after, is refused (`consent.unknown_key`).
 * - **A re-enrollment wins**: the rotations apply on top of the owner key pinned at
 *   enrollment (`base`). When local root enrolls the machine again under another owner key
 *   (docs/policy.md, "When the owner key is lost"), the pinned key differs from `base` and the
 *   rotated key and the retained consent no longer apply; the identities and `iat` stay.
 */

/** How many accepted rotations are remembered by identity (older ones are stale by iat). */
export const MAX_SEEN_ROTATIONS = 32;

export interface RotationHistory {
  /** Unix seconds: the `iat` of the last rotation accepted; 0 before the first. */
  readonly lastIat: number;
  /** Identities (sha256 hex of the signing input) of the last ones accepted, oldest first. */
  readonly seen: readonly string[];
  /**
   * Thumbprint of the owner key pinned at enrollment when the first rotation was accepted;
   * null when unknown (a state written before rotations were recorded: the rotated key then
   * applies whatever the pin).
   */
  readonly base: string | null;
  /** The consent in force at the last rotation, and the retired key that signed it. */
  readonly retained: RetainedConsent | null;
}

export const NO_ROTATIONS: RotationHistory = Object.freeze({
  lastIat: 0,
  seen: [],
  base: null,
  retained: null,
});

/** The owner key in force and the consent a rotation retained, given the enrollment pin. */
export function ownerInForce(
  enrolled: KeyObject,
  rotated: KeyObject | null,
  h: RotationHistory,
): { readonly owner: KeyObject; readonly retained: RetainedConsent | null } {
  if (rotated === null) return { owner: enrolled, retained: null };
  if (h.base !== null && h.base !== jwkThumbprint(enrolled)) {
    // Enrolled again under another key since: local root's pin wins over the rotations.
    return { owner: enrolled, retained: null };
  }
  return { owner: rotated, retained: h.retained };
}

/** Why a rotation that verified under the current owner key is refused, or null. */
export function refuseRotation(
  h: RotationHistory,
  r: { readonly identity: string; readonly iat: number; readonly nowS: number },
): Reason | null {
  if (h.seen.includes(r.identity)) return "rotation.replayed";
  if (r.iat <= h.lastIat) return "rotation.stale";
  if (r.iat > r.nowS + SKEW_S) return "rotation.not_yet_valid";
  return null;
}

/** The new owner key of a rotation: an Ed25519 public JWK that is not the current key. */
export function newOwnerKey(jwk: unknown, current: KeyObject): KeyObject {
  let key: KeyObject;
  try {
    key = publicKeyFromJwk(jwk);
  } catch (err) {
    throw fail("AGENTD_E_JWS_PAYLOAD", "new_owner_jwk is not an Ed25519 public JWK", {}, err);
  }
  if (jwkThumbprint(key) === jwkThumbprint(current)) {
    throw fail("AGENTD_E_JWS_PAYLOAD", "new_owner_jwk is the current owner key", {});
  }
  return key;
}

/** The history after accepting a rotation. */
export function afterRotation(
  h: RotationHistory,
  r: {
    readonly identity: string;
    readonly iat: number;
    readonly enrolled: KeyObject;
    readonly retained: RetainedConsent | null;
  },
): RotationHistory {
  return {
    lastIat: r.iat,
    seen: [...h.seen, r.identity].slice(-MAX_SEEN_ROTATIONS),
    // The pin this chain of rotations applies on top of (a re-enrollment under another key
    // starts a new chain from its own pin).
    base: jwkThumbprint(r.enrolled),
    retained: r.retained,
  };
}

// ---- the state file's `rotation` member ---------------------------------------------------

const SHA256_HEX = /^[0-9a-f]{64}$/;
const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;

/** `rotation` as saved in the guard's state file (state.ts). */
export function rotationToJson(h: RotationHistory): Record<string, unknown> {
  return {
    last_iat: h.lastIat,
    seen: [...h.seen],
    base: h.base,
    retained:
      h.retained === null
        ? null
        : { consent_sha256: h.retained.identity, owner_jwk: { ...publicJwk(h.retained.key) } },
  };
}

/** Reads `rotation` back; undefined (a file from before) is no rotation history. */
export function rotationFromJson(v: unknown, path: string): RotationHistory {
  if (v === undefined) return NO_ROTATIONS;
  const corrupt = (what: string, cause?: unknown) =>
    fail("AGENTD_E_FILE_CORRUPT", `${path}: rotation.${what} is malformed`, { path }, cause);
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw corrupt("");
  const r = v as Record<string, unknown>;
  if (!Number.isSafeInteger(r.last_iat) || (r.last_iat as number) < 0) throw corrupt("last_iat");
  const seen = r.seen;
  if (
    !Array.isArray(seen) ||
    seen.length > MAX_SEEN_ROTATIONS ||
    !seen.every((s) => typeof s === "string" && SHA256_HEX.test(s))
  ) {
    throw corrupt("seen");
  }
  if (r.base !== null && !(typeof r.base === "string" && THUMBPRINT.test(r.base))) {
    throw corrupt("base");
  }
  let retained: RetainedConsent | null = null;
  if (r.retained !== null) {
    const k = r.retained as { consent_sha256?: unknown; owner_jwk?: unknown } | undefined;
    if (typeof k !== "object" || k === null || typeof k.consent_sha256 !== "string") {
      throw corrupt("retained");
    }
    if (!SHA256_HEX.test(k.consent_sha256)) throw corrupt("retained");
    try {
      retained = { identity: k.consent_sha256, key: publicKeyFromJwk(k.owner_jwk) };
    } catch (err) {
      throw corrupt("retained", err);
    }
  }
  return {
    lastIat: r.last_iat as number,
    seen: seen as string[],
    base: r.base as string | null,
    retained,
  };
}
