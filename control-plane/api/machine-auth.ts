import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { unixSeconds } from "../../lib/clock.ts";
import { fail } from "../../lib/errors.ts";
import type {
  ApiKeyRecord,
  AuthenticateMachine,
  AuthenticateMachineToken,
  FindApiKey,
} from "../http/auth.ts";
import { JTI_RETENTION_S, verifyProof } from "../protocol/proof.ts";
import type { Worker } from "../store/store.ts";
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

/** The worker row read while authenticating each request: authorizeWorker reuses it. */
const readForRequest = new WeakMap<IncomingMessage, Worker>();

/**
 * The worker row this request's authentication read, if it is `workerId`'s: read an instant
 * ago in the same request, so reading it again would only cost a query per machine call.
 */
export function workerReadAtAuthentication(
  req: IncomingMessage,
  workerId: string,
): Worker | undefined {
  const w = readForRequest.get(req);
  return w?.worker_id === workerId ? w : undefined;
}

async function workerOfToken(
  ctx: ApiContext,
  accessToken: string,
  req: IncomingMessage,
): Promise<Worker> {
  const found = await ctx.store.findAccessTokenWorker(
    sha256Hex(accessToken),
    unixSeconds(ctx.clock),
  );
  if (found === null) {
    throw fail("AGENTD_E_CP_UNAUTHENTICATED", "unknown or expired access token");
  }
  readForRequest.set(req, found.worker);
  return found.worker;
}

/**
 * `machineSignedBody` (http/route.ts) for routes whose body the machine key signs (heartbeat):
 * the access token names the worker; the handler verifies the body under that worker's key.
 */
export function machineTokenAuthenticator(ctx: ApiContext): AuthenticateMachineToken {
  return async (accessToken, req) => ({
    worker_id: (await workerOfToken(ctx, accessToken, req)).worker_id,
  });
}

export function machineAuthenticator(ctx: ApiContext): AuthenticateMachine {
  return async ({ req, accessToken, proof, method, url }) => {
    const now = unixSeconds(ctx.clock);
    const worker = await workerOfToken(ctx, accessToken, req);
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
        key: ctx.publicKeys.get(worker.jwk),
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
