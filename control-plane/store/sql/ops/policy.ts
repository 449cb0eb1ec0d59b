import { fail } from "../../../../lib/errors.ts";
import { conflict, notFound } from "../../errors.ts";
import type {
  Consent,
  ConsentPublished,
  Publication,
  PublishInput,
  Revocation,
  RevocationInput,
  StreamEvent,
} from "../../store.ts";
import { all, forUpdate, type Op, type OpContext, one, run } from "../op.ts";
import {
  CONSENT_COLUMNS,
  PUBLICATION_COLUMNS,
  REVOCATION_COLUMNS,
  type Row,
  toConsent,
  toPublication,
  toRevocation,
} from "../rows.ts";
import { allocateOp, consentSeqOp, raiseCounterOp } from "./allocate.ts";
import { appendStreamEventOp } from "./stream.ts";
import { lockWorker } from "./workers.ts";

/**
 * Under the worker's row lock, every check is made against what is stored at that moment:
 * the seq (above the highest accepted), a revocation covering it, a decommission. Whatever
 * the caller verified before is re-decided here, so a consent racing another consent, a
 * revocation or a decommission is refused rather than stored (a revocation or decommission
 * takes the same lock: storeRevocationOp).
 */
export function* acceptConsentOp(ctx: OpContext, c: Consent): Op<Consent> {
  const w = yield* lockWorker(ctx, c.worker_id);
  if (String(w.owner_id) !== c.owner_id) {
    throw fail("AGENTD_E_CP_FORBIDDEN", "the worker belongs to another owner", {
      worker: c.worker_id,
    });
  }
  if (w.decommissioned_at !== null) {
    throw fail("AGENTD_E_CP_FORBIDDEN", "this worker is decommissioned", {
      worker: c.worker_id,
      reason: "decommissioned",
    });
  }
  if (w.consent_seq !== null && c.seq <= Number(w.consent_seq)) {
    throw conflict(`consent seq ${c.seq} is not above the stored ${w.consent_seq}`, {
      reason: "seq",
      seq: c.seq,
      stored: Number(w.consent_seq),
    });
  }
  const revoked = yield* one<Row>(
    `SELECT MAX(through_seq) AS through FROM revocations
     WHERE worker_id = ? AND kind = 'revocation' AND through_seq >= ?`,
    [c.worker_id, c.seq],
  );
  if (revoked !== undefined && revoked.through !== null && revoked.through !== undefined) {
    throw conflict(`consent seq ${c.seq} is revoked`, {
      reason: "revoked",
      seq: c.seq,
      revoked_through_seq: Number(revoked.through),
    });
  }
  const inserted = yield* all<Row>(
    `INSERT INTO consents (${CONSENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT DO NOTHING RETURNING identity`,
    [c.identity, c.worker_id, c.owner_id, c.seq, c.jws, c.exp, c.accepted_at],
  );
  if (inserted.length === 0) throw conflict("this consent is stored already", { reason: "seq" });
  yield* run("UPDATE workers SET consent_seq = ? WHERE worker_id = ?", [c.seq, c.worker_id]);
  return c;
}

/**
 * The consent and the publication that countersigns it, in one transaction: no other
 * consent or publication can come between them (both take the worker's lock), and a
 * publication planned from a state that changed since is refused as `stale_plan` with
 * nothing stored — the consent included.
 */
export function* acceptConsentAndPublishOp(
  ctx: OpContext,
  c: Consent,
  input: Omit<PublishInput, "worker_id" | "consent_identity" | "expect_latest_consent">,
  build: (version: number) => string,
): Op<ConsentPublished> {
  const consent = yield* acceptConsentOp(ctx, c);
  const published = yield* publishOp(
    ctx,
    { ...input, worker_id: c.worker_id, consent_identity: c.identity },
    build,
  );
  return { consent, ...published };
}

export function* getConsentOp(identity: string): Op<Consent | null> {
  const r = yield* one<Row>(`SELECT ${CONSENT_COLUMNS} FROM consents WHERE identity = ?`, [
    identity,
  ]);
  return r === undefined ? null : toConsent(r);
}

export function* latestConsentOp(workerId: string): Op<Consent | null> {
  const r = yield* one<Row>(
    `SELECT ${CONSENT_COLUMNS} FROM consents WHERE worker_id = ? ORDER BY seq DESC LIMIT 1`,
    [workerId],
  );
  return r === undefined ? null : toConsent(r);
}

export interface Published {
  publication: Publication;
  event: StreamEvent;
}

export function* storePublicationOp(ctx: OpContext, p: Publication): Op<Published> {
  yield* lockWorker(ctx, p.worker_id);
  const inserted = yield* all<Row>(
    `INSERT INTO publications (${PUBLICATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT DO NOTHING RETURNING version`,
    [p.worker_id, p.version, p.consent_identity, p.jws, p.iat, p.exp, p.stop ? 1 : 0],
  );
  if (inserted.length === 0) {
    throw conflict(`version ${p.version} is published already`, { version: p.version });
  }
  // The latest pointer: within one consent it only moves up (two versions allocated, stored
  // in the other order). Versions are per consent (allocate.ts), so a publication of a newer
  // consent moves it whatever its version, and one of an older consent never does. A pointer
  // to no stored publication (a database edited) counts as none.
  const current = yield* latestPublicationOp(p.worker_id);
  const moves =
    current === null ||
    (current.consent_identity === p.consent_identity
      ? current.version < p.version
      : (yield* consentSeqOp(p.consent_identity)) >=
        (yield* consentSeqOp(current.consent_identity)));
  if (moves) {
    yield* run("UPDATE workers SET pub_version = ?, pub_exp = ? WHERE worker_id = ?", [
      p.version,
      p.exp,
      p.worker_id,
    ]);
  }
  yield* raiseCounterOp("last_version", p.worker_id, p.consent_identity, p.version);
  const event = yield* appendStreamEventOp({
    worker_id: p.worker_id,
    kind: "publication",
    ref: String(p.version),
    at: ctx.nowSeconds(),
  });
  return { publication: p, event };
}

