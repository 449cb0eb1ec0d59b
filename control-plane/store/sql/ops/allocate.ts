import { fail } from "../../../../lib/errors.ts";
import { conflict, notFound } from "../../errors.ts";
import { all, type Op, one, run } from "../op.ts";
import type { Row } from "../rows.ts";

/**
 * The per-worker counters: publication versions and command seqs. Each counts for one
 * consent (`<counter>_consent`, migration 3), the one it was last allocated or raised for:
 * versions and seqs are scoped to the consent in force (DOCUMENTS.md section 4), so a counter
 * driven to 2^53 − 1 — a stolen key's documents stored here, or the database edited — locks
 * out nothing beyond that consent: the owner's next consent starts afresh.
 *
 * Within one consent the counter never goes down, even after the database is restored from an
 * older backup: next = max(last + 1, now_ms). As long as the clock moves forward, a value
 * allocated after a restore is above every value allocated before the backup was made, and
 * above those allocated between backup and restore if they did not outrun the clock (at most
 * one per millisecond on average). For another consent the counter starts over at
 * max(1, now_ms). The UPDATE locks the worker's row, so concurrent allocations are distinct and
 * increase in commit order.
 *
 * Stored versions (seqs) stay unique per worker across consents, as the tables key them:
 * a value some other consent's publication (command) holds already — the first one of a
 * consent allocated in the same millisecond as the last of the one before, or a value a
 * stolen key's document took — is skipped for the next free one.
 *
 * Callers allocate only for the worker's latest consent (publish's and issueCommand's
 * compare-and-set), so a counter moves to a newer consent and never back.
 */

export type Counter = "last_version" | "last_command_seq";

const CONSENT_COLUMN: Readonly<Record<Counter, string>> = {
  last_version: "version_consent",
  last_command_seq: "command_seq_consent",
};

/** Where the allocated values are stored (unique per worker there). */
const STORED: Readonly<Record<Counter, { table: string; column: string }>> = {
  last_version: { table: "publications", column: "version" },
  last_command_seq: { table: "commands", column: "seq" },
};

const WHAT: Readonly<Record<Counter, string>> = {
  last_version: "publication versions",
  last_command_seq: "command seqs",
};

const MAX = Number.MAX_SAFE_INTEGER;

/** SQL true (never null) when the counter counts for `consent`, and its parameters. */
function sameConsent(column: Counter, consent: string | null): [string, (string | null)[]] {
  const c = CONSENT_COLUMN[column];
  return consent === null ? [`${c} IS NULL`, []] : [`COALESCE(${c} = ?, FALSE)`, [consent]];
}

function exhausted(column: Counter) {
  return conflict(
    `the ${WHAT[column]} of this consent are spent (2^53 − 1): the owner's next consent starts afresh`,
    { reason: "counter_exhausted", counter: column },
  );
}

export function* allocateOp(
  column: Counter,
  workerId: string,
  consent: string | null,
  nowMs: number,
): Op<number> {
  if (!Number.isSafeInteger(nowMs) || nowMs < 0) {
    throw fail("AGENTD_E_INTERNAL", "now_ms must be a non-negative safe integer");
  }
  const floor = Math.max(1, nowMs);
  const [same, sameParams] = sameConsent(column, consent);
  // A counter at 2^53 − 1 for this consent is left alone (its next value could not be read
  // back exactly): no row changes, and the reason is found below.
  const r = yield* all<Row>(
    `UPDATE workers SET
       ${column} = CASE WHEN ${same} AND ${column} + 1 > ? THEN ${column} + 1 ELSE ? END,
       ${CONSENT_COLUMN[column]} = ?
     WHERE worker_id = ? AND NOT (${same} AND ${column} >= ?) RETURNING ${column} AS v`,
    [...sameParams, floor, floor, consent, workerId, ...sameParams, MAX],
  );
  if (r[0] === undefined) {
    const exists = yield* one<Row>("SELECT 1 AS x FROM workers WHERE worker_id = ?", [workerId]);
    if (exists === undefined) throw notFound("worker", workerId);
    throw exhausted(column);
  }
  const candidate = Number(r[0].v);
  const free = yield* firstFreeOp(column, workerId, candidate);
  if (free === null) throw exhausted(column);
  if (free !== candidate) {
    yield* run(`UPDATE workers SET ${column} = ? WHERE worker_id = ?`, [free, workerId]);
  }
  return free;
}

/**
 * The least value ≥ `from` (and ≤ 2^53 − 1) that no stored publication (command) of the
 * worker holds: `from` itself or one above a stored value. One range read on the table's
 * unique (worker, value) index; in the usual case nothing is stored at or above `from`.
 */
function* firstFreeOp(column: Counter, workerId: string, from: number): Op<number | null> {
  const { table, column: value } = STORED[column];
  const r = yield* one<Row>(
    `SELECT MIN(s.v) AS v FROM (
       SELECT CAST(? AS BIGINT) AS v
       UNION ALL
       SELECT t.${value} + 1 FROM ${table} t WHERE t.worker_id = ? AND t.${value} >= ?
     ) s
     WHERE s.v <= ? AND NOT EXISTS
       (SELECT 1 FROM ${table} u WHERE u.worker_id = ? AND u.${value} = s.v)`,
    [from, workerId, from, MAX, workerId],
  );
  return r === undefined || r.v === null || r.v === undefined ? null : Number(r.v);
}

/**
 * Raises the counter to at least `value` for `consent` (a value stored without allocating it
 * here: storePublication, createCommand). A value of another consent takes the counter over
 * only for a consent at least as new as the one it counts for — one of an older consent,
 * stored behind the API's back, must not start the newer consent's space over below what it
 * gave out. Callers hold the worker's lock.
 */
export function* raiseCounterOp(
  column: Counter,
  workerId: string,
  consent: string | null,
  value: number,
): Op<void> {
  const cc = CONSENT_COLUMN[column];
  const row = yield* one<Row>(
    `SELECT ${column} AS v, ${cc} AS c FROM workers WHERE worker_id = ?`,
    [workerId],
  );
  if (row === undefined) return;
  const counted = row.c === null || row.c === undefined ? null : String(row.c);
  if (counted === consent) {
    if (Number(row.v) < value) {
      yield* run(`UPDATE workers SET ${column} = ? WHERE worker_id = ?`, [value, workerId]);
    }
  } else if ((yield* consentSeqOp(consent)) >= (yield* consentSeqOp(counted))) {
    yield* run(`UPDATE workers SET ${column} = ?, ${cc} = ? WHERE worker_id = ?`, [
      value,
      consent,
      workerId,
    ]);
  }
}

/** A stored consent's seq; -1 for none (no consent named, or not stored). */
export function* consentSeqOp(identity: string | null): Op<number> {
  if (identity === null) return -1;
  const r = yield* one<Row>("SELECT seq FROM consents WHERE identity = ?", [identity]);
  return r === undefined ? -1 : Number(r.seq);
}
