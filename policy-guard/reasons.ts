/**
 * Every reason a decision or a verification can give, with its meaning. The codes are stable
 * (owners' scripts and the control plane match on them); docs/policy.md lists them and
 * test/policy-guard/reasons.test.ts keeps the two lists equal.
 *
 * `consent.*` reasons deny mining and services; `rotation.*` reasons deny nothing (they say why
 * an owner-key rotation was refused, which leaves everything as it was); every other reason
 * denies mining only.
 */
export const REASONS = Object.freeze({
  // the consent (owner-signed)
  "consent.missing": "No consent: the owner has not signed one for this machine.",
  "consent.malformed": "The consent is not a well-formed JWS (form, strict base64url, header).",
  "consent.alg": "The consent's alg is not EdDSA.",
  "consent.typ": "The consent's typ is not agentd-consent+jwt.",
  "consent.unknown_key": "The consent is signed by a key that is not the pinned owner key.",
  "consent.kid_mismatch": "The consent's kid is not the thumbprint of the key that must verify it.",
  "consent.signature": "The consent's signature does not verify.",
  "consent.too_large": "The consent exceeds 64 KiB.",
  "consent.payload":
    "The consent's payload is not valid (JSON, duplicate keys, integers beyond 2^53, a missing, unknown or mistyped member or rule).",
  "consent.owner_mismatch": "The consent's owner member is not the thumbprint of its signing key.",
  "consent.worker_mismatch": "The consent is for another machine (worker id).",
  "consent.not_yet_valid": "The consent's iat or nbf is more than 60 s in the future.",
  "consent.expired": "The consent's exp has passed.",
  "consent.seq_rollback":
    "The consent's seq is lower than the highest already accepted for this machine.",
  "consent.seq_conflict":
    "The consent's seq equals the highest accepted but it is another document.",
  "consent.revoked":
    "The owner revoked this consent (its seq is at or below a revocation's through_seq).",
  "consent.decommissioned":
    "The owner decommissioned this machine; nothing runs until it is enrolled again.",
  // the publication (control-plane-signed)
  "publication.missing": "No publication: the control plane has not countersigned the consent.",
  "publication.malformed":
    "The publication is not a well-formed JWS (form, strict base64url, header).",
  "publication.alg": "The publication's alg is not EdDSA.",
  "publication.typ": "The publication's typ is not agentd-publication+jwt.",
  "publication.unknown_key":
    "The publication is signed by a key that is not a pinned publication key.",
  "publication.kid_mismatch":
    "The publication's kid is not the thumbprint of the key that must verify it.",
  "publication.signature": "The publication's signature does not verify.",
  "publication.too_large": "The publication exceeds 64 KiB.",
  "publication.payload": "The publication's payload is not valid.",
  "publication.worker_mismatch": "The publication is for another machine.",
  "publication.consent_mismatch": "The publication countersigns another consent (consent_sha256).",
  "publication.ttl_exceeds_max":
    "The publication's exp - iat exceeds the consent's max_publication_ttl_s.",
  "publication.not_yet_valid": "The publication's iat or nbf is more than 60 s in the future.",
  "publication.offline_grace_exceeded":
    "The publication expired longer ago than the consent's offline_grace_s.",
  "publication.version_rollback":
    "The publication's version is lower than the highest already accepted for its consent.",
  "publication.version_conflict":
    "The publication's version equals the highest accepted for its consent but it is another document.",
  "publication.stop": "The control plane set stop: it may always stop mining.",
  // time
  "clock.behind_floor":
    "The wall clock is more than 60 s behind the latest time this machine has seen; documents cannot be trusted to be unexpired until it catches up.",
  // rules
  "rules.upstreams_empty": "The consent allows no upstream pool, so there is nowhere to mine.",
  "rules.upstream_not_allowed": "The upstream in use is not one of the consent's upstreams.",
  "rules.schedule_outside": "Now is outside every schedule window.",
  "rules.max_watts_exceeded": "Measured power is above max_watts.",
  "rules.max_temp_exceeded": "The hottest temperature is above max_temp_c.",
  "rules.job_class_denied": "The job class is not allowed by job_classes.",
  // facts a rule needs
  "facts.invalid": "The facts are not a JSON object.",
  "facts.upstream_missing": "No upstream fact, so the upstreams rule cannot be checked.",
  "facts.watts_missing": "max_watts is set but there is no valid watts fact.",
  "facts.watts_estimated":
    "max_watts needs measured power; an estimate is reported, never trusted.",
  "facts.watts_stale": "The watts fact is older than facts_max_age_s (or dated in the future).",
  "facts.temp_missing": "max_temp_c is set but there is no valid temp_c fact.",
  "facts.temp_stale": "The temp_c fact is older than facts_max_age_s (or dated in the future).",
  "facts.job_class_missing": "job_classes is set but there is no job_class fact.",
  // services
  "services.none_allowed": "The consent allows no service images.",
  // the agent: holds on this machine, outside the documents (agent/mining-holds.ts); they
  // never come from the decision, they are added to it on the way to the data path
  "agent.audit_unwritable":
    "The audit log cannot be written (disk full, I/O error): nothing happens that cannot be recorded, so mining waits until it can.",
  "agent.quarantined":
    "This machine is quarantined: a cloned identity (nothing mines until it is enrolled again), or the control plane's signed worker.quarantine command (until the owner signs a newer consent).",
  "agent.unassigned":
    "No assignment from the control plane for the consent in force (or it expired and a new one could be fetched but was not valid): mining happens only in ASSIGNED and MINING.",
  "agent.paused":
    "The operator paused mining on the machine itself (agentd mining pause, the local API) until resumed there: a remote mining.resume never lifts it.",
  "agent.paused_remotely":
    "An owner-allowed mining.pause command paused mining until a mining.resume command or the owner's next consent lifts it (a resume on the machine lifts only the machine's own pause).",
  // an owner-key rotation refused (policy-guard/rotation.ts): single-use and in order, so
  // that a rotation seen once can never hand control back to a key retired after it
  "rotation.replayed": "This owner-key rotation was accepted before: a rotation is single-use.",
  "rotation.stale":
    "The rotation's iat is not later than the last rotation accepted: an older rotation cannot undo a newer one.",
  "rotation.not_yet_valid": "The rotation's iat is more than 60 s in the future.",
} as const);

export type Reason = keyof typeof REASONS;

export function isReason(s: string): s is Reason {
  return Object.hasOwn(REASONS, s);
}
