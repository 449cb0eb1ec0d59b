import type { Dialect } from "./op.ts";

/**
 * Migration 3: owner-key rotations relayed by the control plane (DOCUMENTS.md section 5).
 *
 * - `owner_rotations`: each rotation stored for a worker, in order; the last one's `to_owner`
 *   and `new_owner_jwk` are the owner key the control plane verifies that worker's owner
 *   documents with (before the first, the owner's own key). `identity` is unique: a rotation
 *   is stored once.
 * - `stream_events.kind` may be `owner_rotation`. A CHECK cannot be altered in place on
 *   SQLite, so there the table is rebuilt with its rows (nothing refers to it); PostgreSQL
 *   replaces the constraint (its default name for the column's CHECK).
 */
const OWNER_ROTATIONS = [
  `CREATE TABLE owner_rotations (
    id {{ID}},
    worker_id TEXT NOT NULL REFERENCES workers (worker_id),
    identity TEXT NOT NULL UNIQUE,
    from_owner TEXT NOT NULL,
    to_owner TEXT NOT NULL,
    new_owner_jwk TEXT NOT NULL,
    iat BIGINT NOT NULL,
    jws TEXT NOT NULL,
    at BIGINT NOT NULL
  )`,
  "CREATE INDEX owner_rotations_worker ON owner_rotations (worker_id, id)",
];

const KINDS = "'command', 'publication', 'revocation', 'decommission', 'owner_rotation'";

export const SCHEMA_V3: Readonly<Record<Dialect, readonly string[]>> = {
  sqlite: [
    ...OWNER_ROTATIONS,
    `CREATE TABLE stream_events_v3 (
      worker_id TEXT NOT NULL REFERENCES workers (worker_id),
      id BIGINT NOT NULL,
      kind TEXT NOT NULL CHECK (kind IN (${KINDS})),
      ref TEXT NOT NULL,
      at BIGINT NOT NULL,
      PRIMARY KEY (worker_id, id)
    )`,
    `INSERT INTO stream_events_v3 (worker_id, id, kind, ref, at)
     SELECT worker_id, id, kind, ref, at FROM stream_events`,
    "DROP TABLE stream_events",
    "ALTER TABLE stream_events_v3 RENAME TO stream_events",
  ],
  postgres: [
    ...OWNER_ROTATIONS,
    "ALTER TABLE stream_events DROP CONSTRAINT stream_events_kind_check",
    `ALTER TABLE stream_events ADD CONSTRAINT stream_events_kind_check CHECK (kind IN (${KINDS}))`,
  ],
};
