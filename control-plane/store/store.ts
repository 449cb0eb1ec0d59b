/**
 * The control plane's one storage interface. Two implementations share every line of logic
 * (control-plane/store/sql/): SQLite through node:sqlite (the embedded default, one file) and
 * PostgreSQL through `pg` (several `agentd cp serve` processes on one database). Open one with
 * `openStore(url)` (control-plane/store/open.ts) and call `migrate()` before anything else.
 *
 * Conventions
 * - Every time is integer Unix seconds unless its name ends in `_ms`. Times are passed in by
 *   the caller (who holds the injected clock); the store's own clock stamps only the `at` of
 *   audit events and of the stream events it appends by itself.
 * - Field names are snake_case, as on the wire.
 * - Every mutating method is one transaction: atomic under concurrent requests and across
 *   server processes (unique constraints, conditional updates and row locks; never a read
 *   followed by a separate write).
 * - Mutating methods take `{ audit }`: the audit event(s) are appended to the hash-chained log
 *   in the same transaction, whenever the method returns normally (a returned refusal such as
 *   `{ ok: false }` included, so refused attempts can be audited with the reason). A thrown
 *   error writes nothing at all. Pass a function to build the event from the result (return
 *   null to append nothing).
 * - Expected refusals throw `AgentdError`s with the CP codes of docs/errors.md
 *   (AGENTD_E_CP_CONFLICT, AGENTD_E_CP_NOT_FOUND, AGENTD_E_CP_REPLAY, AGENTD_E_CP_FORBIDDEN) or
 *   come back as results where the caller needs the reason (tokens, challenges, heartbeats).
 *   Database failures throw AGENTD_E_STORE (message and context without secrets or values);
 *   a database migrated by a newer agentd throws AGENTD_E_STORE_SCHEMA_NEWER from migrate().
 */

export type Backend = "sqlite" | "postgres";

export type JsonValue =
  | null
  | boolean
  | number
  | string
  | readonly JsonValue[]
  | { readonly [key: string]: JsonValue };
export type JsonObject = { readonly [key: string]: JsonValue };

// ---------------------------------------------------------------------------------- audit

/** What the caller says about a state change; the store adds seq, at and the hashes. */
export interface AuditInput {
  /** Who: e.g. `apikey:<id>`, `worker:<id>`, `system`. */
  readonly actor: string;
  /** What happened, dotted: e.g. `owner.created`, `heartbeat.replay`. */
  readonly type: string;
  /** What it happened to: e.g. `worker:<id>`. */
  readonly object: string;
  /** Details; must have an RFC 8785 form (no NaN, no undefined members). Never secrets. */
  readonly data: JsonObject;
}

/**
 * One link of the chain. `hash` = sha256 hex of the RFC 8785 canonical JSON of the event
 * without `hash` (i.e. {seq, at, actor, type, object, data, prev_hash}); `prev_hash` of seq 1
 * is 64 zeros (control-plane/store/audit-hash.ts).
 */
export interface AuditEvent extends AuditInput {
  readonly seq: number;
  readonly at: number;
  readonly prev_hash: string;
  readonly hash: string;
}

export type AuditOption<R> =
  | AuditInput
  | readonly AuditInput[]
  | ((result: R) => AuditInput | readonly AuditInput[] | null);

/** The options every mutating method takes. */
export interface WriteOptions<R> {
  readonly audit?: AuditOption<R>;
}

export interface AuditQuery {
  /** Events with seq > after_seq (default 0: from the start). */
  readonly after_seq?: number;
  /** 1..1000, default 100; larger values are clamped to 1000. */
  readonly limit?: number;
  readonly type?: string;
  readonly object?: string;
  readonly actor?: string;
}

export type AuditVerifyResult =
  | {
      readonly ok: true;
      readonly count: number;
      readonly head: { readonly seq: number; readonly hash: string } | null;
    }
  | {
      readonly ok: false;
      readonly count: number;
      /** The first seq that does not verify (for a gap: the seq that was expected). */
      readonly seq: number;
      readonly reason: "hash" | "prev_hash" | "seq_gap";
    };

// -------------------------------------------------------------------- identities and keys

export type Role = "admin" | "operator" | "owner" | "auditor";

