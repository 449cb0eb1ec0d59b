import { type KeyObject, randomBytes } from "node:crypto";
import { unixSeconds } from "../../lib/clock.ts";
import { encodeBase64url } from "../../lib/crypto/base64url.ts";
import { decodeJwsUnverified } from "../../lib/crypto/jws.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import type { AuthenticateMachineProof } from "../http/auth.ts";
import { defineRoute } from "../http/route.ts";
import { verifyAttestation } from "../protocol/documents/attestation.ts";
import { JTI_RETENTION_S, verifyProof } from "../protocol/proof.ts";
import type { AttestResponse, ChallengeResponse } from "../protocol/schemas/api-enrollment.ts";
import type { HostFacts } from "../protocol/schemas/attestation.ts";
import { validate } from "../protocol/validate.ts";
import type { SingleUseRefusal, Worker } from "../store/store.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { sha256Hex } from "./machine-auth.ts";
import { stopWorker } from "./publish.ts";

/**
 * Attestation (docs/protocol.md section 3 step 2 and section 5): a registered machine answers
 * a fresh challenge with a document signed by its key and gets a short-lived access token
 * bound to that key.
 *
 * The machine has no token yet, so the route authenticates it by its request proof alone
 * (`machineProofOnly`): the proof's `kid` must be a registered worker's key, the proof signed
 * by it for this method and URL, fresh, without `ath`, and its `jti` new.
 *
 * ADVISORY: the facts (machine-id hash, binary hash, OS, boot time) are self-reported by
 * software the owner controls. A verified attestation proves possession of the key and
 * freshness, nothing about the hardware or the binary actually running. They serve to flag a
 * clone (one key first attested from another machine id) and a binary outside the allowlist;
 * either quarantines the worker. The token is issued whatever the verdict, so a quarantined
 * machine can still send its heartbeats and be seen.
 */

/**
 * A request proof sent without an access token (register, attest): signed by `key` for this
 * method and URL, within the skew, no `ath`; its `jti` recorded once. Refusals are audited as
 * `auth.proof_refused` (as for token-bound proofs): a bad proof from a real key is the sign of
 * a replay or a tampered request.
 */
export async function checkTokenlessProof(
  ctx: ApiContext,
  a: {
    readonly proof: string;
    readonly method: string;
    readonly url: string;
    readonly key: KeyObject;
    readonly workerId: string;
  },
): Promise<void> {
  const now = unixSeconds(ctx.clock);
  const refuse = async (err: unknown): Promise<never> => {
    const reason = isAgentdError(err) ? err.context.reason : undefined;
    await ctx.store.appendAudit({
      actor: `worker:${a.workerId}`,
      type: "auth.proof_refused",
      object: `worker:${a.workerId}`,
      data: {
        method: a.method,
        path: new URL(a.url).pathname,
        reason: typeof reason === "string" ? reason : "malformed",
      },
    });
    throw err;
  };
  let jti: string;
  try {
    jti = verifyProof(a.proof, {
      method: a.method,
      url: a.url,
      key: a.key,
      clock: ctx.clock,
      maxSkewS: ctx.settings.maxSkewS,
    }).jti;
  } catch (err) {
    return refuse(err);
  }
  if (!(await ctx.store.useJti(jti, a.workerId, now + JTI_RETENTION_S, now))) {
    return refuse(
      fail("AGENTD_E_CP_REPLAY", "this request proof was used before", { reason: "replay" }),
    );
  }
}

/** `machineProofOnly` for attest: the signer is the worker whose key the proof's kid names. */
export function proofOnlyAuthenticator(ctx: ApiContext): AuthenticateMachineProof {
  return async ({ proof, method, url }) => {
    // Read unverified only to pick the key; verifyProof then checks the signature with it.
    // Form errors (AGENTD_E_JWS_*) become 401 AGENTD_E_CP_PROOF_INVALID in http/auth.ts.
    const kid = decodeJwsUnverified(proof).header.kid;
    const worker =
      typeof kid === "string" && kid.length <= 64 ? await ctx.store.getWorker(kid) : null;
    if (worker === null) {
      // Not audited: nothing names a worker, and anyone could fill the log with these.
      throw fail("AGENTD_E_CP_UNAUTHENTICATED", "the proof is not signed by a registered machine");
    }
    await checkTokenlessProof(ctx, {
      proof,
      method,
      url,
      key: ctx.publicKeys.get(worker.jwk),
      workerId: worker.worker_id,
    });
    return { worker_id: worker.worker_id };
  };
}

const CHALLENGE_REFUSAL: Readonly<Record<SingleUseRefusal, string>> = {
  unknown: "the challenge is unknown",
  expired: "the challenge has expired",
  mismatch: "the challenge was issued to another worker",
  used: "the challenge was answered before",
};

/** Signature failures of the attestation are authentication failures; form errors stay 400. */
const NOT_AUTHENTIC: ReadonlySet<string> = new Set([
  "AGENTD_E_JWS_SIGNATURE",
  "AGENTD_E_JWS_UNKNOWN_KEY",
  "AGENTD_E_JWS_KID_MISMATCH",
]);

async function machineWorker(ctx: ApiContext, workerId: string): Promise<Worker> {
  const worker = await ctx.store.getWorker(workerId);
  if (worker === null) throw fail("AGENTD_E_CP_UNAUTHENTICATED", "unknown worker");
  if (worker.decommissioned_at !== null) {
    throw fail("AGENTD_E_CP_FORBIDDEN", "this worker is decommissioned");
  }
  return worker;
}

/**
 * As an admin's quarantine does (api/admin.ts): recorded, the worker's sessions ended (every
 * copy of the key must attest again, and may then only heartbeat), and `stop: true` published
 * so that a cloned machine stops mining at once. The stop is best effort: with no valid
 * consent there is nothing to stop, and publish.ts keeps the stop in every later re-issue
 * while the worker is quarantined.
 */
