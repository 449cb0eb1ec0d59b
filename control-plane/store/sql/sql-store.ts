import type { Clock } from "../../../lib/clock.ts";
import { fail } from "../../../lib/errors.ts";
import type {
  AccessToken,
  ApiKey,
  AttestationChallenge,
  AttestationInput,
  AttestationResult,
  AuditEvent,
  AuditInput,
  AuditOption,
  AuditQuery,
  AuditVerifyResult,
  Backend,
  Command,
  CommandInput,
  CommandResultInput,
  Consent,
  ConsentPublished,
  ConsumeChallengeResult,
  ConsumeTokenResult,
  EmergencyStop,
  EmergencyStopClaim,
  EmergencyStopInput,
  EnrollInput,
  EnrollmentToken,
  EnrollResult,
  Heartbeat,
  HeartbeatInput,
  HeartbeatResult,
  IssueCommandInput,
  KeySetRecord,
  LiftedQuarantine,
  MigrateResult,
  NewWorker,
  Owner,
  OwnerRotation,
  OwnerRotationInput,
  Publication,
  PublishInput,
  PurgeCounts,
  Quarantine,
  Revocation,
  RevocationInput,
  RevokedApiKey,
  Role,
  Store,
  StreamEvent,
  StreamEventInput,
  StreamSubscription,
  Unsubscribe,
  Worker,
  WorkerQuery,
  WriteOptions,
} from "../store.ts";
import type { BatchSettings, Driver } from "./driver.ts";
import { GroupCommit } from "./group-commit.ts";
import { migrateOp } from "./migrations.ts";
import { all, type Op, type OpContext } from "./op.ts";
import { allocateOp } from "./ops/allocate.ts";
import { appendAuditOp, listAuditOp, verifyAuditOp } from "./ops/audit.ts";
import * as auth from "./ops/auth.ts";
import * as commands from "./ops/commands.ts";
import * as estop from "./ops/estop.ts";
import * as heartbeats from "./ops/heartbeats.ts";
import * as identity from "./ops/identity.ts";
import { currentKeySetOp, storeKeySetOp } from "./ops/keysets.ts";
import * as rotations from "./ops/owner-rotations.ts";
import * as policy from "./ops/policy.ts";
import { appendStreamEventOp, STREAM_PAGE_MAX, streamEventsSinceOp } from "./ops/stream.ts";
import * as workers from "./ops/workers.ts";

/** How often a batch of useJti also purges expired entries (1 batch in N). */
const JTI_PURGE_EVERY = 256;

function auditInputs<R>(option: AuditOption<R> | undefined, result: R): readonly AuditInput[] {
  if (option === undefined) return [];
  const v = typeof option === "function" ? option(result) : option;
  if (v === null) return [];
  return isList(v) ? v : [v];
}

function isList(v: AuditInput | readonly AuditInput[]): v is readonly AuditInput[] {
  return Array.isArray(v);
}

/** The operation, then its audit events, in one transaction. */
function* audited<R>(ctx: OpContext, op: Op<R>, option: AuditOption<R> | undefined): Op<R> {
  const result = yield* op;
  yield* appendAuditOp(ctx, auditInputs(option, result));
  return result;
}

interface QueuedJti {
  readonly jti: string;
  readonly workerId: string;
  readonly expiresAt: number;
  readonly now: number;
}

interface QueuedHeartbeat {
  readonly heartbeat: HeartbeatInput;
  readonly audit: AuditOption<HeartbeatResult> | undefined;
}

/** The Store over a Driver: every method is one operation of ./ops run as one transaction. */
export class SqlStore implements Store {
  readonly backend: Backend;
  readonly #driver: Driver;
  readonly #ctx: OpContext;
  readonly #heartbeats: GroupCommit<QueuedHeartbeat, HeartbeatResult>;
  readonly #jtis: GroupCommit<QueuedJti, boolean>;
  #jtiBatches = 0;
  #closed = false;

