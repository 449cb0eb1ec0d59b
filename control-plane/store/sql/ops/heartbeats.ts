import { fail } from "../../../../lib/errors.ts";
import type { Heartbeat, HeartbeatInput, HeartbeatResult } from "../../store.ts";
import { all, type Op, type OpContext, type Param, placeholders, run } from "../op.ts";
import { fromJsonText, type Row, toJsonText } from "../rows.ts";

/** Rows per multi-row statement: far below SQLite's 32766 and PostgreSQL's 65535 parameters. */
const CHUNK = 500;

function chunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += CHUNK) out.push(items.slice(i, i + CHUNK));
  return out;
}

/**
 * A batch of heartbeats in a few set-based statements (group commit: one transaction, one
 * fsync). The counter check is the conditional UPDATE itself (`last_counter < new`), which
 * also records the previous counter: in an UPDATE every right-hand side sees the old row, so
 * `prev_counter = last_counter` keeps the value being replaced. A worker may appear several
 * times in a batch: the batch is split into rounds in which each worker appears once, applied
 * in input order, so a later item is checked against an earlier accepted one.
 *
 * PostgreSQL: the batch's worker rows are first locked in worker_id order, so two batches
 * that share workers wait for each other instead of deadlocking.
 */
export function* recordHeartbeatsOp(
  ctx: OpContext,
  batch: readonly HeartbeatInput[],
): Op<HeartbeatResult[]> {
  for (const h of batch) {
    if (!Number.isSafeInteger(h.counter) || h.counter < 1) {
      throw fail("AGENTD_E_INTERNAL", "a heartbeat counter must be a positive safe integer");
    }
  }
  const results: HeartbeatResult[] = new Array(batch.length);
  if (ctx.dialect === "postgres") {
    const ids = [...new Set(batch.map((h) => h.worker_id))].sort();
    for (const part of chunks(ids)) {
      yield* all<Row>(
        `SELECT worker_id FROM workers WHERE worker_id IN (${placeholders(part.length)})
         ORDER BY worker_id FOR UPDATE`,
        part,
      );
    }
  }
  const accepted: number[] = [];
  let pending = batch.map((_, i) => i);
  while (pending.length > 0) {
    const inRound = new Set<string>();
    const round: number[] = [];
    const later: number[] = [];
    for (const i of pending) {
      const w = (batch[i] as HeartbeatInput).worker_id;
      if (inRound.has(w)) later.push(i);
      else {
        inRound.add(w);
        round.push(i);
      }
    }
    for (const part of chunks(round)) {
      yield* applyRound(batch, part, results, accepted);
    }
    pending = later;
  }
  accepted.sort((a, b) => a - b);
  for (const part of chunks(accepted)) {
    const params: Param[] = [];
    for (const i of part) {
      const h = batch[i] as HeartbeatInput;
      params.push(h.worker_id, h.counter, h.iat, h.received_at, h.jws, toJsonText(h.flags));
    }
    yield* run(
      `INSERT INTO heartbeats (worker_id, counter, iat, received_at, jws, flags)
       VALUES ${part.map(() => "(?, ?, ?, ?, ?, ?)").join(", ")} ON CONFLICT DO NOTHING`,
      params,
    );
  }
  return results;
}

/** One round: every worker at most once. */
function* applyRound(
  batch: readonly HeartbeatInput[],
  part: readonly number[],
  results: HeartbeatResult[],
  accepted: number[],
): Op<void> {
  const params: Param[] = [];
  for (const i of part) {
    const h = batch[i] as HeartbeatInput;
    params.push(h.worker_id, h.counter, h.received_at);
  }
  const updated = yield* all<Row>(
    `UPDATE workers SET prev_counter = last_counter, last_counter = v.column2, last_seen = v.column3
     FROM (VALUES ${part.map(() => "(?, CAST(? AS BIGINT), CAST(? AS BIGINT))").join(", ")}) AS v
     WHERE workers.worker_id = v.column1 AND workers.last_counter < v.column2
     RETURNING worker_id, prev_counter`,
    params,
  );
  const previous = new Map<string, number>();
  for (const r of updated) previous.set(String(r.worker_id), Number(r.prev_counter));
  const refused: number[] = [];
  for (const i of part) {
    const prev = previous.get((batch[i] as HeartbeatInput).worker_id);
    if (prev === undefined) refused.push(i);
    else {
      results[i] = { status: "accepted", previous_counter: prev === 0 ? null : prev };
      accepted.push(i);
    }
  }
  if (refused.length === 0) return;
  const ids = refused.map((i) => (batch[i] as HeartbeatInput).worker_id);
  const rows = yield* all<Row>(
    `SELECT worker_id, last_counter FROM workers WHERE worker_id IN (${placeholders(ids.length)})`,
    ids,
  );
  const last = new Map<string, number>();
  for (const r of rows) last.set(String(r.worker_id), Number(r.last_counter));
  for (const i of refused) {
    const counter = last.get((batch[i] as HeartbeatInput).worker_id);
    results[i] =
      counter === undefined
        ? { status: "unknown_worker" }
        : { status: "replay", last_counter: counter };
  }
}

export function* listHeartbeatsOp(
  workerId: string,
  beforeCounter: number | undefined,
  limit: number,
): Op<Heartbeat[]> {
  const rows = yield* all<Row>(
    `SELECT worker_id, counter, iat, received_at, jws, flags FROM heartbeats
     WHERE worker_id = ? AND counter < ? ORDER BY counter DESC LIMIT ?`,
    [
      workerId,
      beforeCounter ?? Number.MAX_SAFE_INTEGER,
      Math.min(Math.max(Math.trunc(limit), 1), 1000),
    ],
  );
  return rows.map((r) => ({
    worker_id: String(r.worker_id),
    counter: Number(r.counter),
    iat: Number(r.iat),
    received_at: Number(r.received_at),
    jws: String(r.jws),
    flags: fromJsonText<string[]>(r.flags),
  }));
}

export function* purgeHeartbeatsOp(before: number): Op<number> {
  return yield* run("DELETE FROM heartbeats WHERE received_at < ?", [before]);
}

/**
 * Deletes up to `limit` heartbeats received before `before`, never a worker's latest
 * accepted one (its counter is the worker's `last_counter`: the anomaly flags of the next
 * heartbeat compare against it). Returns how many were deleted; call again while it is
 * `limit`, so no one transaction grows unbounded.
 */
export function* pruneHeartbeatsOp(before: number, limit: number): Op<number> {
  return yield* run(
    `DELETE FROM heartbeats WHERE (worker_id, counter) IN (
       SELECT h.worker_id, h.counter FROM heartbeats h JOIN workers w ON w.worker_id = h.worker_id
       WHERE h.received_at < ? AND h.counter < w.last_counter
       LIMIT ?)`,
    [before, Math.max(1, Math.trunc(limit))],
  );
}
