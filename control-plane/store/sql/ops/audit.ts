import { AUDIT_GENESIS, auditHash } from "../../audit-hash.ts";
import type { AuditEvent, AuditInput, AuditQuery, AuditVerifyResult } from "../../store.ts";
import { all, LOCKS, lock, type Op, type OpContext, type Param, run } from "../op.ts";
import { AUDIT_COLUMNS, type Row, toAuditEvent, toJsonText } from "../rows.ts";

/**
 * Appends events at the head of the chain. The head is read under the audit lock, so the
 * chain stays linear however many transactions and processes append at once (the seq
 * primary key would refuse a fork anyway). Called last in a transaction, so the lock is held
 * only for the time of the commit.
 */
export function* appendAuditOp(ctx: OpContext, inputs: readonly AuditInput[]): Op<AuditEvent[]> {
  if (inputs.length === 0) return [];
  yield* lock(LOCKS.audit);
  const head = yield* all<Row>("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1");
  let seq = head[0] === undefined ? 0 : Number(head[0].seq);
  let prev = head[0] === undefined ? AUDIT_GENESIS : String(head[0].hash);
  const at = ctx.nowSeconds();
  const events: AuditEvent[] = [];
  for (const input of inputs) {
    seq += 1;
    const body = {
      seq,
      at,
      actor: input.actor,
      type: input.type,
      object: input.object,
      data: input.data,
      prev_hash: prev,
    };
    const hash = auditHash(body);
    yield* run(`INSERT INTO audit_events (${AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, [
      seq,
      at,
      body.actor,
      body.type,
      body.object,
      toJsonText(body.data),
      prev,
      hash,
    ]);
    events.push({ ...body, hash });
    prev = hash;
  }
  return events;
}

export const AUDIT_PAGE_MAX = 1000;

export function* listAuditOp(query: AuditQuery): Op<AuditEvent[]> {
  const where = ["seq > ?"];
  const params: Param[] = [query.after_seq ?? 0];
  for (const key of ["type", "object", "actor"] as const) {
    const v = query[key];
    if (v !== undefined) {
      where.push(`${key} = ?`);
      params.push(v);
    }
  }
  const limit = Math.min(Math.max(Math.trunc(query.limit ?? 100), 1), AUDIT_PAGE_MAX);
  params.push(limit);
  const rows = yield* all<Row>(
    `SELECT ${AUDIT_COLUMNS} FROM audit_events WHERE ${where.join(" AND ")} ORDER BY seq LIMIT ?`,
    params,
  );
  return rows.map(toAuditEvent);
}

/** One page of the verification walk; the driver runs it in a snapshot (read transaction). */
export function* verifyAuditOp(): Op<AuditVerifyResult> {
  let expectedSeq = 1;
  let prev = AUDIT_GENESIS;
  let count = 0;
  for (;;) {
    const page = yield* all<Row>(
      `SELECT ${AUDIT_COLUMNS} FROM audit_events WHERE seq >= ? ORDER BY seq LIMIT ?`,
      [expectedSeq, AUDIT_PAGE_MAX],
    );
    for (const row of page) {
      const e = toAuditEvent(row);
      if (e.seq !== expectedSeq) return { ok: false, count, seq: expectedSeq, reason: "seq_gap" };
      if (e.prev_hash !== prev) return { ok: false, count, seq: e.seq, reason: "prev_hash" };
      const { hash, ...body } = e;
      if (auditHash(body) !== hash) return { ok: false, count, seq: e.seq, reason: "hash" };
      prev = hash;
      expectedSeq += 1;
      count += 1;
    }
    if (page.length < AUDIT_PAGE_MAX) break;
  }
  return { ok: true, count, head: count === 0 ? null : { seq: count, hash: prev } };
}