export function* publishOp(
  ctx: OpContext,
  input: PublishInput,
  build: (version: number) => string,
): Op<Published> {
  if (input.expect_version !== undefined || input.expect_latest_consent === true) {
    // The worker's row lock first: both comparisons hold until the commit.
    const row = yield* one<Row>(
      `SELECT pub_version FROM workers WHERE worker_id = ?${forUpdate(ctx)}`,
      [input.worker_id],
    );
    if (row === undefined) throw notFound("worker", input.worker_id);
    // What a plan saw: latestPublication, so a pointer to nothing stored is none here too.
    const current = (yield* latestPublicationOp(input.worker_id))?.version ?? null;
    if (input.expect_version !== undefined && current !== input.expect_version) {
      throw conflict("the worker's publication changed since this one was planned", {
        reason: "stale_plan",
        expected: input.expect_version ?? "none",
        found: current ?? "none",
      });
    }
    if (input.expect_latest_consent === true && input.consent_identity !== null) {
      const latest = yield* latestConsentOp(input.worker_id);
      if (latest?.identity !== input.consent_identity) {
        throw conflict("the worker's consent changed since this publication was planned", {
          reason: "stale_plan",
          consent: "superseded",
        });
      }
    }
  }
  const version = yield* allocateOp(
    "last_version",
    input.worker_id,
    input.consent_identity,
    input.now_ms,
  );
  return yield* storePublicationOp(ctx, {
    worker_id: input.worker_id,
    version,
    consent_identity: input.consent_identity,
    jws: build(version),
    iat: input.iat,
    exp: input.exp,
    stop: input.stop,
  });
}

export function* latestPublicationOp(workerId: string): Op<Publication | null> {
  const r = yield* one<Row>(
    `SELECT ${prefixed("p", PUBLICATION_COLUMNS)} FROM workers w
     JOIN publications p ON p.worker_id = w.worker_id AND p.version = w.pub_version
     WHERE w.worker_id = ?`,
    [workerId],
  );
  return r === undefined ? null : toPublication(r);
}

/** Decommissioned workers are left out: nothing is re-issued to them. */
export function* publicationsExpiringOp(
  before: number,
  limit: number,
  after: { readonly exp: number; readonly worker_id: string } | undefined,
): Op<Publication[]> {
  // (exp, worker_id) > cursor, written out: row-value comparison reads the same on both.
  const cursor =
    after === undefined ? "" : " AND (w.pub_exp > ? OR (w.pub_exp = ? AND w.worker_id > ?))";
  const rows = yield* all<Row>(
    `SELECT ${prefixed("p", PUBLICATION_COLUMNS)} FROM workers w
     JOIN publications p ON p.worker_id = w.worker_id AND p.version = w.pub_version
     WHERE w.pub_exp < ? AND w.decommissioned_at IS NULL${cursor}
     ORDER BY w.pub_exp, w.worker_id LIMIT ?`,
    [
      before,
      ...(after === undefined ? [] : [after.exp, after.exp, after.worker_id]),
      Math.min(Math.max(Math.trunc(limit), 1), 10_000),
    ],
  );
  return rows.map(toPublication);
}

export interface Revoked {
  revocation: Revocation;
  event: StreamEvent;
}

export function* storeRevocationOp(ctx: OpContext, r: RevocationInput): Op<Revoked> {
  yield* lockWorker(ctx, r.worker_id);
  // Under the worker's lock, so two racing copies of one document cannot both be stored.
  const same = yield* one<Row>("SELECT id FROM revocations WHERE worker_id = ? AND jws = ?", [
    r.worker_id,
    r.jws,
  ]);
  if (same !== undefined) {
    throw conflict("this document is stored already", { reason: "duplicate", id: Number(same.id) });
  }
  const inserted = yield* all<Row>(
    `INSERT INTO revocations (worker_id, kind, through_seq, jws, at) VALUES (?, ?, ?, ?, ?)
     RETURNING id`,
    [r.worker_id, r.kind, r.through_seq, r.jws, r.at],
  );
  const id = Number(inserted[0]?.id);
  if (r.kind === "decommission") {
    yield* run(
      "UPDATE workers SET decommissioned_at = COALESCE(decommissioned_at, ?) WHERE worker_id = ?",
      [r.at, r.worker_id],
    );
  }
  const event = yield* appendStreamEventOp({
    worker_id: r.worker_id,
    kind: r.kind,
    ref: String(id),
    at: ctx.nowSeconds(),
  });
  return { revocation: { ...r, id }, event };
}

export function* listRevocationsOp(workerId: string): Op<Revocation[]> {
  const rows = yield* all<Row>(
    `SELECT ${REVOCATION_COLUMNS} FROM revocations WHERE worker_id = ? ORDER BY id`,
    [workerId],
  );
  return rows.map(toRevocation);
}

function prefixed(alias: string, columns: string): string {
  return columns
    .split(",")
    .map((c) => `${alias}.${c.trim()}`)
    .join(", ");
}