export interface ApiKey {
  readonly id: string;
  readonly role: Role;
  /** Set exactly when role is `owner`. */
  readonly owner_id: string | null;
  /** sha256 hex of the whole key string; the key itself is never stored. */
  readonly key_sha256: string;
  readonly created_at: number;
  /** The id of the API key that created it; null for the first admin (`agentd cp init`). */
  readonly created_by: string | null;
}

/** A key as `revokeApiKey` left it: revoked for good (the row stays, so it is never reused). */
export interface RevokedApiKey extends ApiKey {
  readonly revoked_at: number;
  /** The id of the API key that revoked it (null: not through the API). */
  readonly revoked_by: string | null;
}

export interface Owner {
  /** RFC 7638 thumbprint of `jwk`. */
  readonly id: string;
  readonly jwk: JsonObject;
  readonly created_at: number;
}

export interface EnrollmentToken {
  readonly id: string;
  readonly owner_id: string;
  readonly secret_sha256: string;
  readonly created_at: number;
  readonly expires_at: number;
}

/** Why a single-use secret (enrollment token, attestation challenge) was refused. */
export type SingleUseRefusal = "unknown" | "expired" | "used" | "mismatch";

export type ConsumeTokenResult =
  | { readonly ok: true; readonly owner_id: string }
  | { readonly ok: false; readonly reason: SingleUseRefusal };

// ----------------------------------------------------------------------------- workers

export interface NewWorker {
  /** RFC 7638 thumbprint of `jwk` (the machine key). */
  readonly worker_id: string;
  readonly owner_id: string;
  readonly jwk: JsonObject;
  readonly facts: JsonObject;
  /** Default "default". */
  readonly cohort?: string;
  readonly registered_at: number;
}

export type AttestationVerdict = "ok" | "clone" | "unknown_binary";

export interface Quarantine {
  readonly reason: string;
  readonly at: number;
}

export interface LiftedQuarantine {
  /** The worker as it is now (not quarantined). */
  readonly worker: Worker;
  /** The quarantine that was lifted. */
  readonly lifted: Quarantine;
}

export interface Worker {
  readonly worker_id: string;
  readonly owner_id: string;
  readonly jwk: JsonObject;
  readonly facts: JsonObject;
  readonly cohort: string;
  readonly registered_at: number;
  readonly quarantine: Quarantine | null;
  /** The first machine-id hash attested with this key: later different ones are clones. */
  readonly machine_id_sha256: string | null;
  /** The latest attestation, whatever its verdict. */
  readonly attestation: Attestation | null;
  /** Highest heartbeat counter stored (0: none yet) and when it was received. */
  readonly last_counter: number;
  readonly last_seen: number | null;
  /** Highest consent seq accepted, null before the first. */
  readonly consent_seq: number | null;
  /** Version of the latest stored publication, null before the first. */
  readonly publication_version: number | null;
  /** Id of the latest stream event (0: none). */
  readonly last_event_id: number;
  readonly decommissioned_at: number | null;
}

export interface WorkerQuery {
  readonly owner_id?: string;
  readonly cohort?: string;
  /** Cursor: workers with worker_id > after, in worker_id order. */
  readonly after?: string;
  /** 1..10000, default 1000. */
  readonly limit?: number;
}

export interface AttestationInput {
  readonly worker_id: string;
  readonly machine_id_sha256: string;
  readonly binary_sha256: string;
  /** False when an allowlist of agent binaries is configured and this hash is not on it. */
  readonly binary_allowed: boolean;
  readonly at: number;
}

export interface Attestation {
  readonly machine_id_sha256: string;
  readonly binary_sha256: string;
  /**
   * Decided by the store atomically with the first-seen machine id: `clone` when the worker's
   * first machine id differs (the API then quarantines), else `unknown_binary` when not
   * allowed, else `ok`.
   */
  readonly verdict: AttestationVerdict;
  readonly at: number;
}

export interface AttestationResult extends Attestation {
  readonly worker_id: string;
  /** The machine id first seen for this worker (equal to the input unless a clone). */
  readonly expected_machine_id_sha256: string;
}

export interface EnrollInput {
  readonly token_id: string;
  readonly secret_sha256: string;
  readonly now: number;
  readonly worker: Omit<NewWorker, "owner_id">;
  /**
   * The owner the machine is pinned to (its thumbprint): a token of another owner is refused
   * as `owner_mismatch` before it is consumed — nothing registered, the token still usable.
   */
  readonly expect_owner?: string;
}

