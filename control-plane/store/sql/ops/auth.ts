import { conflict, notFound } from "../../errors.ts";
import type {
  AccessToken,
  AttestationChallenge,
  ConsumeChallengeResult,
  PurgeCounts,
  Worker,
} from "../../store.ts";
import { all, type Op, one, run } from "../op.ts";
import { type Row, toWorker, WORKER_COLUMNS } from "../rows.ts";
import { singleUseRefusal } from "./identity.ts";

export function* createChallengeOp(c: AttestationChallenge): Op<AttestationChallenge> {
  const inserted = yield* all<Row>(
    `INSERT INTO attestation_challenges (nonce, worker_id, expires_at) VALUES (?, ?, ?)
     ON CONFLICT DO NOTHING RETURNING nonce`,
    [c.nonce, c.worker_id, c.expires_at],
  );
  if (inserted.length === 0) throw conflict("this challenge nonce exists");
  return c;
}

/** Single use by one conditional UPDATE, as for enrollment tokens. */
export function* consumeChallengeOp(
  nonce: string,
  workerId: string,
  now: number,
): Op<ConsumeChallengeResult> {
  const used = yield* run(
    `UPDATE attestation_challenges SET used_at = ?
     WHERE nonce = ? AND (worker_id IS NULL OR worker_id = ?) AND used_at IS NULL AND expires_at > ?`,
    [now, nonce, workerId, now],
  );
  if (used === 1) return { ok: true };
  const r = yield* one<Row>(
    "SELECT worker_id, used_at, expires_at FROM attestation_challenges WHERE nonce = ?",
    [nonce],
  );
  return { ok: false, reason: singleUseRefusal(r, workerId, "worker_id", now) };
}

export function* createAccessTokenOp(t: AccessToken): Op<AccessToken> {
  const w = yield* one<Row>("SELECT worker_id FROM workers WHERE worker_id = ?", [t.worker_id]);
  if (w === undefined) throw notFound("worker", t.worker_id);
  const inserted = yield* all<Row>(
    `INSERT INTO access_tokens (token_sha256, worker_id, expires_at) VALUES (?, ?, ?)
     ON CONFLICT DO NOTHING RETURNING token_sha256`,
    [t.token_sha256, t.worker_id, t.expires_at],
  );
  if (inserted.length === 0) throw conflict("this access token exists");
  return t;
}

export function* findAccessTokenOp(tokenSha256: string, now: number): Op<AccessToken | null> {
  const r = yield* one<Row>(
    "SELECT token_sha256, worker_id, expires_at FROM access_tokens WHERE token_sha256 = ? AND expires_at > ?",
    [tokenSha256, now],
  );
  return r === undefined
    ? null
    : {
        token_sha256: String(r.token_sha256),
        worker_id: String(r.worker_id),
        expires_at: Number(r.expires_at),
      };
}

export function* findAccessTokenWorkerOp(
  tokenSha256: string,
  now: number,
): Op<{ token: AccessToken; worker: Worker } | null> {
  const columns = WORKER_COLUMNS.split(", ")
    .map((c) => `w.${c}`)
    .join(", ");
  const r = yield* one<Row>(
    `SELECT t.token_sha256, t.expires_at AS token_expires_at, ${columns}
     FROM access_tokens t JOIN workers w ON w.worker_id = t.worker_id
     WHERE t.token_sha256 = ? AND t.expires_at > ?`,
    [tokenSha256, now],
  );
  if (r === undefined) return null;
  const worker = toWorker(r);
  return {
    token: {
      token_sha256: String(r.token_sha256),
      worker_id: worker.worker_id,
      expires_at: Number(r.token_expires_at),
    },
    worker,
  };
}

export function* deleteAccessTokensOp(workerId: string): Op<number> {
  return yield* run("DELETE FROM access_tokens WHERE worker_id = ?", [workerId]);
}

/** The unique insert is the whole check: exactly one of any number of concurrent uses wins. */
/** Rows per multi-row insert: 3 parameters each, far below either database's limit. */
const JTI_CHUNK = 500;

/**
 * useJtiOp for many at once (the group commit of request proofs): multi-row inserts, one
 * round trip per 500. A jti given twice in one call is first for its first occurrence only.
 */
export function* useJtisOp(
  items: readonly { readonly jti: string; readonly workerId: string; readonly expiresAt: number }[],
  purgeBefore: number | null,
): Op<boolean[]> {
  if (purgeBefore !== null)
    yield* run("DELETE FROM proof_jtis WHERE expires_at <= ?", [purgeBefore]);
  const inserted = new Set<string>();
  for (let i = 0; i < items.length; i += JTI_CHUNK) {
    const part = items.slice(i, i + JTI_CHUNK);
    const rows = yield* all<Row>(
      `INSERT INTO proof_jtis (jti, worker_id, expires_at)
       VALUES ${part.map(() => "(?, ?, ?)").join(", ")} ON CONFLICT DO NOTHING RETURNING jti`,
      part.flatMap((j) => [j.jti, j.workerId, j.expiresAt]),
    );
    for (const r of rows) inserted.add(String(r.jti));
  }
  return items.map((j) => inserted.delete(j.jti));
}

export function* purgeExpiredOp(now: number): Op<PurgeCounts> {
  const jtis = yield* run("DELETE FROM proof_jtis WHERE expires_at <= ?", [now]);
  const challenges = yield* run("DELETE FROM attestation_challenges WHERE expires_at <= ?", [now]);
  const accessTokens = yield* run("DELETE FROM access_tokens WHERE expires_at <= ?", [now]);
  return { jtis, challenges, access_tokens: accessTokens };
}