async function quarantine(ctx: ApiContext, workerId: string, reason: string, at: number) {
  const object = `worker:${workerId}`;
  await ctx.store.setQuarantine(
    workerId,
    { reason, at },
    { audit: { actor: "system", type: "worker.quarantined", object, data: { reason } } },
  );
  await ctx.store.deleteAccessTokens(workerId, {
    audit: (n) => ({ actor: "system", type: "worker.tokens_deleted", object, data: { count: n } }),
  });
  try {
    await stopWorker(ctx, workerId, { actor: "system", reason });
  } catch (err) {
    ctx.logger.error({ err, worker: workerId }, "stop publication after quarantine failed");
  }
}

export function attestGroup(ctx: ApiContext): ApiGroup {
  const challenge = defineRoute({
    method: "GET",
    path: "/v1/auth/agent/challenge",
    auth: ["public"],
    query: ["worker"],
    async handler(c) {
      const q = validate("challenge-query", c.query);
      const expiresAt = unixSeconds(ctx.clock) + ctx.settings.challengeTtlS;
      const nonce = encodeBase64url(randomBytes(32));
      // Not audited: a challenge changes nothing until answered (the attestation is), and a
      // public endpoint must not let anyone grow the audit chain.
      await ctx.store.createAttestationChallenge({
        nonce,
        worker_id: q.worker ?? null,
        expires_at: expiresAt,
      });
      const body: ChallengeResponse = { challenge: nonce, expires_at: expiresAt };
      return { status: 200, body };
    },
  });

  const attest = defineRoute({
    method: "POST",
    path: "/v1/auth/agent/attest",
    auth: ["machine"],
    machineProofOnly: proofOnlyAuthenticator(ctx),
    // Before the body: a decommissioned worker learns 403 whatever it sends. Quarantine is
    // not checked: a quarantined machine attests to keep sending heartbeats.
    async authorize({ caller }) {
      if (caller.kind === "machine") await machineWorker(ctx, caller.workerId);
    },
    body: { validate: (v) => validate("attest-request", v) },
    async handler(c) {
      if (c.caller.kind !== "machine") throw fail("AGENTD_E_INTERNAL", "attest: not a machine");
      const workerId = c.caller.workerId;
      const actor = `worker:${workerId}`;
      const object = actor;
      const worker = await machineWorker(ctx, workerId);

      const key = ctx.publicKeys.get(worker.jwk);
      let facts: HostFacts;
      let nonce: string;
      try {
        const doc = verifyAttestation(c.body.attestation, { key, clock: ctx.clock });
        facts = doc.payload.facts;
        nonce = doc.payload.challenge;
      } catch (err) {
        const code = isAgentdError(err) ? err.code : "AGENTD_E_INTERNAL";
        await ctx.store.appendAudit({
          actor,
          type: "attestation.refused",
          object,
          data: { reason: code },
        });
        if (NOT_AUTHENTIC.has(code)) {
          throw fail(
            "AGENTD_E_CP_UNAUTHENTICATED",
            "the attestation is not signed by this worker's key",
            {},
            err,
          );
        }
        throw err;
      }

      const now = unixSeconds(ctx.clock);
      // Consumed only now that the attestation is authentic: nobody else can burn a challenge.
      const consumed = await ctx.store.consumeAttestationChallenge(nonce, workerId, now, {
        audit: (r) =>
          r.ok
            ? null
            : {
                actor,
                type: "attestation.refused",
                object,
                data: { reason: `challenge.${r.reason}` },
              },
      });
      if (!consumed.ok) {
        throw fail(
          consumed.reason === "used" ? "AGENTD_E_CP_REPLAY" : "AGENTD_E_CP_UNAUTHENTICATED",
          CHALLENGE_REFUSAL[consumed.reason],
          { reason: consumed.reason },
        );
      }

      const allowlist = ctx.settings.binaryAllowlist;
      const result = await ctx.store.recordAttestation(
        {
          worker_id: workerId,
          machine_id_sha256: facts.machine_id_sha256,
          binary_sha256: facts.binary_sha256,
          binary_allowed: allowlist === null || allowlist.includes(facts.binary_sha256),
          at: now,
        },
        {
          audit: (r) => ({
            actor,
            type: "attestation.recorded",
            object,
            data: {
              verdict: r.verdict,
              machine_id_sha256: r.machine_id_sha256,
              expected_machine_id_sha256: r.expected_machine_id_sha256,
              binary_sha256: r.binary_sha256,
              os: facts.os,
              boot_time: facts.boot_time,
              agent_version: facts.agent_version,
            },
          }),
        },
      );

      let quarantined = worker.quarantine !== null;
      if (result.verdict !== "ok" && !quarantined) {
        // An earlier quarantine (an admin's, with its reason) is kept as it is.
        await quarantine(ctx, workerId, `attestation.${result.verdict}`, now);
        quarantined = true;
      }

      // Issued whatever the verdict: a quarantined machine may still send heartbeats. Not
      // audited on its own: the attestation event above is what issued it.
      const accessToken = `agentd_at_${encodeBase64url(randomBytes(32))}`;
      const expiresAt = now + ctx.settings.accessTokenTtlS;
      await ctx.store.createAccessToken({
        token_sha256: sha256Hex(accessToken),
        worker_id: workerId,
        expires_at: expiresAt,
      });
      const body: AttestResponse = {
        verdict: result.verdict,
        quarantined,
        access_token: accessToken,
        token_type: "AgentD",
        expires_at: expiresAt,
      };
      return { status: 200, body };
    },
  });

  return { routes: [challenge, attest] };
}