export type EnrollResult =
  | { readonly ok: true; readonly worker: Worker }
  | { readonly ok: false; readonly reason: SingleUseRefusal | "owner_mismatch" };

// ------------------------------------------------------------------ machine authentication

export interface AttestationChallenge {
  readonly nonce: string;
  /** The worker the challenge was issued to, or null if issued before the worker said who. */
  readonly worker_id: string | null;
  readonly expires_at: number;
}

export type ConsumeChallengeResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: SingleUseRefusal };

export interface AccessToken {
  /** sha256 hex of the token string. */
  readonly token_sha256: string;
  readonly worker_id: string;
  readonly expires_at: number;
}

export interface PurgeCounts {
  readonly jtis: number;
  readonly challenges: number;
  readonly access_tokens: number;
}

// --------------------------------------------------------------------- consent and policy

export interface Consent {
  /** The consent JWS's identity (documentIdentity, sha256 hex). */
  readonly identity: string;
  readonly worker_id: string;
  readonly owner_id: string;
  readonly seq: number;
  readonly jws: string;
  readonly exp: number;
  readonly accepted_at: number;
}

export interface Publication {
  readonly worker_id: string;
  /**
   * max(previous + 1, now_ms) per worker and consent: never goes down within a consent, even
   * after a restore; a newer consent starts afresh (DOCUMENTS.md section 4).
   */
  readonly version: number;
  /** The consent it countersigns; null for a stop publication with no consent. */
  readonly consent_identity: string | null;
  readonly jws: string;
  readonly iat: number;
  readonly exp: number;
  readonly stop: boolean;
}

export interface PublishInput {
  readonly worker_id: string;
  readonly consent_identity: string | null;
  readonly iat: number;
  readonly exp: number;
  readonly stop: boolean;
  /** The clock in milliseconds: the version floor. */
  readonly now_ms: number;
  /**
   * Compare-and-set: publish only if the worker's latest publication is still this version
   * (null: none yet), else CONFLICT with reason `stale_plan`, nothing stored. A plan made
   * from the worker's state (stop or not) is then never committed over a newer publication.
   */
  readonly expect_version?: number | null;
  /**
   * Compare-and-set on the consent too: publish only if `consent_identity` is still the
   * worker's latest accepted consent (the one with its highest seq), else CONFLICT with reason
   * `stale_plan`. A plan that read the consent before a newer one was accepted can then never
   * countersign the older consent over it.
   */
  readonly expect_latest_consent?: boolean;
}

/** What `acceptConsentAndPublish` stored: the consent, its publication and its event. */
export interface ConsentPublished {
  readonly consent: Consent;
  readonly publication: Publication;
  readonly event: StreamEvent;
}

export type RevocationKind = "revocation" | "decommission";

export interface RevocationInput {
  readonly worker_id: string;
  readonly kind: RevocationKind;
  readonly through_seq: number | null;
  readonly jws: string;
  readonly at: number;
}

export interface Revocation extends RevocationInput {
  /** Store-assigned, increasing. */
  readonly id: number;
}

// ------------------------------------------------------------------- owner-key rotations

export interface OwnerRotationInput {
  readonly worker_id: string;
  /** The rotation JWS's identity (documentIdentity, sha256 hex). */
  readonly identity: string;
  /** The key that signed it: the worker's owner key in force until now (thumbprint). */
  readonly from_owner: string;
  /** The new key's thumbprint. */
  readonly to_owner: string;
  /** The new key, as the document names it (an Ed25519 public JWK). */
  readonly new_owner_jwk: JsonObject;
  readonly iat: number;
  readonly jws: string;
  readonly at: number;
}

export interface OwnerRotation extends OwnerRotationInput {
  /** Store-assigned, increasing. */
  readonly id: number;
}

// ---------------------------------------------------------------------------- heartbeats

export interface HeartbeatInput {
  readonly worker_id: string;
  readonly counter: number;
  readonly iat: number;
  readonly received_at: number;
  readonly jws: string;
  /** Anomaly flags the API computed (gap, skew, telemetry…). */
  readonly flags: readonly string[];
}

