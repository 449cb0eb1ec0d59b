import type { KeyObject } from "node:crypto";
import {
  jwkThumbprint,
  publicJwk,
  publicKeyFromJwk,
  publicKeyOf,
} from "../../lib/crypto/ed25519.ts";
import { decodeJwsUnverified, signJws, verifyJws } from "../../lib/crypto/jws.ts";
import { type AgentdError, fail } from "../../lib/errors.ts";

/**
 * The control plane's key set (`agentd-keyset+jwt`), signed by its root key:
 *
 *   {"v":1, "seq", "iat", "root": {jwk}, "keys": [{"kid", "use", "jwk"}]}
 *
 * `root` carries the root's public key so that a verifier holding only the pinned thumbprint
 * (the enrollment token's `root_kid`) can verify: the key is accepted only if its thumbprint
 * is the pin and it is the JWS signer. Each key has exactly one use, its kid is its
 * thumbprint, no kid appears twice (so no key has two uses), every use has at least one key,
 * and the root signs nothing but key sets (it is never one of `keys`).
 */

export const KEYSET_TYP = "agentd-keyset+jwt";
export const KEY_USES = Object.freeze(["publication", "command", "assignment", "token"] as const);
export type KeyUse = (typeof KEY_USES)[number];

/** A use's keys, kid → public key (null prototype, frozen). */
export type KeysByKid = Readonly<Record<string, KeyObject>>;

export interface VerifiedKeySet {
  readonly seq: number;
  readonly iat: number;
  readonly rootKid: string;
  readonly root: KeyObject;
  readonly keys: Readonly<Record<KeyUse, KeysByKid>>;
  readonly jws: string;
  /** sha256 hex of the signing input (DOCUMENTS.md section 1). */
  readonly identity: string;
}

export interface KeySetEntry {
  readonly use: KeyUse;
  readonly publicKey: KeyObject;
}

const MAX_KEYS = 64;

function schema(pointer: string, message: string): AgentdError {
  return fail("AGENTD_E_SCHEMA", `key set ${pointer}: ${message}`, { schema: "keyset", pointer });
}

