import { unixSeconds } from "../../lib/clock.ts";
import { decodeJwsUnverified } from "../../lib/crypto/jws.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import {
  type ConsentPayload,
  DEFAULT_MAX_PUBLICATION_TTL_S,
  parseConsentPayload,
} from "../../policy-guard/documents.ts";
import { signPublication } from "../../policy-guard/sign.ts";
import type { AuditInput, Consent, ConsentPublished, Publication } from "../store/store.ts";
import type { ApiContext } from "./context.ts";

/**
 * Publishing: the control plane countersigns the worker's latest accepted owner consent with
 * a `publication` key (DOCUMENTS.md section 4), under a version the store allocates
 * (max(last + 1, now_ms): it never goes down, even after a restore), audits it in the same
 * transaction, and wakes the policy long-polls. Every path that publishes goes through here:
 * a new consent, the re-issue timer, a revocation, a quarantine, an emergency stop.
 *
 * Lifetime: `exp - iat` ≤ the consent's `max_publication_ttl_s` (the agent refuses more) and
 * ≤ the control plane's `publicationTtlS`, and never past the consent's own `exp` (a
 * publication cannot stretch the owner's consent).
 *
 * A publication always names a consent (`consent_sha256` is required), so with no consent,
 * or only an expired one, there is nothing to publish — and nothing to stop either: an agent
 * without a valid consent does not mine (fail-closed). `publishForWorker` then throws
 * AGENTD_E_CP_NOT_FOUND (`reason: "no_consent"`) or AGENTD_E_CP_CONFLICT
 * (`reason: "consent_expired"`); `stopWorker` returns null instead, for callers that stop
 * many workers at once.
 *
 * How a stop ends. The control plane can stop, never start: a publication is `stop: true`
 * when the caller asks for it, when the worker is quarantined or decommissioned, when the
 * consent is covered by a stored revocation, or when a stop is *in force*: the latest
 * publication is a stop and the consent was accepted no later than that stop was issued.
 * So re-issues keep a stop (an emergency stop, a lifted quarantine alike) until the owner
 * posts a consent after it: only a new owner decision resumes mining. A consent accepted in
 * the same second as the stop does not lift it (fail-closed on the tie).
 *
 * A stop must not be lost to a publication racing with it (a re-issue, or a consent's
 * publication, planned from state read before the stop): every commit is a compare-and-set
 * on the worker's latest version (`Store.publish` with `expect_version`), so a plan made
 * before another publication committed is refused (AGENTD_E_CP_CONFLICT, reason
 * `stale_plan`) and `publishForWorker` plans again from the new state — which now holds the
 * stop in force. The re-issue timer counts a stale plan as skipped: someone else published.
 * The compare-and-set covers the consent as well (`expect_latest_consent`): a plan that read
 * the consent before a newer one was accepted is stale too, so an older consent is never
 * countersigned over a newer one.
 *
 * A new consent is accepted and published in one transaction (`publishNewConsent`,
 * `Store.acceptConsentAndPublish`): it is stored only together with the publication that
 * countersigns it, so two owners' requests racing cannot leave one told "published" with a
 * publication of the other's consent, and the seq, revocation and decommission checks are
 * made under the worker's lock, not from what was read before.
 */

/** Why a publication stops mining. */
export type StopCause = "requested" | "in_force" | "quarantined" | "revoked" | "decommissioned";

export interface PublicationPlan {
  readonly workerId: string;
  /** The consent it countersigns: the worker's latest accepted one, or the one being accepted. */
  readonly consent: Consent;
  /** Whether `consent` is being accepted with this publication (not stored yet). */
  readonly newConsent: boolean;
  readonly iat: number;
  readonly exp: number;
  readonly stop: boolean;
  readonly causes: readonly StopCause[];
  /** The latest publication's version the plan was made from (null: none); see commit. */
  readonly basedOn: number | null;
}

export interface PublishOptions {
  readonly stop: boolean;
  /** Audit actor: `apikey:<id>`, `worker:<id>` or `system`. */
  readonly actor: string;
  /** Why it is published (`consent`, `reissue`, `revocation`, `quarantine`, …), audited. */
  readonly reason: string;
}

/** Plans made again when a racing publication made the previous one stale. */
const MAX_PLAN_ATTEMPTS = 5;

