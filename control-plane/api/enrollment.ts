import { unixSeconds } from "../../lib/clock.ts";
import { jwkThumbprint, publicJwk, publicKeyFromJwk } from "../../lib/crypto/ed25519.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import { defineRoute } from "../http/route.ts";
import {
  encodeEnrollmentToken,
  newTokenId,
  newTokenSecret,
  parseEnrollmentToken,
  tokenSecretSha256,
} from "../protocol/enrollment-token.ts";
import {
  type EnrollmentTokenCreateResponse,
  MAX_TOKEN_TTL_S,
  type MachineRegisterResponse,
  MIN_TOKEN_TTL_S,
} from "../protocol/schemas/api-enrollment.ts";
import { validate } from "../protocol/validate.ts";
import type { SingleUseRefusal } from "../store/store.ts";
import { checkTokenlessProof } from "./attest.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { actorOf } from "./owners.ts";

/**
 * Enrollment (docs/protocol.md sections 2 and 5): an owner gets a single-use, expiring,
 * self-describing token (kubeadm-style: the control plane's URL, its CA's hash and its root
 * key's thumbprint travel with the secret, so the machine can check whom it talks to before
 * trusting anything); the machine presents it with its public key, its host facts and a proof
 * signed by that key, and is registered under the token's owner.
 *
 * The secret is stored only as its SHA-256. Consuming the token and registering the worker is
 * one transaction (`store.enrollWorker`): of concurrent registrations with one token exactly one
 * succeeds, and a refused token registers nothing. Every refusal is audited, by token id, never
 * with the secret.
 */

/** Why a token was refused: the store's reasons, and the two the API finds before it. */
type TokenRefusal = SingleUseRefusal | "malformed" | "other_control_plane";

// Unknown, wrong secret, malformed and foreign tokens get one message: an id that exists is
// not confirmed to someone without its secret.
const TOKEN_REFUSAL: Readonly<Record<TokenRefusal, string>> = {
  unknown: "the enrollment token is not valid",
  mismatch: "the enrollment token is not valid",
  malformed: "the enrollment token is not valid",
  other_control_plane: "the enrollment token is not valid",
  used: "the enrollment token was used already",
  expired: "the enrollment token has expired",
};

function tokenInvalid(reason: TokenRefusal) {
  return fail("AGENTD_E_CP_TOKEN_INVALID", TOKEN_REFUSAL[reason], { reason });
}

