import { conflict, notFound } from "../../errors.ts";
import type { EmergencyStop, EmergencyStopClaim, EmergencyStopInput } from "../../store.ts";
import { all, forUpdate, type Op, type OpContext, one, run } from "../op.ts";
import { type Row, toJsonText, toScope } from "../rows.ts";

const STOP_COLUMNS =
  "id, scope, requested_by, at, executed_at, completed_at, claimed_by, claimed_until";

export function* getEmergencyStopOp(id: string): Op<EmergencyStop | null> {
  const r = yield* one<Row>(`SELECT ${STOP_COLUMNS} FROM emergency_stops WHERE id = ?`, [id]);
  if (r === undefined) return null;
  const approvals = yield* all<Row>(
    `SELECT approver_key_id, at FROM emergency_stop_approvals WHERE stop_id = ?
     ORDER BY at, approver_key_id`,
    [id],
  );
  return {
    id: String(r.id),
    scope: toScope(r.scope),
    requested_by: String(r.requested_by),
    at: Number(r.at),
    executed_at: r.executed_at === null ? null : Number(r.executed_at),
    completed_at: r.completed_at === null ? null : Number(r.completed_at),
    claim:
      r.claimed_by === null ? null : { by: String(r.claimed_by), until: Number(r.claimed_until) },
    approvals: approvals.map((a) => ({
      approver_key_id: String(a.approver_key_id),
      at: Number(a.at),
    })),
  };
}

function* mustGet(id: string): Op<EmergencyStop> {
  const s = yield* getEmergencyStopOp(id);
  if (s === null) throw notFound("emergency_stop", id);
  return s;
}

export function* createEmergencyStopOp(s: EmergencyStopInput): Op<EmergencyStop> {
  const scope = "all" in s.scope ? { all: true } : { cohort: s.scope.cohort };
  const inserted = yield* all<Row>(
    `INSERT INTO emergency_stops (id, scope, requested_by, at) VALUES (?, ?, ?, ?)
     ON CONFLICT DO NOTHING RETURNING id`,
    [s.id, toJsonText(scope), s.requested_by, s.at],
  );
  if (inserted.length === 0) throw conflict("an emergency stop with this id exists", { id: s.id });
  return yield* mustGet(s.id);
}

/**
 * The (stop, approver) primary key makes a second approval by the same key a conflict even
 * when both arrive at once; the request row is locked so an approval cannot race the
 * execution mark.
 */
export function* approveEmergencyStopOp(
  ctx: OpContext,
  id: string,
  approverKeyId: string,
  at: number,
): Op<EmergencyStop> {
  const r = yield* one<Row>(
    `SELECT executed_at FROM emergency_stops WHERE id = ?${forUpdate(ctx)}`,
    [id],
  );
  if (r === undefined) throw notFound("emergency_stop", id);
  if (r.executed_at !== null) throw conflict("this emergency stop was executed already", { id });
  const inserted = yield* all<Row>(
    `INSERT INTO emergency_stop_approvals (stop_id, approver_key_id, at) VALUES (?, ?, ?)
     ON CONFLICT DO NOTHING RETURNING stop_id`,
    [id, approverKeyId, at],
  );
  if (inserted.length === 0) {
    throw conflict("this key has approved this emergency stop already", { id });
  }
  return yield* mustGet(id);
}

/** With `claim`, the executing instance holds the publishing of the stops from the start. */
export function* markEmergencyStopExecutedOp(
  id: string,
  at: number,
  claim: EmergencyStopClaim | undefined,
): Op<EmergencyStop> {
  const changed = yield* all<Row>(
    `UPDATE emergency_stops SET executed_at = ?, claimed_by = ?, claimed_until = ?
     WHERE id = ? AND executed_at IS NULL RETURNING id`,
    [at, claim?.by ?? null, claim?.until ?? null, id],
  );
  const s = yield* mustGet(id);
  if (changed.length === 0) throw conflict("this emergency stop was executed already", { id });
  return s;
}

/**
 * One conditional update: executed, not completed, and no claim of another that still
 * holds. Of instances racing for a stop, exactly one changes the row (PostgreSQL re-checks
 * the condition on the row after waiting for its lock; SQLite's writers are serial).
 */
export function* claimEmergencyStopOp(
  id: string,
  claim: EmergencyStopClaim,
  now: number,
): Op<EmergencyStop | null> {
  const changed = yield* all<Row>(
    `UPDATE emergency_stops SET claimed_by = ?, claimed_until = ?
     WHERE id = ? AND executed_at IS NOT NULL AND completed_at IS NULL
       AND (claimed_by IS NULL OR claimed_by = ? OR claimed_until <= ?)
     RETURNING id`,
    [claim.by, claim.until, id, claim.by, now],
  );
  const s = yield* mustGet(id);
  return changed.length === 0 ? null : s;
}

export function* completeEmergencyStopOp(
  ctx: OpContext,
  id: string,
  by: string,
  at: number,
): Op<EmergencyStop> {
  const r = yield* one<Row>(
    `SELECT completed_at, claimed_by FROM emergency_stops WHERE id = ?${forUpdate(ctx)}`,
    [id],
  );
  if (r === undefined) throw notFound("emergency_stop", id);
  if (r.completed_at !== null) {
    throw conflict("this emergency stop was completed already", { reason: "completed", id });
  }
  if (r.claimed_by === null || String(r.claimed_by) !== by) {
    throw conflict("another instance holds this emergency stop", { reason: "not_claimed", id });
  }
  yield* run(
    "UPDATE emergency_stops SET completed_at = ?, claimed_by = NULL, claimed_until = NULL WHERE id = ?",
    [at, id],
  );
  return yield* mustGet(id);
}

export function* listUnfinishedEmergencyStopsOp(limit: number): Op<EmergencyStop[]> {
  const rows = yield* all<Row>(
    `SELECT id FROM emergency_stops WHERE executed_at IS NOT NULL AND completed_at IS NULL
     ORDER BY executed_at, id LIMIT ?`,
    [Math.min(Math.max(Math.trunc(limit), 1), 1000)],
  );
  const stops: EmergencyStop[] = [];
  for (const r of rows) stops.push(yield* mustGet(String(r.id)));
  return stops;
}
