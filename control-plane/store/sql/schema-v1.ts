/**
 * Migration 1: the whole first schema. Portable SQL (TEXT, BIGINT, INTEGER, CHECK, UNIQUE,
 * composite keys); `{{ID}}` is the one dialect-specific piece (an auto-assigned id).
 * JSON members are TEXT holding RFC 8785 canonical JSON. Times are BIGINT Unix seconds,
 * versions and command seqs BIGINT milliseconds-based counters (≤ 2^53).
 */
export const SCHEMA_V1: readonly string[] = [
  `CREATE TABLE owners (
    id TEXT PRIMARY KEY,
    jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL
  )`,
  `CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'owner', 'auditor')),
    owner_id TEXT REFERENCES owners (id),
    key_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    CHECK ((role = 'owner') = (owner_id IS NOT NULL))
  )`,
  "CREATE INDEX api_keys_role ON api_keys (role)",
  `CREATE TABLE enrollment_tokens (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES owners (id),
    secret_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
  )`,
  `CREATE TABLE workers (
    worker_id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES owners (id),
    jwk TEXT NOT NULL,
    facts TEXT NOT NULL,
    cohort TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    quarantine_reason TEXT,
    quarantined_at BIGINT,
    machine_id_sha256 TEXT,
    att_machine_id_sha256 TEXT,
    att_binary_sha256 TEXT,
    att_verdict TEXT,
    att_at BIGINT,
    last_counter BIGINT NOT NULL DEFAULT 0,
    prev_counter BIGINT NOT NULL DEFAULT 0,
    last_seen BIGINT,
    consent_seq BIGINT,
    last_version BIGINT NOT NULL DEFAULT 0,
    pub_version BIGINT,
    pub_exp BIGINT,
    last_command_seq BIGINT NOT NULL DEFAULT 0,
    last_event_id BIGINT NOT NULL DEFAULT 0,
    decommissioned_at BIGINT
  )`,
  "CREATE INDEX workers_owner ON workers (owner_id, worker_id)",
  "CREATE INDEX workers_cohort ON workers (cohort, worker_id)",
  "CREATE INDEX workers_pub_exp ON workers (pub_exp, worker_id)",
  `CREATE TABLE attestation_challenges (
    nonce TEXT PRIMARY KEY,
    worker_id TEXT,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
  )`,
  "CREATE INDEX attestation_challenges_expires ON attestation_challenges (expires_at)",
  `CREATE TABLE access_tokens (
    token_sha256 TEXT PRIMARY KEY,
    worker_id TEXT NOT NULL REFERENCES workers (worker_id),
    expires_at BIGINT NOT NULL
  )`,
  "CREATE INDEX access_tokens_worker ON access_tokens (worker_id)",
  "CREATE INDEX access_tokens_expires ON access_tokens (expires_at)",
  `CREATE TABLE proof_jtis (
    jti TEXT PRIMARY KEY,
    worker_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
  )`,
  "CREATE INDEX proof_jtis_expires ON proof_jtis (expires_at)",
  `CREATE TABLE consents (
    identity TEXT PRIMARY KEY,
    worker_id TEXT NOT NULL REFERENCES workers (worker_id),
    owner_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    jws TEXT NOT NULL,
    exp BIGINT NOT NULL,
    accepted_at BIGINT NOT NULL,
    UNIQUE (worker_id, seq)
  )`,
  `CREATE TABLE publications (
    worker_id TEXT NOT NULL REFERENCES workers (worker_id),
    version BIGINT NOT NULL,
    consent_identity TEXT,
    jws TEXT NOT NULL,
    iat BIGINT NOT NULL,
    exp BIGINT NOT NULL,
    stop INTEGER NOT NULL,
    PRIMARY KEY (worker_id, version)
  )`,
  `CREATE TABLE revocations (
    id {{ID}},
    worker_id TEXT NOT NULL REFERENCES workers (worker_id),
    kind TEXT NOT NULL CHECK (kind IN ('revocation', 'decommission')),
    through_seq BIGINT,
    jws TEXT NOT NULL,
    at BIGINT NOT NULL
  )`,
  "CREATE INDEX revocations_worker ON revocations (worker_id, id)",
  // No foreign key: the hottest table; rows are only inserted after the worker row was
  // updated in the same transaction.
  `CREATE TABLE heartbeats (
    worker_id TEXT NOT NULL,
    counter BIGINT NOT NULL,
    iat BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    jws TEXT NOT NULL,
    flags TEXT NOT NULL,
    PRIMARY KEY (worker_id, counter)
  )`,
  "CREATE INDEX heartbeats_received ON heartbeats (received_at)",
  `CREATE TABLE commands (
    cmd_id TEXT PRIMARY KEY,
    worker_id TEXT NOT NULL REFERENCES workers (worker_id),
    seq BIGINT NOT NULL,
    action TEXT NOT NULL,
    args TEXT NOT NULL,
    jws TEXT NOT NULL,
    iat BIGINT NOT NULL,
    exp BIGINT NOT NULL,
    result_status TEXT CHECK (result_status IN ('done', 'refused', 'failed')),
    result_jws TEXT,
    result_at BIGINT,
    UNIQUE (worker_id, seq)
  )`,
  `CREATE TABLE stream_events (
    worker_id TEXT NOT NULL REFERENCES workers (worker_id),
    id BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('command', 'publication', 'revocation', 'decommission')),
    ref TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (worker_id, id)
  )`,
  `CREATE TABLE emergency_stops (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    at BIGINT NOT NULL,
    executed_at BIGINT
  )`,
  `CREATE TABLE emergency_stop_approvals (
    stop_id TEXT NOT NULL REFERENCES emergency_stops (id),
    approver_key_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (stop_id, approver_key_id)
  )`,
  `CREATE TABLE key_sets (
    seq BIGINT PRIMARY KEY,
    jws TEXT NOT NULL,
    stored_at BIGINT NOT NULL
  )`,
  `CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    type TEXT NOT NULL,
    object TEXT NOT NULL,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
  )`,
  "CREATE INDEX audit_events_type ON audit_events (type, seq)",
  "CREATE INDEX audit_events_object ON audit_events (object, seq)",
  "CREATE INDEX audit_events_actor ON audit_events (actor, seq)",
];