/** The payload of a stored consent (verified when it was accepted). */
export function storedConsentPayload(consent: Consent): ConsentPayload {
  const { payload } = decodeJwsUnverified(consent.jws);
  return parseConsentPayload(payload as Record<string, unknown>);
}

export interface PlanOptions {
  readonly stop: boolean;
  /** Plan for this consent, being accepted now, instead of the latest stored one. */
  readonly newConsent?: Consent;
  /**
   * A stop that covers the consents accepted up to this time only (an emergency stop: its
   * `executed_at`). A worker whose owner posted a consent after it has decided to mine again
   * after the stop: planning throws AGENTD_E_CP_CONFLICT with reason `consent_after_stop`
   * (`isOwnerResumed`) and the stop leaves it alone. Re-decided on every re-plan.
   */
  readonly coversConsentsUntil?: number;
}

/** What would be published for the worker now. Throws when there is nothing to publish. */
export async function planPublication(
  ctx: ApiContext,
  workerId: string,
  options: PlanOptions,
): Promise<PublicationPlan> {
  const [worker, stored, latest, revocations] = await Promise.all([
    ctx.store.getWorker(workerId),
    options.newConsent === undefined ? ctx.store.latestConsent(workerId) : null,
    ctx.store.latestPublication(workerId),
    ctx.store.listRevocations(workerId),
  ]);
  const consent = options.newConsent ?? stored;
  if (worker === null) throw fail("AGENTD_E_CP_NOT_FOUND", "no such worker", { worker: workerId });
  if (consent === null) {
    throw fail("AGENTD_E_CP_NOT_FOUND", "the worker has no consent to publish", {
      worker: workerId,
      reason: "no_consent",
    });
  }
  if (
    options.coversConsentsUntil !== undefined &&
    consent.accepted_at > options.coversConsentsUntil
  ) {
    throw fail("AGENTD_E_CP_CONFLICT", "the owner consented after the stop", {
      worker: workerId,
      reason: "consent_after_stop",
    });
  }
  const rules = storedConsentPayload(consent).rules;
  const now = unixSeconds(ctx.clock);
  const ttl = Math.min(
    ctx.settings.publicationTtlS,
    rules.max_publication_ttl_s ?? DEFAULT_MAX_PUBLICATION_TTL_S,
  );
  const exp = Math.min(now + ttl, consent.exp);
  if (exp <= now) {
    throw fail("AGENTD_E_CP_CONFLICT", "the worker's consent has expired: nothing to publish", {
      worker: workerId,
      reason: "consent_expired",
    });
  }
  const causes: StopCause[] = [];
  if (options.stop) causes.push("requested");
  if (latest?.stop === true && consent.accepted_at <= latest.iat) causes.push("in_force");
  if (worker.quarantine !== null) causes.push("quarantined");
  if (worker.decommissioned_at !== null) causes.push("decommissioned");
  const revoked = revocations.some(
    (r) => r.kind === "revocation" && r.through_seq !== null && r.through_seq >= consent.seq,
  );
  if (revoked) causes.push("revoked");
  return {
    workerId,
    consent,
    newConsent: options.newConsent !== undefined,
    iat: now,
    exp,
    stop: causes.length > 0,
    causes,
    basedOn: latest?.version ?? null,
  };
}

function signer(ctx: ApiContext, plan: PublicationPlan): (version: number) => string {
  const key = ctx.keys().signing.publication.privateKey;
  return (version) =>
    signPublication({
      cpKey: key,
      consent: plan.consent.jws,
      worker: plan.workerId,
      version,
      iat: plan.iat,
      ttlS: plan.exp - plan.iat,
      stop: plan.stop,
    });
}

function publicationAudit(
  plan: PublicationPlan,
  p: Publication,
  options: { readonly actor: string; readonly reason: string },
): AuditInput {
  return {
    actor: options.actor,
    type: "publication.issued",
    object: `worker:${plan.workerId}`,
    data: {
      version: p.version,
      consent: plan.consent.identity,
      seq: plan.consent.seq,
      iat: p.iat,
      exp: p.exp,
      stop: p.stop,
      causes: [...plan.causes],
      reason: options.reason,
    },
  };
}

