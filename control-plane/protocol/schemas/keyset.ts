import type { Ed25519PublicJwk } from "../../../lib/crypto/ed25519.ts";
import { closed, ED25519_JWK, frozen, POSITIVE, root, THUMBPRINT, UNIX_TIME } from "./common.ts";

/**
 * The key set (`agentd-keyset+jwt`, signed by the control-plane root key): the root's public
 * key (so that a holder of only its pinned thumbprint can verify) and the working keys, each
 * with exactly one use. What the schema cannot say (kid = the thumbprint of jwk, a key listed
 * once, the root not among the keys, seq strictly increasing) ../keyset.ts checks.
 */

export const KEY_USES = ["publication", "command", "assignment", "token"] as const;
export type KeyUse = (typeof KEY_USES)[number];

export interface KeySetEntry {
  readonly kid: string;
  readonly use: KeyUse;
  readonly jwk: Ed25519PublicJwk;
}

export interface KeySetPayload {
  readonly v: 1;
  readonly seq: number;
  readonly iat: number;
  readonly root: Ed25519PublicJwk;
  readonly keys: readonly KeySetEntry[];
}

export const keysetSchema = frozen(
  root("keyset", "Key set payload (agentd-keyset+jwt)", {
    ...closed({
      v: { const: 1 },
      seq: POSITIVE,
      iat: UNIX_TIME,
      root: ED25519_JWK,
      keys: {
        type: "array",
        minItems: KEY_USES.length,
        maxItems: 64,
        // "Each use at least once" is ../keyset.ts's to check: as a `contains` here, Ajv
        // (which runs applicators before `items` and `maxItems`) would report a malformed
        // entry as a missing use.
        items: closed({ kid: THUMBPRINT, use: { enum: [...KEY_USES] }, jwk: ED25519_JWK }),
      },
    }),
  }),
);
