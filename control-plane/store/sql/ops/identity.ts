import { fail } from "../../../../lib/errors.ts";
import { conflict, notFound } from "../../errors.ts";
import type {
  ApiKey,
  ConsumeTokenResult,
  EnrollmentToken,
  Owner,
  RevokedApiKey,
  Role,
  SingleUseRefusal,
} from "../../store.ts";
import { all, LOCKS, lock, type Op, one, run } from "../op.ts";
import { fromJsonText, type Row, toJsonText } from "../rows.ts";

const API_KEY_COLUMNS = "id, role, owner_id, key_sha256, created_at, created_by";

function toApiKey(r: Row): ApiKey {
  return {
    id: String(r.id),
    role: String(r.role) as Role,
    owner_id: r.owner_id === null ? null : String(r.owner_id),
    key_sha256: String(r.key_sha256),
    created_at: Number(r.created_at),
    created_by: r.created_by === null ? null : String(r.created_by),
  };
}

export function* ownerExists(id: string): Op<boolean> {
  return (yield* one<Row>("SELECT id FROM owners WHERE id = ?", [id])) !== undefined;
}

export function* createApiKeyOp(key: ApiKey): Op<ApiKey> {
  if ((key.role === "owner") !== (key.owner_id !== null)) {
    throw fail("AGENTD_E_INTERNAL", "an owner API key needs an owner_id, other roles none", {
      role: key.role,
    });
  }
  if (key.owner_id !== null && !(yield* ownerExists(key.owner_id))) {
    throw notFound("owner", key.owner_id);
  }
  const inserted = yield* all<Row>(
    `INSERT INTO api_keys (${API_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT DO NOTHING RETURNING id`,
    [key.id, key.role, key.owner_id, key.key_sha256, key.created_at, key.created_by],
  );
  if (inserted.length === 0)
    throw conflict("an API key with this id or hash exists", { id: key.id });
  return key;
}

/** A revoked key is never found: every request after its revocation is unauthenticated. */
export function* findApiKeyOp(keySha256: string): Op<ApiKey | null> {
  const r = yield* one<Row>(
    `SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE key_sha256 = ? AND revoked_at IS NULL`,
    [keySha256],
  );
  return r === undefined ? null : toApiKey(r);
}

export function* countApiKeysOp(role: Role | undefined): Op<number> {
  const r =
    role === undefined
      ? yield* one<Row>("SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL")
      : yield* one<Row>(
          "SELECT COUNT(*) AS n FROM api_keys WHERE role = ? AND revoked_at IS NULL",
          [role],
        );
  return Number(r?.n ?? 0);
}

/**
 * Under the API-key lock (PostgreSQL; SQLite's write transaction is exclusive anyway), so two
 * revocations racing see each other: the last admin key cannot be revoked by two requests
 * that each saw another admin left. The row is kept with its revocation, never deleted.
 */
export function* revokeApiKeyOp(
  id: string,
  revokedBy: string | null,
  at: number,
): Op<RevokedApiKey> {
  yield* lock(LOCKS.apiKeys);
  const r = yield* one<Row>(`SELECT ${API_KEY_COLUMNS}, revoked_at FROM api_keys WHERE id = ?`, [
    id,
  ]);
  if (r === undefined) throw notFound("api_key", id);
  if (r.revoked_at !== null) {
    throw conflict("this API key is revoked already", { reason: "revoked", id });
  }
  const key = toApiKey(r);
  if (key.role === "admin" && (yield* countApiKeysOp("admin")) <= 1) {
    throw conflict("the last admin key cannot be revoked: create another admin key first", {
      reason: "last_admin",
      id,
    });
  }
  const changed = yield* run(
    "UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL",
    [at, revokedBy, id],
  );
  if (changed === 0) throw conflict("this API key is revoked already", { reason: "revoked", id });
  return { ...key, revoked_at: at, revoked_by: revokedBy };
}

export function* createOwnerOp(owner: Owner): Op<Owner> {
  const inserted = yield* all<Row>(
    "INSERT INTO owners (id, jwk, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
    [owner.id, toJsonText(owner.jwk), owner.created_at],
  );
  if (inserted.length === 0)
    throw conflict("this owner is registered already", { owner: owner.id });
  return owner;
}

export function* getOwnerOp(id: string): Op<Owner | null> {
  const r = yield* one<Row>("SELECT id, jwk, created_at FROM owners WHERE id = ?", [id]);
  return r === undefined
    ? null
    : { id: String(r.id), jwk: fromJsonText(r.jwk), created_at: Number(r.created_at) };
}

export function* createEnrollmentTokenOp(t: EnrollmentToken): Op<EnrollmentToken> {
  if (!(yield* ownerExists(t.owner_id))) throw notFound("owner", t.owner_id);
  const inserted = yield* all<Row>(
    `INSERT INTO enrollment_tokens (id, owner_id, secret_sha256, created_at, expires_at)
     VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id`,
    [t.id, t.owner_id, t.secret_sha256, t.created_at, t.expires_at],
  );
  if (inserted.length === 0)
    throw conflict("an enrollment token with this id exists", { id: t.id });
  return t;
}

/**
 * One conditional UPDATE marks the token used: of concurrent consumers exactly one changes the
 * row (PostgreSQL re-checks `used_at IS NULL` after waiting for the row lock). Only when
 * nothing changed is the row read, to name the reason.
 */
export function* consumeEnrollmentTokenOp(
  id: string,
  secretSha256: string,
  now: number,
): Op<ConsumeTokenResult> {
  const used = yield* all<Row>(
    `UPDATE enrollment_tokens SET used_at = ?
     WHERE id = ? AND secret_sha256 = ? AND used_at IS NULL AND expires_at > ?
     RETURNING owner_id`,
    [now, id, secretSha256, now],
  );
  if (used[0] !== undefined) return { ok: true, owner_id: String(used[0].owner_id) };
  const r = yield* one<Row>(
    "SELECT secret_sha256, used_at, expires_at FROM enrollment_tokens WHERE id = ?",
    [id],
  );
  return { ok: false, reason: singleUseRefusal(r, secretSha256, "secret_sha256", now) };
}

/** The reason a conditional single-use UPDATE changed nothing, from the row as it is now. */
export function singleUseRefusal(
  r: Row | undefined,
  expected: string | null,
  column: string,
  now: number,
): SingleUseRefusal {
  if (r === undefined) return "unknown";
  if (expected !== null && r[column] !== null && String(r[column]) !== expected) return "mismatch";
  if (r.used_at !== null) return "used";
  if (Number(r.expires_at) <= now) return "expired";
  // Unreachable while the UPDATE and this read see the same row; refuse rather than guess.
  return "used";
}