export function signKeySet(args: {
  readonly rootPrivateKey: KeyObject;
  readonly seq: number;
  readonly iat: number;
  readonly keys: readonly KeySetEntry[];
}): string {
  const rootJwk = publicJwk(publicKeyOf(args.rootPrivateKey));
  const keys = args.keys.map((k) => ({
    kid: jwkThumbprint(k.publicKey),
    use: k.use,
    jwk: publicJwk(k.publicKey),
  }));
  // Deterministic order: by use as listed in KEY_USES, then kid.
  keys.sort((a, b) => KEY_USES.indexOf(a.use) - KEY_USES.indexOf(b.use) || cmp(a.kid, b.kid));
  const payload = { v: 1, seq: args.seq, iat: args.iat, root: rootJwk, keys };
  checkPayload(payload); // never sign what a verifier would refuse
  return signJws({ typ: KEYSET_TYP, payload, privateKey: args.rootPrivateKey });
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export interface VerifyKeySetOptions {
  /** The pinned root thumbprint (the enrollment token's root_kid, or the current set's). */
  readonly rootKid: string;
  /** The root public key, when already known; must have the pinned thumbprint. */
  readonly rootPublicKey?: KeyObject;
}

export function verifyKeySet(jws: string, options: VerifyKeySetOptions): VerifiedKeySet {
  if (
    options.rootPublicKey !== undefined &&
    jwkThumbprint(options.rootPublicKey) !== options.rootKid
  ) {
    throw fail("AGENTD_E_INTERNAL", "verifyKeySet: rootPublicKey does not have the pinned kid");
  }
  // The payload is read before the signature is checked only to find the root key it names;
  // that key is used only if its thumbprint is the pin, so nothing unverified is trusted.
  const claimedRoot = rootFromUnverified(jws);
  const claimedKid = jwkThumbprint(claimedRoot);
  if (claimedKid !== options.rootKid) {
    throw fail(
      "AGENTD_E_ENROLL_PIN_MISMATCH",
      `key set root ${claimedKid} is not the pinned root ${options.rootKid}`,
      { root_kid: claimedKid, pinned: options.rootKid },
    );
  }
  const root = options.rootPublicKey ?? claimedRoot;
  const verified = verifyJws(jws, {
    typ: KEYSET_TYP,
    resolveKey: (kid) => (kid === options.rootKid ? root : undefined),
  });
  const payload = checkPayload(verified.payload);
  return Object.freeze({
    seq: payload.seq,
    iat: payload.iat,
    rootKid: options.rootKid,
    root,
    keys: payload.keys,
    jws,
    identity: verified.identity,
  });
}

function rootFromUnverified(jws: string): KeyObject {
  const { payload } = decodeJwsUnverified(jws);
  const root = (payload as { root?: unknown } | null)?.root;
  if (root === undefined) throw schema("/root", "missing");
  return publicKeyFromJwkAt(root, "/root");
}

/**
 * A newer key set replacing `current`: signed by the same root, with a strictly higher seq
 * (an older or equal one is a rollback, AGENTD_E_CP_CONFLICT). Callers that re-fetch the set
 * compare `identity` first: the same document again is not an update.
 */
export function acceptKeySetUpdate(current: VerifiedKeySet, nextJws: string): VerifiedKeySet {
  const next = verifyKeySet(nextJws, { rootKid: current.rootKid, rootPublicKey: current.root });
  if (next.seq <= current.seq) {
    throw fail(
      "AGENTD_E_CP_CONFLICT",
      `key set seq ${next.seq} is not higher than the current ${current.seq}`,
      { seq: next.seq, current_seq: current.seq },
    );
  }
  return next;
}

/** A `resolveKey` for verifyJws that returns keys of `use` only, never of another use. */
export function resolverFor(
  keyset: VerifiedKeySet,
  use: KeyUse,
): (kid: string) => KeyObject | undefined {
  const keys = keyset.keys[use];
  return (kid) => (Object.hasOwn(keys, kid) ? keys[kid] : undefined);
}

interface KeySetPayload {
  readonly seq: number;
  readonly iat: number;
  readonly keys: Readonly<Record<KeyUse, KeysByKid>>;
}

function checkPayload(p: Record<string, unknown>): KeySetPayload {
  const members = Object.keys(p).sort().join(",");
  if (members !== "iat,keys,root,seq,v") {
    throw schema("", `members must be exactly v, seq, iat, root, keys; got ${members}`);
  }
  if (p.v !== 1) throw schema("/v", "must be 1");
  if (!Number.isSafeInteger(p.seq) || (p.seq as number) < 1) {
    throw schema("/seq", "must be an integer ≥ 1");
  }
  if (!Number.isSafeInteger(p.iat) || (p.iat as number) < 0) {
    throw schema("/iat", "must be integer Unix seconds");
  }
  const rootKid = jwkThumbprint(publicKeyFromJwkAt(p.root, "/root"));
  if (!Array.isArray(p.keys) || p.keys.length === 0 || p.keys.length > MAX_KEYS) {
    throw schema("/keys", `must be an array of 1 to ${MAX_KEYS} keys`);
  }
  const byUse = Object.fromEntries(KEY_USES.map((u) => [u, Object.create(null)])) as Record<
    KeyUse,
    Record<string, KeyObject>
  >;
  const seen = new Set<string>();
  p.keys.forEach((entry: unknown, i: number) => {
    const at = `/keys/${i}`;
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
      throw schema(at, "not an object");
    }
    const e = entry as Record<string, unknown>;
    const m = Object.keys(e).sort().join(",");
    if (m !== "jwk,kid,use") throw schema(at, `members must be exactly kid, use, jwk; got ${m}`);
    if (typeof e.use !== "string" || !(KEY_USES as readonly string[]).includes(e.use)) {
      throw schema(`${at}/use`, `must be one of ${KEY_USES.join(", ")}`);
    }
    const key = publicKeyFromJwkAt(e.jwk, `${at}/jwk`);
    const kid = jwkThumbprint(key);
    if (e.kid !== kid) throw schema(`${at}/kid`, "is not the thumbprint of jwk");
    if (kid === rootKid) throw schema(`${at}/kid`, "the root key may not have a use");
    // One kid, one entry: a key listed under two uses (or twice) is refused.
    if (seen.has(kid)) throw schema(`${at}/kid`, `${kid} appears more than once`);
    seen.add(kid);
    byUse[e.use as KeyUse][kid] = key;
  });
  for (const use of KEY_USES) {
    if (Object.keys(byUse[use]).length === 0) throw schema("/keys", `no key for use ${use}`);
    Object.freeze(byUse[use]);
  }
  return { seq: p.seq as number, iat: p.iat as number, keys: Object.freeze(byUse) };
}

function publicKeyFromJwkAt(jwk: unknown, pointer: string): KeyObject {
  try {
    return publicKeyFromJwk(jwk);
  } catch (cause) {
    throw fail(
      "AGENTD_E_SCHEMA",
      `key set ${pointer}: not an Ed25519 public JWK`,
      {
        schema: "keyset",
        pointer,
      },
      cause,
    );
  }
}
