import { decodeJwsUnverified } from "../lib/crypto/jws.ts";
import { isAgentdError } from "../lib/errors.ts";
import { sleep, stopwatch } from "../lib/timers.ts";
import { DOC_TYP } from "../policy-guard/documents.ts";
import type { SubmitResult } from "../policy-guard/engine.ts";
import type { AgentContext } from "./agent-context.ts";
import { consentInForce } from "./assignment.ts";
import { rotationsByPolling } from "./owner-rotations.ts";
import type { StateDriver } from "./state-driver.ts";

/**
 * The owner's documents reaching the policy guard, from any source: bundles (consent and
 * publication) from the push stream, the long poll and the local API; revocations,
 * decommissions and owner-key rotations from the push stream and the local API. A bundle
 * signed by a publication key not known yet is a key-set rotation: the key set is fetched and
 * the bundle tried again. A consent signed by an owner key not known yet may follow an
 * owner-key rotation the agent missed: the rotations are polled (owner-rotations.ts), each
 * submitted to the guard, and the bundle tried again.
 *
 * The long poll runs here too — the same bundle the stream pushes, for when push is not
 * possible — from the first attestation on, until the agent stops (closing the client ends a
 * poll in flight).
 */
export type DocumentSource = "push" | "poll" | "local";

export interface PolicySync {
  submitBundle(bundle: unknown, source: DocumentSource): Promise<SubmitResult>;
  /** A revocation; the time from its arrival to the gate's acknowledgement is measured. */
  revoke(jws: string, source: "push" | "local"): Promise<SubmitResult>;
  decommission(jws: string, source: "push" | "local"): Promise<SubmitResult>;
  /** A revocation or a decommission, told apart by its `typ` (the local API takes both). */
  applyOwnerDocument(jws: string, source: "push" | "local"): Promise<SubmitResult>;
  /** An owner-key rotation signed by the owner key in force. */
  rotateOwner(jws: string, source: DocumentSource): Promise<SubmitResult>;
  /**
   * Called when a bundle put a newer consent in force (the owner signed again): what the
   * control plane's keys did under the old one ends here (operator.ts lifts a remote pause).
   */
  onNewConsent(listener: (consent: string, source: DocumentSource) => void): void;
}

const LABEL = { push: "push", poll: "poll", local: "local API" } as const;
const POLL_RETRY_MS = 5_000;

export function startPolicySync(
  ctx: AgentContext,
  o: {
    readonly driver: StateDriver;
    /** Resolves once the first attestation settled: the long poll needs a session. */
    readonly attested: Promise<void>;
    readonly longPollS: number;
  },
): PolicySync {
  const { engine, keys, signal } = ctx;

  const rotateOwner = async (jws: string, source: DocumentSource) => {
    const r = await engine.submitOwnerRotation(jws, source);
    if (r.accepted) o.driver.follow(`owner-key rotation (${LABEL[source]})`);
    return r;
  };

  // One poll for missed rotations at a time; whoever asks meanwhile waits for that one.
  let polling: Promise<boolean> | null = null;
  const pollRotations = (): Promise<boolean> => {
    polling ??= (async () => {
      try {
        const fresh = await rotationsByPolling({
          poll: (after) => ctx.client.pollCommands({ after }),
          known: (jws) => engine.knowsRotation(jws),
        });
        let accepted = false;
        for (const jws of fresh) accepted = (await rotateOwner(jws, "poll")).accepted || accepted;
        return accepted;
      } catch (err) {
        ctx.log.warn({ err }, "polling owner-key rotations failed");
        return false;
      } finally {
        polling = null;
      }
    })();
    return polling;
  };

  const newConsentListeners: ((consent: string, source: DocumentSource) => void)[] = [];
  const submitBundle = async (bundle: unknown, source: DocumentSource) => {
    const before = consentInForce(engine)?.identity ?? null;
    const seq0 = keys.current().seq;
    let r = await engine.submitBundle(bundle, source);
    if (!r.accepted && r.reasons.includes("publication.unknown_key")) {
      if (await keys.refresh("unknown publication key", seq0)) {
        r = await engine.submitBundle(bundle, source);
      }
    }
    if (!r.accepted && r.reasons.includes("consent.unknown_key")) {
      if (await pollRotations()) r = await engine.submitBundle(bundle, source);
    }
    if (r.accepted) {
      const now = consentInForce(engine)?.identity ?? null;
      if (now !== null && now !== before) for (const l of newConsentListeners) l(now, source);
      o.driver.bundleAccepted(source);
    }
    return r;
  };

  const revoke = async (jws: string, source: "push" | "local") => {
    const elapsed = stopwatch();
    const r = await engine.submitRevocation(jws, source);
    if (r.accepted) {
      ctx.metrics.revokeToStop(elapsed());
      o.driver.revocationAccepted(LABEL[source]);
    } else {
      o.driver.follow("decision after the revocation");
    }
    return r;
  };

  const decommission = async (jws: string, source: "push" | "local") => {
    const r = await engine.submitDecommission(jws, source);
    if (r.accepted) {
      ctx.states.move("decommissioned", `owner-signed decommission (${LABEL[source]})`);
    }
    return r;
  };

  void (async () => {
    await o.attested;
    let etag: string | null = null;
    while (!signal.aborted) {
      try {
        const a = await ctx.client.getPolicy({ etag, waitS: o.longPollS });
        if (signal.aborted) return;
        if (a.changed) {
          etag = a.etag;
          await submitBundle(a.bundle, "poll");
        }
      } catch (err) {
        if (signal.aborted) return;
        if (!(isAgentdError(err) && err.code === "AGENTD_E_CP_NOT_FOUND")) {
          ctx.log.warn({ err }, "policy poll failed");
        }
        await sleep(ctx.timers, POLL_RETRY_MS, signal);
      }
    }
  })();

  return {
    submitBundle,
    revoke,
    decommission,
    rotateOwner,
    onNewConsent: (l) => {
      newConsentListeners.push(l);
    },
    async applyOwnerDocument(jws, source) {
      let typ: unknown;
      try {
        typ = decodeJwsUnverified(jws).header.typ;
      } catch {
        typ = undefined;
      }
      return typ === DOC_TYP.decommission ? decommission(jws, source) : revoke(jws, source);
    },
  };
}