export type Heartbeat = HeartbeatInput;

export type HeartbeatResult =
  /** Stored; `previous_counter` is the counter before it (null: the worker's first). */
  | { readonly status: "accepted"; readonly previous_counter: number | null }
  /** counter ≤ the last stored one (`last_counter`); nothing stored. */
  | { readonly status: "replay"; readonly last_counter: number }
  | { readonly status: "unknown_worker" };

// ------------------------------------------------------------------------------ commands

export type CommandStatus = "done" | "refused" | "failed";

export interface CommandInput {
  readonly cmd_id: string;
  readonly worker_id: string;
  readonly action: string;
  readonly args: JsonObject;
  readonly jws: string;
  readonly iat: number;
  readonly exp: number;
  /** Increasing per worker and consent (its `consent_identity`). */
  readonly seq: number;
  /** The consent the command was issued under; null for commands from before issue 15. */
  readonly consent_identity: string | null;
}

export interface CommandResult {
  readonly status: CommandStatus;
  readonly jws: string;
  readonly at: number;
}

export interface Command extends CommandInput {
  /** Null while pending. */
  readonly result: CommandResult | null;
}

export interface IssueCommandInput {
  readonly cmd_id: string;
  readonly worker_id: string;
  readonly action: string;
  readonly args: JsonObject;
  readonly iat: number;
  readonly exp: number;
  readonly now_ms: number;
  /** The consent in force it is issued under: must still be the worker's latest. */
  readonly consent_identity: string;
}

export interface CommandResultInput {
  readonly cmd_id: string;
  readonly worker_id: string;
  readonly status: CommandStatus;
  readonly jws: string;
  readonly at: number;
}

// ------------------------------------------------------------------------------ the stream

export type StreamKind =
  | "command"
  | "publication"
  | "revocation"
  | "decommission"
  | "owner_rotation";

export interface StreamEventInput {
  readonly worker_id: string;
  readonly kind: StreamKind;
  /** What to fetch: cmd_id, publication version, revocation or rotation id (as a string). */
  readonly ref: string;
  readonly at: number;
}

export interface StreamEvent extends StreamEventInput {
  /** Per worker: 1, 2, 3… without gaps, in commit order (the resume cursor). */
  readonly id: number;
}

export interface StreamSubscription {
  /** Called for every stream event committed after the subscription started. */
  readonly onEvent: (event: StreamEvent) => void;
  /**
   * Called when events may have been missed (the PostgreSQL LISTEN connection was lost and
   * is back): re-read with streamEventsSince for the streams you serve.
   */
  readonly onResync?: () => void;
}

/** Stops the subscription. */
export type Unsubscribe = () => Promise<void>;

// ------------------------------------------------------------------------ emergency stop

export type EmergencyStopScope = { readonly all: true } | { readonly cohort: string };

export interface EmergencyStopInput {
  readonly id: string;
  readonly scope: EmergencyStopScope;
  /** API key id of the requester. */
  readonly requested_by: string;
  readonly at: number;
}

export interface EmergencyStopApproval {
  readonly approver_key_id: string;
  readonly at: number;
}

/**
 * Who publishes an executed stop's `stop` publications now: an instance id, and until when
 * (Unix seconds) the claim holds unless renewed. A lease: an instance that dies while it
 * publishes leaves a claim that others may take over once `until` has passed.
 */
export interface EmergencyStopClaim {
  readonly by: string;
  readonly until: number;
}

export interface EmergencyStop extends EmergencyStopInput {
  /** Distinct approvers by approval time (the API decides whether the requester counts). */
  readonly approvals: readonly EmergencyStopApproval[];
  readonly executed_at: number | null;
  /** When every worker in scope had been handled (`completeEmergencyStop`); null before. */
  readonly completed_at: number | null;
  /** The claim on publishing its stops (null: none yet, or none since it completed). */
  readonly claim: EmergencyStopClaim | null;
}

// ------------------------------------------------------------------------------ key sets

export interface KeySetRecord {
  readonly seq: number;
  readonly jws: string;
  readonly stored_at: number;
}

// -------------------------------------------------------------------------------- store

export interface MigrateResult {
  readonly from: number;
  readonly to: number;
}

export interface Store {
  readonly backend: Backend;

