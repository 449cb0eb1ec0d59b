import { fail } from "../../../../lib/errors.ts";
import { conflict } from "../../errors.ts";
import type { OwnerRotation, OwnerRotationInput, StreamEvent } from "../../store.ts";
import { all, type Op, type OpContext, one } from "../op.ts";
import { OWNER_ROTATION_COLUMNS, type Row, toJsonText, toOwnerRotation } from "../rows.ts";
import { appendStreamEventOp } from "./stream.ts";
import { lockWorker } from "./workers.ts";

/**
 * Owner-key rotations (Store.storeOwnerRotation). Under the worker's lock — the same lock a
 * consent, a revocation and a decommission take — the chain is decided against what is
 * stored at that moment: two rotations signed by the same key racing cannot both be stored,
 * and neither can one older than the last.
 */

export interface Rotated {
  rotation: OwnerRotation;
  event: StreamEvent;
}

export function* storeOwnerRotationOp(ctx: OpContext, r: OwnerRotationInput): Op<Rotated> {
  const w = yield* lockWorker(ctx, r.worker_id);
  if (w.decommissioned_at !== null) {
    throw fail("AGENTD_E_CP_FORBIDDEN", "this worker is decommissioned", {
      worker: r.worker_id,
      reason: "decommissioned",
    });
  }
  const last = yield* one<Row>(
    `SELECT ${OWNER_ROTATION_COLUMNS} FROM owner_rotations WHERE worker_id = ?
     ORDER BY id DESC LIMIT 1`,
    [r.worker_id],
  );
  const same = yield* one<Row>("SELECT id FROM owner_rotations WHERE identity = ?", [r.identity]);
  if (same !== undefined) {
    throw conflict("this rotation is stored already", { reason: "duplicate", id: Number(same.id) });
  }
  const inForce = last === undefined ? String(w.owner_id) : String(last.to_owner);
  if (r.from_owner !== inForce) {
    throw conflict("the rotation is not signed by the worker's owner key in force", {
      reason: "owner_changed",
    });
  }
  if (last !== undefined && r.iat <= Number(last.iat)) {
    throw conflict(`the rotation's iat ${r.iat} is not later than the last one's`, {
      reason: "stale",
      last_iat: Number(last.iat),
    });
  }
  const inserted = yield* all<Row>(
    `INSERT INTO owner_rotations
       (worker_id, identity, from_owner, to_owner, new_owner_jwk, iat, jws, at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
    [
      r.worker_id,
      r.identity,
      r.from_owner,
      r.to_owner,
      toJsonText(r.new_owner_jwk),
      r.iat,
      r.jws,
      r.at,
    ],
  );
  const id = Number(inserted[0]?.id);
  const event = yield* appendStreamEventOp({
    worker_id: r.worker_id,
    kind: "owner_rotation",
    ref: String(id),
    at: ctx.nowSeconds(),
  });
  return { rotation: { ...r, id }, event };
}

export function* listOwnerRotationsOp(workerId: string): Op<OwnerRotation[]> {
  const rows = yield* all<Row>(
    `SELECT ${OWNER_ROTATION_COLUMNS} FROM owner_rotations WHERE worker_id = ? ORDER BY id`,
    [workerId],
  );
  return rows.map(toOwnerRotation);
}