  constructor(driver: Driver, clock: Clock, batch: BatchSettings) {
    this.#driver = driver;
    this.backend = driver.dialect;
    this.#ctx = {
      dialect: driver.dialect,
      nowSeconds: () => Math.floor(clock.now() / 1000),
    };
    this.#heartbeats = new GroupCommit(
      (items) => this.#commitHeartbeats(items),
      batch.maxBatch,
      batch.maxInFlight,
    );
    // Every machine request inserts its proof's jti: one transaction (one fsync) each would
    // make the cache, not the signature checks, the limit on requests per second.
    this.#jtis = new GroupCommit(
      (items) => this.#commitJtis(items),
      batch.maxBatch,
      batch.maxInFlight,
    );
  }

  #write<R>(op: () => Op<R>, options: WriteOptions<R> | undefined): Promise<R> {
    if (this.#closed) return Promise.reject(fail("AGENTD_E_STORE", "the store is closed"));
    return this.#driver.transact(() => audited(this.#ctx, op(), options?.audit), "write");
  }

  #read<R>(op: () => Op<R>): Promise<R> {
    if (this.#closed) return Promise.reject(fail("AGENTD_E_STORE", "the store is closed"));
    return this.#driver.transact(op, "read");
  }

  // lifecycle

  migrate(): Promise<MigrateResult> {
    return this.#write(() => migrateOp(this.#ctx.dialect, this.#ctx.nowSeconds()), undefined);
  }

  async ping(): Promise<void> {
    await this.#read(() => all("SELECT 1 AS one"));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await Promise.all([this.#heartbeats.drain(), this.#jtis.drain()]);
    this.#closed = true;
    await this.#driver.close();
  }

  // API keys and owners

  createApiKey(key: ApiKey, options?: WriteOptions<ApiKey>): Promise<ApiKey> {
    return this.#write(() => identity.createApiKeyOp(key), options);
  }

  findApiKeyBySha256(keySha256: string): Promise<ApiKey | null> {
    return this.#read(() => identity.findApiKeyOp(keySha256));
  }

  countApiKeys(role?: Role): Promise<number> {
    return this.#read(() => identity.countApiKeysOp(role));
  }

  revokeApiKey(
    id: string,
    revokedBy: string | null,
    at: number,
    options?: WriteOptions<RevokedApiKey>,
  ): Promise<RevokedApiKey> {
    return this.#write(() => identity.revokeApiKeyOp(id, revokedBy, at), options);
  }

  createOwner(owner: Owner, options?: WriteOptions<Owner>): Promise<Owner> {
    return this.#write(() => identity.createOwnerOp(owner), options);
  }

  getOwner(id: string): Promise<Owner | null> {
    return this.#read(() => identity.getOwnerOp(id));
  }

  // enrollment and workers

  createEnrollmentToken(
    token: EnrollmentToken,
    options?: WriteOptions<EnrollmentToken>,
  ): Promise<EnrollmentToken> {
    return this.#write(() => identity.createEnrollmentTokenOp(token), options);
  }

  consumeEnrollmentToken(
    id: string,
    secretSha256: string,
    now: number,
    options?: WriteOptions<ConsumeTokenResult>,
  ): Promise<ConsumeTokenResult> {
    return this.#write(() => identity.consumeEnrollmentTokenOp(id, secretSha256, now), options);
  }

  enrollWorker(input: EnrollInput, options?: WriteOptions<EnrollResult>): Promise<EnrollResult> {
    return this.#write(() => workers.enrollWorkerOp(input), options);
  }

  registerWorker(worker: NewWorker, options?: WriteOptions<Worker>): Promise<Worker> {
    return this.#write(() => workers.registerWorkerOp(worker), options);
  }

  getWorker(workerId: string): Promise<Worker | null> {
    return this.#read(() => workers.getWorkerOp(workerId));
  }

  listWorkers(query: WorkerQuery = {}): Promise<Worker[]> {
    return this.#read(() => workers.listWorkersOp(query));
  }

  setQuarantine(
    workerId: string,
    quarantine: Quarantine | null,
    options?: WriteOptions<Worker>,
  ): Promise<Worker> {
    return this.#write(() => workers.setQuarantineOp(workerId, quarantine), options);
  }

  liftQuarantine(
    workerId: string,
    options?: WriteOptions<LiftedQuarantine>,
  ): Promise<LiftedQuarantine> {
    return this.#write(() => workers.liftQuarantineOp(this.#ctx, workerId), options);
  }

  recordAttestation(
    input: AttestationInput,
    options?: WriteOptions<AttestationResult>,
  ): Promise<AttestationResult> {
    return this.#write(() => workers.recordAttestationOp(input), options);
  }

  // machine authentication

  createAttestationChallenge(
    challenge: AttestationChallenge,
    options?: WriteOptions<AttestationChallenge>,
  ): Promise<AttestationChallenge> {
    return this.#write(() => auth.createChallengeOp(challenge), options);
  }

  consumeAttestationChallenge(
    nonce: string,
    workerId: string,
    now: number,
    options?: WriteOptions<ConsumeChallengeResult>,
  ): Promise<ConsumeChallengeResult> {
    return this.#write(() => auth.consumeChallengeOp(nonce, workerId, now), options);
  }

  createAccessToken(token: AccessToken, options?: WriteOptions<AccessToken>): Promise<AccessToken> {
    return this.#write(() => auth.createAccessTokenOp(token), options);
  }

  findAccessToken(tokenSha256: string, now: number): Promise<AccessToken | null> {
    return this.#read(() => auth.findAccessTokenOp(tokenSha256, now));
  }

  findAccessTokenWorker(
    tokenSha256: string,
    now: number,
  ): Promise<{ readonly token: AccessToken; readonly worker: Worker } | null> {
    return this.#read(() => auth.findAccessTokenWorkerOp(tokenSha256, now));
  }

  deleteAccessTokens(workerId: string, options?: WriteOptions<number>): Promise<number> {
    return this.#write(() => auth.deleteAccessTokensOp(workerId), options);
  }

  useJti(jti: string, workerId: string, expiresAt: number, now: number): Promise<boolean> {
    if (this.#closed) return Promise.reject(fail("AGENTD_E_STORE", "the store is closed"));
    return this.#jtis.submit({ jti, workerId, expiresAt, now });
  }

  #commitJtis(items: QueuedJti[]): Promise<boolean[]> {
    this.#jtiBatches = (this.#jtiBatches + 1) % JTI_PURGE_EVERY;
    const purgeBefore = this.#jtiBatches === 0 ? (items[0]?.now ?? null) : null;
    return this.#write(() => auth.useJtisOp(items, purgeBefore), undefined);
  }

  purgeExpired(now: number): Promise<PurgeCounts> {
    return this.#write(() => auth.purgeExpiredOp(now), undefined);
  }

  // consents, publications, revocations

  acceptConsent(consent: Consent, options?: WriteOptions<Consent>): Promise<Consent> {
    return this.#write(() => policy.acceptConsentOp(this.#ctx, consent), options);
  }

  acceptConsentAndPublish(
    consent: Consent,
    input: Omit<PublishInput, "worker_id" | "consent_identity" | "expect_latest_consent">,
    build: (version: number) => string,
    options?: WriteOptions<ConsentPublished>,
  ): Promise<ConsentPublished> {
    return this.#write(
      () => policy.acceptConsentAndPublishOp(this.#ctx, consent, input, build),
      options,
    );
  }

  getConsent(identityHash: string): Promise<Consent | null> {
    return this.#read(() => policy.getConsentOp(identityHash));
  }

  latestConsent(workerId: string): Promise<Consent | null> {
    return this.#read(() => policy.latestConsentOp(workerId));
  }

  publish(
    input: PublishInput,
    build: (version: number) => string,
    options?: WriteOptions<policy.Published>,
  ): Promise<policy.Published> {
    return this.#write(() => policy.publishOp(this.#ctx, input, build), options);
  }

  allocateVersion(
    workerId: string,
    consentIdentity: string | null,
    nowMs: number,
    options?: WriteOptions<number>,
  ): Promise<number> {
    return this.#write(() => allocateOp("last_version", workerId, consentIdentity, nowMs), options);
  }

  storePublication(
    publication: Publication,
    options?: WriteOptions<policy.Published>,
  ): Promise<policy.Published> {
    return this.#write(() => policy.storePublicationOp(this.#ctx, publication), options);
  }

  latestPublication(workerId: string): Promise<Publication | null> {
    return this.#read(() => policy.latestPublicationOp(workerId));
  }

  listPublicationsExpiringBefore(
    before: number,
    limit = 1000,
    after?: { readonly exp: number; readonly worker_id: string },
  ): Promise<Publication[]> {
    return this.#read(() => policy.publicationsExpiringOp(before, limit, after));
  }

  storeRevocation(
    revocation: RevocationInput,
    options?: WriteOptions<policy.Revoked>,
  ): Promise<policy.Revoked> {
    return this.#write(() => policy.storeRevocationOp(this.#ctx, revocation), options);
  }

  listRevocations(workerId: string): Promise<Revocation[]> {
    return this.#read(() => policy.listRevocationsOp(workerId));
  }

  // owner-key rotations

  storeOwnerRotation(
    rotation: OwnerRotationInput,
    options?: WriteOptions<rotations.Rotated>,
  ): Promise<rotations.Rotated> {
    return this.#write(() => rotations.storeOwnerRotationOp(this.#ctx, rotation), options);
  }

  listOwnerRotations(workerId: string): Promise<OwnerRotation[]> {
    return this.#read(() => rotations.listOwnerRotationsOp(workerId));
  }

  // heartbeats

  recordHeartbeats(
    batch: readonly HeartbeatInput[],
    options?: WriteOptions<HeartbeatResult[]>,
  ): Promise<HeartbeatResult[]> {
    return this.#write(() => heartbeats.recordHeartbeatsOp(this.#ctx, batch), options);
  }

  recordHeartbeat(
    heartbeat: HeartbeatInput,
    options?: WriteOptions<HeartbeatResult>,
  ): Promise<HeartbeatResult> {
    if (this.#closed) return Promise.reject(fail("AGENTD_E_STORE", "the store is closed"));
    return this.#heartbeats.submit({ heartbeat, audit: options?.audit });
  }

  #commitHeartbeats(items: QueuedHeartbeat[]): Promise<HeartbeatResult[]> {
    const batch = items.map((i) => i.heartbeat);
    return this.#write(() => heartbeats.recordHeartbeatsOp(this.#ctx, batch), {
      audit: (results) => results.flatMap((r, i) => auditInputs(items[i]?.audit, r)),
    });
  }

  pruneHeartbeats(before: number, limit = 10_000): Promise<number> {
    return this.#write(() => heartbeats.pruneHeartbeatsOp(before, limit), undefined);
  }

  listHeartbeats(
    workerId: string,
    query: { readonly before_counter?: number; readonly limit?: number } = {},
  ): Promise<Heartbeat[]> {
    return this.#read(() =>
      heartbeats.listHeartbeatsOp(workerId, query.before_counter, query.limit ?? 100),
    );
  }

  purgeHeartbeats(before: number): Promise<number> {
    return this.#write(() => heartbeats.purgeHeartbeatsOp(before), undefined);
  }

  // commands

  nextCommandSeq(
    workerId: string,
    consentIdentity: string | null,
    nowMs: number,
    options?: WriteOptions<number>,
  ): Promise<number> {
    return this.#write(
      () => allocateOp("last_command_seq", workerId, consentIdentity, nowMs),
      options,
    );
  }

  createCommand(
    command: CommandInput,
    options?: WriteOptions<commands.Queued>,
  ): Promise<commands.Queued> {
    return this.#write(() => commands.createCommandOp(this.#ctx, command), options);
  }

  issueCommand(
    input: IssueCommandInput,
    build: (seq: number) => string,
    options?: WriteOptions<commands.Queued>,
  ): Promise<commands.Queued> {
    return this.#write(() => commands.issueCommandOp(this.#ctx, input, build), options);
  }

  getCommand(cmdId: string): Promise<Command | null> {
    return this.#read(() => commands.getCommandOp(cmdId));
  }

  listPendingCommands(workerId: string, now: number): Promise<Command[]> {
    return this.#read(() => commands.listPendingCommandsOp(workerId, now));
  }

  recordCommandResult(
    result: CommandResultInput,
    options?: WriteOptions<Command>,
  ): Promise<Command> {
    return this.#write(() => commands.recordCommandResultOp(result), options);
  }

  // push stream

  appendStreamEvent(
    event: StreamEventInput,
    options?: WriteOptions<StreamEvent>,
  ): Promise<StreamEvent> {
    return this.#write(() => appendStreamEventOp(event), options);
  }

  streamEventsSince(
    workerId: string,
    afterId: number,
    limit = STREAM_PAGE_MAX,
  ): Promise<StreamEvent[]> {
    return this.#read(() => streamEventsSinceOp(workerId, afterId, limit));
  }

  subscribe(subscription: StreamSubscription): Promise<Unsubscribe> {
    if (this.#closed) return Promise.reject(fail("AGENTD_E_STORE", "the store is closed"));
    return this.#driver.subscribe(subscription);
  }

  // emergency stop

  createEmergencyStop(
    request: EmergencyStopInput,
    options?: WriteOptions<EmergencyStop>,
  ): Promise<EmergencyStop> {
    return this.#write(() => estop.createEmergencyStopOp(request), options);
  }

  approveEmergencyStop(
    id: string,
    approverKeyId: string,
    at: number,
    options?: WriteOptions<EmergencyStop>,
  ): Promise<EmergencyStop> {
    return this.#write(
      () => estop.approveEmergencyStopOp(this.#ctx, id, approverKeyId, at),
      options,
    );
  }

  markEmergencyStopExecuted(
    id: string,
    at: number,
    options?: WriteOptions<EmergencyStop> & { readonly claim?: EmergencyStopClaim },
  ): Promise<EmergencyStop> {
    return this.#write(() => estop.markEmergencyStopExecutedOp(id, at, options?.claim), options);
  }

  getEmergencyStop(id: string): Promise<EmergencyStop | null> {
    return this.#read(() => estop.getEmergencyStopOp(id));
  }

  claimEmergencyStop(
    id: string,
    claim: EmergencyStopClaim,
    now: number,
    options?: WriteOptions<EmergencyStop | null>,
  ): Promise<EmergencyStop | null> {
    return this.#write(() => estop.claimEmergencyStopOp(id, claim, now), options);
  }

  completeEmergencyStop(
    id: string,
    by: string,
    at: number,
    options?: WriteOptions<EmergencyStop>,
  ): Promise<EmergencyStop> {
    return this.#write(() => estop.completeEmergencyStopOp(this.#ctx, id, by, at), options);
  }

  listUnfinishedEmergencyStops(limit = 100): Promise<EmergencyStop[]> {
    return this.#read(() => estop.listUnfinishedEmergencyStopsOp(limit));
  }

  // key sets

  storeKeySet(keySet: KeySetRecord, options?: WriteOptions<KeySetRecord>): Promise<KeySetRecord> {
    return this.#write(() => storeKeySetOp(keySet), options);
  }

  currentKeySet(): Promise<KeySetRecord | null> {
    return this.#read(() => currentKeySetOp());
  }

  // audit

  async appendAudit(event: AuditInput): Promise<AuditEvent> {
    const [appended] = await this.#write(() => appendAuditOp(this.#ctx, [event]), undefined);
    if (appended === undefined) throw fail("AGENTD_E_INTERNAL", "no audit event appended");
    return appended;
  }

  listAudit(query: AuditQuery = {}): Promise<AuditEvent[]> {
    return this.#read(() => listAuditOp(query));
  }

  verifyAudit(): Promise<AuditVerifyResult> {
    return this.#read(() => verifyAuditOp());
  }
}