  // lifecycle
  /**
   * Applies the missing migrations, each once, under a lock (two processes starting at once
   * do not race). Throws AGENTD_E_STORE_SCHEMA_NEWER if the database is newer than this code.
   */
  migrate(): Promise<MigrateResult>;
  /** One trivial query (for /readyz). */
  ping(): Promise<void>;
  /** Waits for in-flight group commits, stops listeners, closes connections. */
  close(): Promise<void>;

  // API keys
  /**
   * CONFLICT if the id or hash exists (a revoked key's included); NOT_FOUND if an owner key
   * names an unknown owner.
   */
  createApiKey(key: ApiKey, options?: WriteOptions<ApiKey>): Promise<ApiKey>;
  /** The key with this hash, unless it was revoked. */
  findApiKeyBySha256(key_sha256: string): Promise<ApiKey | null>;
  /** Keys not revoked: all, or those of one role (is there a first admin?). */
  countApiKeys(role?: Role): Promise<number>;
  /**
   * Revokes a key for good: from this commit on `findApiKeyBySha256` no longer finds it (on
   * every instance: nothing caches keys). The row stays, so its id and hash can never be
   * created again, and nothing un-revokes it. NOT_FOUND for an unknown id; CONFLICT with
   * reason `revoked` when revoked already, `last_admin` for the last admin key not revoked
   * (decided under a lock: two revocations racing cannot leave no admin).
   */
  revokeApiKey(
    id: string,
    revoked_by: string | null,
    at: number,
    options?: WriteOptions<RevokedApiKey>,
  ): Promise<RevokedApiKey>;

  // owners
  /** CONFLICT if the id exists. */
  createOwner(owner: Owner, options?: WriteOptions<Owner>): Promise<Owner>;
  getOwner(id: string): Promise<Owner | null>;

  // enrollment
  /** NOT_FOUND for an unknown owner, CONFLICT for an existing id. */
  createEnrollmentToken(
    token: EnrollmentToken,
    options?: WriteOptions<EnrollmentToken>,
  ): Promise<EnrollmentToken>;
  /**
   * Single use: of concurrent consumers exactly one gets `ok`. Refusal reasons, in order:
   * unknown id, mismatch (wrong secret; the token stays usable), used, expired (now ≥ expires_at).
   */
  consumeEnrollmentToken(
    id: string,
    secret_sha256: string,
    now: number,
    options?: WriteOptions<ConsumeTokenResult>,
  ): Promise<ConsumeTokenResult>;
  /**
   * consumeEnrollmentToken + registerWorker (owner from the token) in one transaction:
   * a refused token registers nothing; an existing worker (CONFLICT, thrown) burns no token.
   */
  enrollWorker(input: EnrollInput, options?: WriteOptions<EnrollResult>): Promise<EnrollResult>;

  // workers
  /** CONFLICT if the worker exists; NOT_FOUND for an unknown owner. */
  registerWorker(worker: NewWorker, options?: WriteOptions<Worker>): Promise<Worker>;
  getWorker(worker_id: string): Promise<Worker | null>;
  /** In worker_id order; filters combine. */
  listWorkers(query?: WorkerQuery): Promise<Worker[]>;
  /** Sets (or with null lifts) the quarantine. NOT_FOUND for an unknown worker. */
  setQuarantine(
    worker_id: string,
    quarantine: Quarantine | null,
    options?: WriteOptions<Worker>,
  ): Promise<Worker>;
  /**
   * Lifts the quarantine only if there is one, under the worker's lock (of two lifts racing,
   * one lifts and the other is refused). NOT_FOUND; CONFLICT with reason `not_quarantined`,
   * or `decommissioned` (a decommissioned worker stays as it ended).
   */
  liftQuarantine(
    worker_id: string,
    options?: WriteOptions<LiftedQuarantine>,
  ): Promise<LiftedQuarantine>;
  /** Keeps the first machine id, decides the verdict (see Attestation). NOT_FOUND. */
  recordAttestation(
    input: AttestationInput,
    options?: WriteOptions<AttestationResult>,
  ): Promise<AttestationResult>;

