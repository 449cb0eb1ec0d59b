import { conflict, notFound } from "../../errors.ts";
import type { EmergencyStop, EmergencyStopInput } from "../../store.ts";
import { all, forUpdate, type Op, type OpContext, one } from "../op.ts";
import { type Row, toJsonText, toScope } from "../rows.ts";

export function* getEmergencyStopOp(id: string): Op<EmergencyStop | null> {
  const r = yield* one<Row>(
    "SELECT id, scope, requested_by, at, executed_at FROM emergency_stops WHERE id = ?",
    [id],
  );
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

export function* markEmergencyStopExecutedOp(id: string, at: number): Op<EmergencyStop> {
  const changed = yield* all<Row>(
    "UPDATE emergency_stops SET executed_at = ? WHERE id = ? AND executed_at IS NULL RETURNING id",
    [at, id],
  );
  const s = yield* mustGet(id);
  if (changed.length === 0) throw conflict("this emergency stop was executed already", { id });
  return s;
}
