import { randomBytes } from "node:crypto";
import { unixSeconds } from "../../lib/clock.ts";
import { encodeBase64url } from "../../lib/crypto/base64url.ts";
import { jwkThumbprint, publicJwk, publicKeyFromJwk } from "../../lib/crypto/ed25519.ts";
import { fail } from "../../lib/errors.ts";
import type { Caller } from "../http/auth.ts";
import { defineRoute } from "../http/route.ts";
import type {
  ApiKeyCreateResponse,
  ApiKeyRevokeResponse,
  OwnerCreateResponse,
} from "../protocol/schemas/api-admin.ts";
import { validate } from "../protocol/validate.ts";
import type { ApiKey, Role } from "../store/store.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { sha256Hex } from "./machine-auth.ts";

/**
 * Owners and API keys (docs/protocol.md section 3, "API keys"): admin actions only.
 *
 * A key is revoked for good (`DELETE /v1/api-keys/{id}`): its very next request is 401, on
 * every instance (keys are looked up in the store on every request, never cached); the row
 * stays, so neither its id nor its hash can be created again, and nothing un-revokes it. The
 * last admin key cannot be revoked (the control plane would have no admin). Audited with the
 * key's id, role and owner, like a creation.
 *
 * A key is `agentd_<role>_<base64url of 32 random bytes>`, shown once in the answer; the store
 * keeps its SHA-256 (a leaked database yields no usable key). Every key creation is audited
 * with its id, role and owner — never the key — because minting keys is how an admin could
 * gather the two operator approvals of an emergency stop alone: the log must show it.
 * The control plane never holds an owner's private key: an owner is registered by its public
 * key, whose thumbprint is the owner id.
 */

/** `agentd_<role>_` + 32 random bytes; its id is 16 random bytes (docs/protocol.md section 1). */
export function newApiKey(
  role: Role,
  ownerId: string | null,
  createdBy: string | null,
  now: number,
): { readonly key: string; readonly record: ApiKey } {
  const key = `agentd_${role}_${encodeBase64url(randomBytes(32))}`;
  return {
    key,
    record: {
      id: encodeBase64url(randomBytes(16)),
      role,
      owner_id: ownerId,
      key_sha256: sha256Hex(key),
      created_at: now,
      created_by: createdBy,
    },
  };
}

/** The audit actor of an authenticated caller. */
export function actorOf(caller: Caller): string {
  if ("keyId" in caller) return `apikey:${caller.keyId}`;
  return caller.kind === "machine" ? `worker:${caller.workerId}` : "system";
}

function keyIdOf(caller: Caller): string | null {
  return "keyId" in caller ? caller.keyId : null;
}

function apiKeyAudit(actor: string, k: ApiKey, label: string | undefined) {
  return {
    actor,
    type: "apikey.created",
    object: `apikey:${k.id}`,
    data: {
      key_id: k.id,
      role: k.role,
      owner: k.owner_id,
      ...(label === undefined ? {} : { label }),
    },
  };
}

export function ownersGroup(ctx: ApiContext): ApiGroup {
  const createOwner = defineRoute({
    method: "POST",
    path: "/v1/owners",
    auth: ["admin"],
    body: { validate: (v) => validate("owner-create-request", v) },
    async handler(c) {
      // The schema fixes the JWK's form; whether x is a point Node accepts is checked here,
      // and a key that is not one is the caller's mistake (400), not ours.
      let jwk: ReturnType<typeof publicJwk>;
      let ownerId: string;
      try {
        const key = publicKeyFromJwk(c.body.jwk);
        jwk = publicJwk(key);
        ownerId = jwkThumbprint(key);
      } catch (cause) {
        throw fail(
          "AGENTD_E_SCHEMA",
          "owner-create-request: /jwk: not an Ed25519 public key",
          { schema: "owner-create-request", pointer: "/jwk" },
          cause,
        );
      }
      const now = unixSeconds(ctx.clock);
      const actor = actorOf(c.caller);
      await ctx.store.createOwner(
        { id: ownerId, jwk: { ...jwk }, created_at: now },
        {
          audit: {
            actor,
            type: "owner.created",
            object: `owner:${ownerId}`,
            data: {
              owner: ownerId,
              ...(c.body.label === undefined ? {} : { label: c.body.label }),
            },
          },
        },
      );
      // A second transaction: should it fail, the owner exists without a key and an admin
      // makes one with POST /v1/api-keys (nothing half-made is usable).
      const { key, record } = newApiKey("owner", ownerId, keyIdOf(c.caller), now);
      await ctx.store.createApiKey(record, { audit: apiKeyAudit(actor, record, undefined) });
      const body: OwnerCreateResponse = { owner: ownerId, key_id: record.id, api_key: key };
      return { status: 200, body };
    },
  });

  const createApiKey = defineRoute({
    method: "POST",
    path: "/v1/api-keys",
    auth: ["admin"],
    body: { validate: (v) => validate("apikey-create-request", v) },
    async handler(c) {
      const now = unixSeconds(ctx.clock);
      const { key, record } = newApiKey(c.body.role, c.body.owner ?? null, keyIdOf(c.caller), now);
      // Unknown owner: the store refuses with AGENTD_E_CP_NOT_FOUND (404), nothing written.
      await ctx.store.createApiKey(record, {
        audit: apiKeyAudit(actorOf(c.caller), record, c.body.label),
      });
      const body: ApiKeyCreateResponse = {
        key_id: record.id,
        role: record.role,
        owner: record.owner_id,
        api_key: key,
      };
      return { status: 200, body };
    },
  });

  const revokeApiKey = defineRoute({
    method: "DELETE",
    path: "/v1/api-keys/{id}",
    auth: ["admin"],
    async handler(c) {
      const id = c.params.id as string;
      const now = unixSeconds(ctx.clock);
      const actor = actorOf(c.caller);
      // Unknown: 404; revoked already or the last admin: 409 (the store decides, atomically).
      const revoked = await ctx.store.revokeApiKey(id, keyIdOf(c.caller), now, {
        audit: (k) => ({
          actor,
          type: "apikey.revoked",
          object: `apikey:${k.id}`,
          data: { key_id: k.id, role: k.role, owner: k.owner_id },
        }),
      });
      const body: ApiKeyRevokeResponse = {
        key_id: revoked.id,
        role: revoked.role,
        owner: revoked.owner_id,
        revoked: true,
        revoked_at: revoked.revoked_at,
      };
      return { status: 200, body };
    },
  });

  return { routes: [createOwner, createApiKey, revokeApiKey] };
}