  // machine authentication
  /** CONFLICT if the nonce exists. */
  createAttestationChallenge(
    challenge: AttestationChallenge,
    options?: WriteOptions<AttestationChallenge>,
  ): Promise<AttestationChallenge>;
  /**
   * Single use, atomically. `mismatch`: issued to another worker (the challenge stays usable).
   */
  consumeAttestationChallenge(
    nonce: string,
    worker_id: string,
    now: number,
    options?: WriteOptions<ConsumeChallengeResult>,
  ): Promise<ConsumeChallengeResult>;
  /** CONFLICT if the hash exists; NOT_FOUND for an unknown worker. */
  createAccessToken(token: AccessToken, options?: WriteOptions<AccessToken>): Promise<AccessToken>;
  /** The token if it exists and now < expires_at, else null. */
  findAccessToken(token_sha256: string, now: number): Promise<AccessToken | null>;
  /**
   * findAccessToken and the worker it was issued to, in one query: what authenticates every
   * machine call (one round trip instead of two). Null if either is missing.
   */
  findAccessTokenWorker(
    token_sha256: string,
    now: number,
  ): Promise<{ readonly token: AccessToken; readonly worker: Worker } | null>;
  /** Deletes every access token of a worker (quarantine, key rotation); returns how many. */
  deleteAccessTokens(worker_id: string, options?: WriteOptions<number>): Promise<number>;
  /**
   * The request-proof replay cache: true the first time a jti is seen (kept until expires_at),
   * false after. Atomic (unique insert). Expired entries are purged here now and then and by
   * purgeExpired.
   */
  useJti(jti: string, worker_id: string, expires_at: number, now: number): Promise<boolean>;
  /** Deletes expired jtis, challenges and access tokens (expires_at ≤ now). */
  purgeExpired(now: number): Promise<PurgeCounts>;

  // consents
  /**
   * Decided under the worker's lock, against what is stored at that moment (never against
   * what the caller read before): seq must be strictly greater than the worker's highest
   * (else CONFLICT with reason `seq`; also for an existing identity) and not covered by a
   * stored revocation (CONFLICT, reason `revoked`); NOT_FOUND for an unknown worker;
   * FORBIDDEN if owner_id is not the worker's owner or the worker is decommissioned.
   */
  acceptConsent(consent: Consent, options?: WriteOptions<Consent>): Promise<Consent>;
  /**
   * acceptConsent and the publication that countersigns this very consent in one
   * transaction (publish's compare-and-set included: `input.expect_version`), so the
   * consent is stored only together with its own publication, and no other consent or
   * publication can come between the two. Refusals as acceptConsent and publish; nothing is
   * stored when either refuses.
   */
  acceptConsentAndPublish(
    consent: Consent,
    input: Omit<PublishInput, "worker_id" | "consent_identity" | "expect_latest_consent">,
    build: (version: number) => string,
    options?: WriteOptions<ConsentPublished>,
  ): Promise<ConsentPublished>;
  getConsent(identity: string): Promise<Consent | null>;
  /** The worker's consent with the highest seq. */
  latestConsent(worker_id: string): Promise<Consent | null>;

  // publications
  /**
   * Allocates, signs (`build(version)` must be synchronous and return the JWS) and stores a
   * publication in one transaction, and appends its `publication` stream event.
   */
  publish(
    input: PublishInput,
    build: (version: number) => string,
    options?: WriteOptions<{ publication: Publication; event: StreamEvent }>,
  ): Promise<{ publication: Publication; event: StreamEvent }>;
  /**
   * The two halves of publish, for signing outside the transaction: max(last + 1, now_ms)
   * within the consent the counter counts for, max(1, now_ms) for another consent (the
   * counter then counts for it); CONFLICT with reason `counter_exhausted` past 2^53 − 1.
   */
  allocateVersion(
    worker_id: string,
    consent_identity: string | null,
    now_ms: number,
    options?: WriteOptions<number>,
  ): Promise<number>;
  /**
   * CONFLICT if (worker_id, version) exists. Appends the `publication` stream event. The
   * latest pointer moves to it if it is of a newer consent (by seq; whatever its version), or
   * of the same one and higher; the version counter likewise (sql/ops/allocate.ts).
   */
  storePublication(
    publication: Publication,
    options?: WriteOptions<{ publication: Publication; event: StreamEvent }>,
  ): Promise<{ publication: Publication; event: StreamEvent }>;
  latestPublication(worker_id: string): Promise<Publication | null>;
  /**
   * Latest publications with exp < before (the re-issue queue), soonest first (then by worker
   * id); decommissioned workers are left out. limit default 1000, at most 10000. `after`: the
   * last one of the previous page (its exp and worker id), to page past entries that cannot
   * be re-issued.
   */
  listPublicationsExpiringBefore(
    before: number,
    limit?: number,
    after?: { readonly exp: number; readonly worker_id: string },
  ): Promise<Publication[]>;

