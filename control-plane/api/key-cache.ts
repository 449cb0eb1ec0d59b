import type { KeyObject } from "node:crypto";
import { publicKeyFromJwk } from "../../lib/crypto/ed25519.ts";
import { BoundedMap } from "./bounded-map.ts";

/**
 * Public KeyObjects by JWK, bounded (least recently used evicted first).
 *
 * Why: every machine request verifies a signature under the worker's stored key. Building the
 * KeyObject from the JWK (`createPublicKey`) and its thumbprint cost more than the
 * verification itself (bench/cp-heartbeats.ts profile); a KeyObject is immutable, so
 * remembering it changes nothing but the cost. Keyed by the JWK's JSON, so a different key
 * under the same worker id can never hit a stale entry.
 */
export class PublicKeyCache {
  readonly #keys: BoundedMap<string, KeyObject>;

  constructor(maxEntries = 100_000) {
    this.#keys = new BoundedMap(maxEntries);
  }

  /** The key of `jwk`; throws AGENTD_E_KEY_INVALID like publicKeyFromJwk (nothing cached). */
  get(jwk: unknown): KeyObject {
    const id = JSON.stringify(jwk);
    const hit = this.#keys.get(id);
    if (hit !== undefined) return hit;
    const key = publicKeyFromJwk(jwk);
    this.#keys.set(id, key);
    return key;
  }

  get size(): number {
    return this.#keys.size;
  }
}
