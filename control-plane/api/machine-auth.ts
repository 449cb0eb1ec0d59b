import { createHash } from "node:crypto";
import { unixSeconds } from "../../lib/clock.ts";
import { publicKeyFromJwk } from "../../lib/crypto/ed25519.ts";
import { fail } from "../../lib/errors.ts";
import type { ApiKeyRecord, AuthenticateMachine, FindApiKey } from "../http/auth.ts";
import { JTI_RETENTION_S, verifyProof } from "../protocol/proof.ts";
import type { ApiContext } from "./context.ts";

/**
 * How callers are recognised (docs/protocol.md, "Authentication").
 *
 * API keys: the store keeps only sha256 of the key, so a database leak yields no usable key.
 *
 * Machines: `Authorization: AgentD <access token>` plus an `AgentD-Proof` signed by the
 * machine key for this method and URL, fresh (±maxSkewS), never seen before (the store's
 * jti cache, an atomic insert shared by every instance on one database) and bound to the
 * token (`ath`). A stolen access token alone is useless without the machine key; a captured
 * request cannot be replayed. Failures are audited: they are the signal of a stolen token
 * or a cloned key.
 */

export function apiKeyFinder(ctx: ApiContext): FindApiKey {
  return async (sha256hex): Promise<ApiKeyRecord | undefined> => {
    const k = await ctx.store.findApiKeyBySha256(sha256hex);
    return k === null
      ? undefined
      : { id: k.id, role: k.role, owner_id: k.owner_id, key_sha256: k.key_sha256 };
  };
}

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

export function machineAuthenticator(ctx: ApiContext): AuthenticateMachine {
  return async ({ accessToken, proof, method, url }) => {
    const now = unixSeconds(ctx.clock);
    const token = await ctx.store.findAccessToken(sha256Hex(accessToken), now);
    if (token === null) {
      throw fail("AGENTD_E_CP_UNAUTHENTICATED", "unknown or expired access token");
    }
    const worker = await ctx.store.getWorker(token.worker_id);
    if (worker === null) throw fail("AGENTD_E_CP_UNAUTHENTICATED", "unknown worker");
    const refuse = async (err: unknown): Promise<never> => {
      await ctx.store.appendAudit({
        actor: `worker:${worker.worker_id}`,
        type: "auth.proof_refused",
        object: `worker:${worker.worker_id}`,
        data: {
          method,
          path: new URL(url).pathname,
          reason: String((err as { context?: { reason?: unknown } }).context?.reason ?? "replay"),
        },
      });
      throw err;
    };
    let verified: ReturnType<typeof verifyProof>;
    try {
      verified = verifyProof(proof, {
        method,
        url,
        accessToken,
        key: publicKeyFromJwk(worker.jwk),
        clock: ctx.clock,
        maxSkewS: ctx.settings.maxSkewS,
      });
    } catch (err) {
      return refuse(err);
    }
    const first = await ctx.store.useJti(
      verified.jti,
      worker.worker_id,
      now + JTI_RETENTION_S,
      now,
    );
    if (!first) {
      return refuse(
        fail("AGENTD_E_CP_REPLAY", "this request proof was used before", { reason: "replay" }),
      );
    }
    return { worker_id: worker.worker_id };
  };
}