  // revocations and decommissions
  /**
   * Stores it, marks the worker decommissioned for kind `decommission`, and appends the stream
   * event of the same kind. NOT_FOUND for an unknown worker; CONFLICT (reason `duplicate`)
   * for a document already stored, decided under the worker's lock.
   */
  storeRevocation(
    revocation: RevocationInput,
    options?: WriteOptions<{ revocation: Revocation; event: StreamEvent }>,
  ): Promise<{ revocation: Revocation; event: StreamEvent }>;
  listRevocations(worker_id: string): Promise<Revocation[]>;

  // owner-key rotations
  /**
   * Stores it and appends its `owner_rotation` stream event, deciding again under the
   * worker's lock what the caller checked before: `from_owner` must be the worker's owner key
   * in force — the last stored rotation's `to_owner`, else the worker's owner id (CONFLICT,
   * reason `owner_changed`); `iat` must be later than the last rotation's (CONFLICT, reason
   * `stale`); the identity must be new (CONFLICT, reason `duplicate`). NOT_FOUND for an
   * unknown worker; FORBIDDEN for a decommissioned one.
   */
  storeOwnerRotation(
    rotation: OwnerRotationInput,
    options?: WriteOptions<{ rotation: OwnerRotation; event: StreamEvent }>,
  ): Promise<{ rotation: OwnerRotation; event: StreamEvent }>;
  /** The worker's rotations, oldest first. */
  listOwnerRotations(worker_id: string): Promise<OwnerRotation[]>;

  // heartbeats
  /**
   * One transaction for the whole batch (group commit). Items are applied in order: each is
   * accepted only if its counter is greater than the worker's last stored counter (an earlier
   * item of the same batch included). Results are in input order.
   */
  recordHeartbeats(
    batch: readonly HeartbeatInput[],
    options?: WriteOptions<HeartbeatResult[]>,
  ): Promise<HeartbeatResult[]>;
  /**
   * One heartbeat; concurrent calls on this Store are committed together in batches, so many
   * concurrent callers cost few commits. The audit option sees this item's result.
   */
  recordHeartbeat(
    heartbeat: HeartbeatInput,
    options?: WriteOptions<HeartbeatResult>,
  ): Promise<HeartbeatResult>;
  /**
   * Deletes up to `limit` (default 10,000) heartbeats received before `before`, never a
   * worker's latest accepted one; how many were deleted (retention: api/maintenance.ts).
   */
  pruneHeartbeats(before: number, limit?: number): Promise<number>;
  /** Newest first; `before_counter` pages back. */
  listHeartbeats(
    worker_id: string,
    query?: { readonly before_counter?: number; readonly limit?: number },
  ): Promise<Heartbeat[]>;
  /** Deletes stored heartbeats received before `before` (retention); returns how many. */
  purgeHeartbeats(before: number): Promise<number>;

  // commands
  /**
   * Allocates the worker's next command seq for a consent, as allocateVersion allocates
   * versions: increasing per worker and consent, even after a restore; a newer consent starts
   * afresh. NOT_FOUND for an unknown worker; CONFLICT (`counter_exhausted`) past 2^53 − 1.
   */
  nextCommandSeq(
    worker_id: string,
    consent_identity: string | null,
    now_ms: number,
    options?: WriteOptions<number>,
  ): Promise<number>;
  /**
   * CONFLICT if cmd_id or (worker_id, seq) exists; NOT_FOUND for an unknown worker. Appends the
   * `command` stream event.
   */
  createCommand(
    command: CommandInput,
    options?: WriteOptions<{ command: Command; event: StreamEvent }>,
  ): Promise<{ command: Command; event: StreamEvent }>;
  /**
   * nextCommandSeq + sign (`build(seq)`, synchronous) + createCommand in one transaction,
   * under the worker's lock: CONFLICT with reason `stale_consent` when `consent_identity` is
   * not the worker's latest consent any more (nothing stored).
   */
  issueCommand(
    input: IssueCommandInput,
    build: (seq: number) => string,
    options?: WriteOptions<{ command: Command; event: StreamEvent }>,
  ): Promise<{ command: Command; event: StreamEvent }>;
  getCommand(cmd_id: string): Promise<Command | null>;
  /** No result yet and now < exp, in seq order. */
  listPendingCommands(worker_id: string, now: number): Promise<Command[]>;
  /** Once: a second result is AGENTD_E_CP_REPLAY; NOT_FOUND if no such command for the worker. */
  recordCommandResult(
    result: CommandResultInput,
    options?: WriteOptions<Command>,
  ): Promise<Command>;

