import { conflict } from "../../errors.ts";
import type { KeySetRecord } from "../../store.ts";
import { all, LOCKS, lock, type Op, one } from "../op.ts";
import type { Row } from "../rows.ts";

/** Under a lock, so that concurrent rotations are stored in strictly increasing seq order. */
export function* storeKeySetOp(k: KeySetRecord): Op<KeySetRecord> {
  yield* lock(LOCKS.keySet);
  const cur = yield* one<Row>("SELECT MAX(seq) AS seq FROM key_sets");
  const current = cur?.seq === null || cur?.seq === undefined ? null : Number(cur.seq);
  if (current !== null && k.seq <= current) {
    throw conflict(`key set seq ${k.seq} is not above the current ${current}`, {
      seq: k.seq,
      current,
    });
  }
  yield* all<Row>("INSERT INTO key_sets (seq, jws, stored_at) VALUES (?, ?, ?) RETURNING seq", [
    k.seq,
    k.jws,
    k.stored_at,
  ]);
  return k;
}

export function* currentKeySetOp(): Op<KeySetRecord | null> {
  const r = yield* one<Row>("SELECT seq, jws, stored_at FROM key_sets ORDER BY seq DESC LIMIT 1");
  return r === undefined
    ? null
    : { seq: Number(r.seq), jws: String(r.jws), stored_at: Number(r.stored_at) };
}
