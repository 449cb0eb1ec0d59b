import { notFound } from "../../errors.ts";
import type { StreamEvent, StreamEventInput } from "../../store.ts";
import { all, notify, type Op, run } from "../op.ts";
import { type Row, STREAM_COLUMNS, toStreamEvent } from "../rows.ts";

/**
 * The id comes from the worker row's counter, incremented under that row's lock: ids are
 * per worker, gapless and in commit order, so a reader resuming "after id N" can never miss an
 * event committed later with a smaller id (which a global sequence would allow).
 */
export function* appendStreamEventOp(e: StreamEventInput): Op<StreamEvent> {
  const r = yield* all<Row>(
    "UPDATE workers SET last_event_id = last_event_id + 1 WHERE worker_id = ? RETURNING last_event_id",
    [e.worker_id],
  );
  if (r[0] === undefined) throw notFound("worker", e.worker_id);
  const event: StreamEvent = {
    worker_id: e.worker_id,
    id: Number(r[0].last_event_id),
    kind: e.kind,
    ref: e.ref,
    at: e.at,
  };
  yield* run(`INSERT INTO stream_events (${STREAM_COLUMNS}) VALUES (?, ?, ?, ?, ?)`, [
    event.worker_id,
    event.id,
    event.kind,
    event.ref,
    event.at,
  ]);
  yield* notify(event);
  return event;
}

export const STREAM_PAGE_MAX = 1000;

export function* streamEventsSinceOp(
  workerId: string,
  afterId: number,
  limit: number,
): Op<StreamEvent[]> {
  const rows = yield* all<Row>(
    `SELECT ${STREAM_COLUMNS} FROM stream_events WHERE worker_id = ? AND id > ? ORDER BY id LIMIT ?`,
    [workerId, afterId, Math.min(Math.max(Math.trunc(limit), 1), STREAM_PAGE_MAX)],
  );
  return rows.map(toStreamEvent);
}
