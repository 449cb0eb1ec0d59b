import { fail } from "../../../../lib/errors.ts";
import { notFound } from "../../errors.ts";
import { all, type Op } from "../op.ts";
import type { Row } from "../rows.ts";

/**
 * A per-worker counter that never goes down, even after the database is restored from an
 * older backup: next = max(last + 1, now_ms). As long as the clock moves forward, a value
 * allocated after a restore is above every value allocated before the backup was made, and
 * above those allocated between backup and restore if they did not outrun the clock (at most
 * one per millisecond on average). The conditional UPDATE locks the row, so concurrent
 * allocations are distinct and increase in commit order.
 */
export function* allocateOp(
  column: "last_version" | "last_command_seq",
  workerId: string,
  nowMs: number,
): Op<number> {
  if (!Number.isSafeInteger(nowMs) || nowMs < 0) {
    throw fail("AGENTD_E_INTERNAL", "now_ms must be a non-negative safe integer");
  }
  const r = yield* all<Row>(
    `UPDATE workers SET ${column} = CASE WHEN ${column} + 1 > ? THEN ${column} + 1 ELSE ? END
     WHERE worker_id = ? RETURNING ${column} AS v`,
    [nowMs, nowMs, workerId],
  );
  if (r[0] === undefined) throw notFound("worker", workerId);
  const v = Number(r[0].v);
  if (!Number.isSafeInteger(v)) throw fail("AGENTD_E_STORE", `${column} passed 2^53`);
  return v;
}

/** Raises the counter to at least `value` (a value stored without allocating it here). */
export function* raiseCounterOp(
  column: "last_version" | "last_command_seq",
  workerId: string,
  value: number,
): Op<void> {
  yield* all<Row>(
    `UPDATE workers SET ${column} = ? WHERE worker_id = ? AND ${column} < ? RETURNING worker_id`,
    [value, workerId, value],
  );
}