/** Signs, stores (one transaction, audited) and announces a planned publication. */
export async function commitPublication(
  ctx: ApiContext,
  plan: PublicationPlan,
  options: { readonly actor: string; readonly reason: string },
): Promise<Publication> {
  if (plan.newConsent) {
    throw fail("AGENTD_E_INTERNAL", "a new consent is published with publishNewConsent");
  }
  const { publication } = await ctx.store.publish(
    {
      worker_id: plan.workerId,
      consent_identity: plan.consent.identity,
      iat: plan.iat,
      exp: plan.exp,
      stop: plan.stop,
      now_ms: Math.floor(ctx.clock.now()),
      // Only over the publication and the consent the plan saw: a stop (or anything else)
      // published since, or a newer consent, would otherwise be overwritten by a plan that
      // did not know of it.
      expect_version: plan.basedOn,
      expect_latest_consent: true,
    },
    signer(ctx, plan),
    { audit: ({ publication: p }) => publicationAudit(plan, p, options) },
  );
  ctx.policyNotifier.notify(plan.workerId);
  return publication;
}

/**
 * Accepts an owner's consent and publishes it, in one transaction (the module comment):
 * audited as `consent` (the caller's event) and `publication.issued`. A plan made stale by a
 * publication committed meanwhile is made again; the store's refusals (seq, revoked,
 * decommissioned) are thrown with nothing stored.
 */
export async function publishNewConsent(
  ctx: ApiContext,
  consent: Consent,
  options: { readonly actor: string; readonly reason: string; readonly audit: AuditInput },
): Promise<ConsentPublished> {
  for (let attempt = 1; ; attempt++) {
    const plan = await planPublication(ctx, consent.worker_id, {
      stop: false,
      newConsent: consent,
    });
    try {
      const published = await ctx.store.acceptConsentAndPublish(
        consent,
        {
          iat: plan.iat,
          exp: plan.exp,
          stop: plan.stop,
          now_ms: Math.floor(ctx.clock.now()),
          expect_version: plan.basedOn,
        },
        signer(ctx, plan),
        { audit: (r) => [options.audit, publicationAudit(plan, r.publication, options)] },
      );
      ctx.policyNotifier.notify(consent.worker_id);
      return published;
    } catch (err) {
      if (!isStalePlan(err) || attempt >= MAX_PLAN_ATTEMPTS) throw err;
    }
  }
}

/**
 * Publishes the worker's latest consent now (see the module comment for the lifetime, the
 * stop rules and what happens without a consent).
 */
export async function publishForWorker(
  ctx: ApiContext,
  workerId: string,
  options: {
    readonly stop: boolean;
    readonly actor: string;
    readonly reason: string;
    readonly coversConsentsUntil?: number;
  },
): Promise<Publication> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await commitPublication(ctx, await planPublication(ctx, workerId, options), {
        actor: options.actor,
        reason: options.reason,
      });
    } catch (err) {
      // Another publication came between plan and commit: plan again from the new state.
      if (!isStalePlan(err) || attempt >= MAX_PLAN_ATTEMPTS) throw err;
    }
  }
}

/** Whether a commit was refused because a publication came after its plan was made. */
export function isStalePlan(err: unknown): boolean {
  return (
    isAgentdError(err) && err.code === "AGENTD_E_CP_CONFLICT" && err.context.reason === "stale_plan"
  );
}

/** Whether a stop was not published because the owner consented after it (PlanOptions). */
export function isOwnerResumed(err: unknown): boolean {
  return (
    isAgentdError(err) &&
    err.code === "AGENTD_E_CP_CONFLICT" &&
    err.context.reason === "consent_after_stop"
  );
}

/** Whether an error from publishForWorker only says that there was nothing to publish. */
export function isNothingToPublish(err: unknown): boolean {
  if (!isAgentdError(err)) return false;
  const reason = err.context.reason;
  return (
    (err.code === "AGENTD_E_CP_NOT_FOUND" && reason === "no_consent") ||
    (err.code === "AGENTD_E_CP_CONFLICT" && reason === "consent_expired")
  );
}

/**
 * Publishes `stop: true`, or returns null when the worker has no valid consent (an agent
 * without one does not mine, so there is nothing to stop). For quarantine, revocation and
 * emergency stops.
 */
export async function stopWorker(
  ctx: ApiContext,
  workerId: string,
  options: { readonly actor: string; readonly reason: string },
): Promise<Publication | null> {
  try {
    return await publishForWorker(ctx, workerId, { ...options, stop: true });
  } catch (err) {
    if (isNothingToPublish(err)) return null;
    throw err;
  }
}