  // push stream
  /** NOT_FOUND for an unknown worker. (publish, storeRevocation and commands append their own.) */
  appendStreamEvent(
    event: StreamEventInput,
    options?: WriteOptions<StreamEvent>,
  ): Promise<StreamEvent>;
  /** Events with id > after_id, in id order (limit default and maximum 1000). */
  streamEventsSince(worker_id: string, after_id: number, limit?: number): Promise<StreamEvent[]>;
  /**
   * Every stream event committed from now on, by any process on the same database (PostgreSQL:
   * LISTEN/NOTIFY; SQLite: this Store instance's own writes). Resolves once listening.
   */
  subscribe(subscription: StreamSubscription): Promise<Unsubscribe>;

  // emergency stop (two-person rule)
  /** CONFLICT if the id exists. */
  createEmergencyStop(
    request: EmergencyStopInput,
    options?: WriteOptions<EmergencyStop>,
  ): Promise<EmergencyStop>;
  /**
   * Adds one approver. CONFLICT if this approver already approved or the stop was executed;
   * NOT_FOUND for an unknown id.
   */
  approveEmergencyStop(
    id: string,
    approver_key_id: string,
    at: number,
    options?: WriteOptions<EmergencyStop>,
  ): Promise<EmergencyStop>;
  /**
   * Once: CONFLICT if already executed; NOT_FOUND for an unknown id. With `claim`, the
   * executing instance claims the publishing of its stops in the same transaction.
   */
  markEmergencyStopExecuted(
    id: string,
    at: number,
    options?: WriteOptions<EmergencyStop> & { readonly claim?: EmergencyStopClaim },
  ): Promise<EmergencyStop>;
  getEmergencyStop(id: string): Promise<EmergencyStop | null>;
  /**
   * Claims the publishing of an executed, not completed stop, or renews the caller's own
   * claim (same `by`): one conditional update, so of instances racing for it exactly one
   * gets it, and another's claim is taken over only once its `until` ≤ now. Null when it is
   * not executed, completed already, or claimed by another whose claim holds. NOT_FOUND.
   */
  claimEmergencyStop(
    id: string,
    claim: EmergencyStopClaim,
    now: number,
    options?: WriteOptions<EmergencyStop | null>,
  ): Promise<EmergencyStop | null>;
  /**
   * Records that every worker in scope was handled, once, by the holder of the claim `by`
   * (the claim ends). CONFLICT with reason `completed` when completed already, `not_claimed`
   * when the claim is another's (the caller lost it: the other finishes). NOT_FOUND.
   */
  completeEmergencyStop(
    id: string,
    by: string,
    at: number,
    options?: WriteOptions<EmergencyStop>,
  ): Promise<EmergencyStop>;
  /** Executed stops not completed yet, oldest execution first (at most `limit`, default 100). */
  listUnfinishedEmergencyStops(limit?: number): Promise<EmergencyStop[]>;

  // key sets
  /** seq must be greater than the current one (else CONFLICT). */
  storeKeySet(keySet: KeySetRecord, options?: WriteOptions<KeySetRecord>): Promise<KeySetRecord>;
  currentKeySet(): Promise<KeySetRecord | null>;

  // audit
  appendAudit(event: AuditInput): Promise<AuditEvent>;
  /** Cursor pagination in seq order; filters combine. */
  listAudit(query?: AuditQuery): Promise<AuditEvent[]>;
  /** Recomputes the whole chain. */
  verifyAudit(): Promise<AuditVerifyResult>;
}