export function enrollmentGroup(ctx: ApiContext): ApiGroup {
  const createToken = defineRoute({
    method: "POST",
    path: "/v1/enrollment-tokens",
    auth: ["owner"],
    // Every member is optional, so an empty body means "the defaults".
    body: { optional: true, validate: (v) => validate("enrollment-token-create-request", v ?? {}) },
    async handler(c) {
      if (c.caller.kind !== "owner") throw fail("AGENTD_E_INTERNAL", "not an owner");
      const ownerId = c.caller.ownerId;
      const now = unixSeconds(ctx.clock);
      // The configured default is bounded like a requested ttl, so a bad setting cannot mint
      // a token that lives for ever.
      const ttl = Math.min(
        MAX_TOKEN_TTL_S,
        Math.max(MIN_TOKEN_TTL_S, c.body.ttl_s ?? ctx.settings.enrollmentTokenTtlS),
      );
      const keys = ctx.keys();
      const id = newTokenId();
      const secret = newTokenSecret();
      const token = encodeEnrollmentToken({
        url: ctx.settings.publicUrl,
        ca_sha256: keys.caSha256,
        root_kid: keys.root.kid,
        id,
        secret,
      });
      const expiresAt = now + ttl;
      await ctx.store.createEnrollmentToken(
        {
          id,
          owner_id: ownerId,
          secret_sha256: tokenSecretSha256(secret),
          created_at: now,
          expires_at: expiresAt,
        },
        {
          audit: {
            actor: actorOf(c.caller),
            type: "enrollment_token.created",
            object: `owner:${ownerId}`,
            data: {
              token_id: id,
              expires_at: expiresAt,
              ...(c.body.label === undefined ? {} : { label: c.body.label }),
            },
          },
        },
      );
      const body: EnrollmentTokenCreateResponse = { id, token, expires_at: expiresAt };
      return { status: 200, body };
    },
  });

  const register = defineRoute({
    method: "POST",
    path: "/v1/machines/register",
    auth: ["token"],
    body: { validate: (v) => validate("machine-register-request", v) },
    async handler(c) {
      // Refusals found before the store is asked; those of the store are audited with it.
      const refuse = async (tokenId: string | null, reason: TokenRefusal): Promise<never> => {
        const object = tokenId === null ? "enrollment_token" : `enrollment_token:${tokenId}`;
        await ctx.store.appendAudit({
          actor: tokenId === null ? "system" : object,
          type: "enrollment.refused",
          object,
          data: { reason },
        });
        throw tokenInvalid(reason);
      };

      let parsed: ReturnType<typeof parseEnrollmentToken>;
      try {
        parsed = parseEnrollmentToken(c.body.token);
      } catch {
        return refuse(null, "malformed");
      }
      // A token names the control plane it was made for; one naming another CA or root was
      // not made here, whatever its id.
      const keys = ctx.keys();
      if (parsed.ca_sha256 !== keys.caSha256 || parsed.root_kid !== keys.root.kid) {
        return refuse(parsed.id, "other_control_plane");
      }

      let workerId: string;
      let key: ReturnType<typeof publicKeyFromJwk>;
      try {
        key = publicKeyFromJwk(c.body.jwk);
        workerId = jwkThumbprint(key);
      } catch (cause) {
        throw fail(
          "AGENTD_E_SCHEMA",
          "machine-register-request: /jwk: not an Ed25519 public key",
          { schema: "machine-register-request", pointer: "/jwk" },
          cause,
        );
      }

      // Possession of the key being registered: a proof signed by it, for this request. It is
      // checked before the token is consumed, so a request without it burns no token.
      const proof = c.req.headers["agentd-proof"];
      if (typeof proof !== "string" || proof === "") {
        throw fail("AGENTD_E_CP_PROOF_INVALID", "registration needs an AgentD-Proof header", {
          reason: "malformed",
        });
      }
      await checkTokenlessProof(ctx, {
        proof,
        method: c.req.method ?? "",
        url: c.requestUrl,
        key,
        workerId,
      });

      const now = unixSeconds(ctx.clock);
      const object = `worker:${workerId}`;
      const actor = `enrollment_token:${parsed.id}`;
      // An existing worker: the store throws AGENTD_E_CP_CONFLICT (409) and burns no token;
      // alreadyRegistered says why.
      const result = await ctx.store
        .enrollWorker(
          {
            token_id: parsed.id,
            secret_sha256: tokenSecretSha256(parsed.secret),
            now,
            ...(c.body.owner === undefined ? {} : { expect_owner: c.body.owner }),
            worker: {
              worker_id: workerId,
              jwk: { ...publicJwk(key) },
              facts: { ...c.body.facts },
              registered_at: now,
            },
          },
          {
            audit: (r) =>
              r.ok
                ? {
                    actor,
                    type: "worker.registered",
                    object,
                    data: { worker: workerId, owner: r.worker.owner_id, token_id: parsed.id },
                  }
                : {
                    actor,
                    type: "enrollment.refused",
                    object: actor,
                    data: { reason: r.reason, worker: workerId },
                  },
          },
        )
        .catch((err: unknown) => alreadyRegistered(ctx, err, workerId, actor));
      if (!result.ok) {
        if (result.reason === "owner_mismatch") {
          throw fail(
            "AGENTD_E_CP_FORBIDDEN",
            "the enrollment token belongs to another owner than the one this machine is pinned to",
            { reason: "owner_mismatch" },
          );
        }
        throw tokenInvalid(result.reason);
      }
      const body: MachineRegisterResponse = {
        worker: workerId,
        owner: result.worker.owner_id,
        keyset: keys.keysetJws,
      };
      return { status: 200, body };
    },
  });

  return { routes: [createToken, register] };
}

/**
 * A machine key is registered once (it is the worker id). Enrolling it again — `agentd enroll
 * --force` with the same key — is refused (409, audited, no token used) and the answer says
 * why and what to do instead. It is not made to succeed: nothing it could change would help
 * (the worker's consents, revocations, quarantine and counters stay with the worker id; a
 * counter spent by a stolen key recovers with the owner's next consent), and on the machine
 * a new enrollment starts its states over, which must not lift a quarantine while the key —
 * perhaps a cloned one — stays the same: a machine that needs a new start needs a new key.
 */
async function alreadyRegistered(
  ctx: ApiContext,
  err: unknown,
  workerId: string,
  actor: string,
): Promise<never> {
  if (!isAgentdError(err) || err.code !== "AGENTD_E_CP_CONFLICT") throw err;
  const w = await ctx.store.getWorker(workerId);
  if (w === null) throw err;
  const decommissioned = w.decommissioned_at !== null;
  await ctx.store.appendAudit({
    actor,
    type: "enrollment.refused",
    object: `worker:${workerId}`,
    data: { reason: "registered", worker: workerId, decommissioned },
  });
  throw fail(
    "AGENTD_E_CP_CONFLICT",
    decommissioned
      ? `this machine key is registered already as worker ${workerId}, which its owner ` +
          "decommissioned: it is never enrolled again; make a new key (agentd init --force) " +
          "and enroll that"
      : `this machine key is registered already as worker ${workerId}: a key is enrolled ` +
          "once, and its consent, revocations and counters stay with it. A counter spent by " +
          "a stolen key recovers with the owner's next consent, without enrolling again; to " +
          "enroll this machine as a new worker, make a new key first (agentd init --force)",
    { reason: "registered", worker: workerId },
  );
}
