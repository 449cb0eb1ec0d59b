import { conflict, notFound } from "../../errors.ts";
import type {
  AttestationInput,
  AttestationResult,
  AttestationVerdict,
  EnrollInput,
  EnrollResult,
  LiftedQuarantine,
  NewWorker,
  Quarantine,
  Worker,
  WorkerQuery,
} from "../../store.ts";
import { all, forUpdate, type Op, type OpContext, one, type Param, run } from "../op.ts";
import { type Row, toJsonText, toWorker, WORKER_COLUMNS } from "../rows.ts";
import { consumeEnrollmentTokenOp, ownerExists } from "./identity.ts";

export function* getWorkerOp(workerId: string): Op<Worker | null> {
  const r = yield* one<Row>(`SELECT ${WORKER_COLUMNS} FROM workers WHERE worker_id = ?`, [
    workerId,
  ]);
  return r === undefined ? null : toWorker(r);
}

export function* mustGetWorker(workerId: string): Op<Worker> {
  const w = yield* getWorkerOp(workerId);
  if (w === null) throw notFound("worker", workerId);
  return w;
}

/**
 * Locks the worker row for the rest of the transaction (PostgreSQL), so that dependent
 * writes to its counters see no concurrent change. NOT_FOUND if it does not exist.
 */
export function* lockWorker(ctx: OpContext, workerId: string): Op<Row> {
  const r = yield* one<Row>(
    `SELECT owner_id, consent_seq, decommissioned_at FROM workers WHERE worker_id = ?${forUpdate(ctx)}`,
    [workerId],
  );
  if (r === undefined) throw notFound("worker", workerId);
  return r;
}

export function* registerWorkerOp(w: NewWorker): Op<Worker> {
  if (!(yield* ownerExists(w.owner_id))) throw notFound("owner", w.owner_id);
  const inserted = yield* all<Row>(
    `INSERT INTO workers (worker_id, owner_id, jwk, facts, cohort, registered_at)
     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING worker_id`,
    [
      w.worker_id,
      w.owner_id,
      toJsonText(w.jwk),
      toJsonText(w.facts),
      w.cohort ?? "default",
      w.registered_at,
    ],
  );
  if (inserted.length === 0) {
    throw conflict("this machine key is registered already", { worker: w.worker_id });
  }
  return yield* mustGetWorker(w.worker_id);
}

export function* enrollWorkerOp(input: EnrollInput): Op<EnrollResult> {
  if (input.expect_owner !== undefined) {
    const t = yield* one<Row>(
      "SELECT owner_id, secret_sha256 FROM enrollment_tokens WHERE id = ?",
      [input.token_id],
    );
    // Only for the holder of the secret: anyone else learns nothing about the token here
    // (refused below as unknown or mismatch, like any other).
    if (
      t !== undefined &&
      String(t.secret_sha256) === input.secret_sha256 &&
      String(t.owner_id) !== input.expect_owner
    ) {
      return { ok: false, reason: "owner_mismatch" };
    }
  }
  const token = yield* consumeEnrollmentTokenOp(input.token_id, input.secret_sha256, input.now);
  if (!token.ok) return token;
  const worker = yield* registerWorkerOp({ ...input.worker, owner_id: token.owner_id });
  return { ok: true, worker };
}

export const WORKER_PAGE_MAX = 10_000;

export function* listWorkersOp(q: WorkerQuery): Op<Worker[]> {
  const where: string[] = [];
  const params: Param[] = [];
  if (q.owner_id !== undefined) {
    where.push("owner_id = ?");
    params.push(q.owner_id);
  }
  if (q.cohort !== undefined) {
    where.push("cohort = ?");
    params.push(q.cohort);
  }
  if (q.after !== undefined) {
    where.push("worker_id > ?");
    params.push(q.after);
  }
  params.push(Math.min(Math.max(Math.trunc(q.limit ?? 1000), 1), WORKER_PAGE_MAX));
  const rows = yield* all<Row>(
    `SELECT ${WORKER_COLUMNS} FROM workers ${where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`}
     ORDER BY worker_id LIMIT ?`,
    params,
  );
  return rows.map(toWorker);
}

export function* setQuarantineOp(workerId: string, q: Quarantine | null): Op<Worker> {
  const changed = yield* run(
    "UPDATE workers SET quarantine_reason = ?, quarantined_at = ? WHERE worker_id = ?",
    [q?.reason ?? null, q?.at ?? null, workerId],
  );
  if (changed === 0) throw notFound("worker", workerId);
  return yield* mustGetWorker(workerId);
}

/** Under the worker's row lock: of two lifts racing, the second finds nothing to lift. */
export function* liftQuarantineOp(ctx: OpContext, workerId: string): Op<LiftedQuarantine> {
  const r = yield* one<Row>(
    `SELECT quarantine_reason, quarantined_at, decommissioned_at FROM workers
     WHERE worker_id = ?${forUpdate(ctx)}`,
    [workerId],
  );
  if (r === undefined) throw notFound("worker", workerId);
  if (r.decommissioned_at !== null) {
    throw conflict("this worker is decommissioned", { reason: "decommissioned" });
  }
  if (r.quarantine_reason === null) {
    throw conflict("this worker is not quarantined", { reason: "not_quarantined" });
  }
  const lifted: Quarantine = { reason: String(r.quarantine_reason), at: Number(r.quarantined_at) };
  yield* run(
    "UPDATE workers SET quarantine_reason = NULL, quarantined_at = NULL WHERE worker_id = ?",
    [workerId],
  );
  return { worker: yield* mustGetWorker(workerId), lifted };
}

/**
 * The first machine id is kept by one COALESCE update (it also locks the row), so of two
 * concurrent first attestations from different machines exactly one becomes the original
 * and the other is a clone.
 */
export function* recordAttestationOp(a: AttestationInput): Op<AttestationResult> {
  const first = yield* all<Row>(
    `UPDATE workers SET machine_id_sha256 = COALESCE(machine_id_sha256, ?)
     WHERE worker_id = ? RETURNING machine_id_sha256`,
    [a.machine_id_sha256, a.worker_id],
  );
  if (first[0] === undefined) throw notFound("worker", a.worker_id);
  const expected = String(first[0].machine_id_sha256);
  const verdict: AttestationVerdict =
    expected !== a.machine_id_sha256 ? "clone" : a.binary_allowed ? "ok" : "unknown_binary";
  yield* run(
    `UPDATE workers SET att_machine_id_sha256 = ?, att_binary_sha256 = ?, att_verdict = ?, att_at = ?
     WHERE worker_id = ?`,
    [a.machine_id_sha256, a.binary_sha256, verdict, a.at, a.worker_id],
  );
  return {
    worker_id: a.worker_id,
    machine_id_sha256: a.machine_id_sha256,
    binary_sha256: a.binary_sha256,
    verdict,
    at: a.at,
    expected_machine_id_sha256: expected,
  };
}
