import type { StreamEvent } from "../store.ts";

/**
 * Store operations are generators that yield SQL requests and receive their results. One
 * operation body serves both backends: the SQLite driver runs it synchronously inside
 * `BEGIN IMMEDIATE … COMMIT` (no other code of the process can slip into the transaction, and
 * two connections in one process cannot wait on each other), the PostgreSQL driver runs it
 * asynchronously on one pooled client and can re-run it from the start when PostgreSQL
 * reports a deadlock or a serialization failure. Hence: an operation must have no side
 * effects outside the requests it yields (its callbacks may run more than once).
 *
 * SQL is written with `?` placeholders; the PostgreSQL driver numbers them.
 */

export type Dialect = "sqlite" | "postgres";

export type Param = string | number | null;

/** Advisory locks (PostgreSQL; SQLite's write transactions are already exclusive). */
export const LOCKS = Object.freeze({
  migrate: 0x61676e7464_01,
  audit: 0x61676e7464_02,
  keySet: 0x61676e7464_03,
  apiKeys: 0x61676e7464_04,
});
export type LockKey = (typeof LOCKS)[keyof typeof LOCKS];

export type SqlRequest =
  /** Rows of a query (or of a statement with RETURNING). */
  | { readonly kind: "all"; readonly sql: string; readonly params: readonly Param[] }
  /** Number of rows changed. */
  | { readonly kind: "run"; readonly sql: string; readonly params: readonly Param[] }
  /** DDL without parameters. */
  | { readonly kind: "exec"; readonly sql: string }
  /** Held until the transaction ends. */
  | { readonly kind: "lock"; readonly key: LockKey }
  /** Delivered to subscribers only if and when the transaction commits. */
  | { readonly kind: "notify"; readonly event: StreamEvent };

export type Op<T> = Generator<SqlRequest, T, unknown>;

/** What an operation may know about where it runs. */
export interface OpContext {
  readonly dialect: Dialect;
  /** The store's clock, integer Unix seconds (audit and stream-event stamps). */
  readonly nowSeconds: () => number;
}

export function* all<R>(sql: string, params: readonly Param[] = []): Op<R[]> {
  return (yield { kind: "all", sql, params }) as R[];
}

export function* one<R>(sql: string, params: readonly Param[] = []): Op<R | undefined> {
  const rows = yield* all<R>(sql, params);
  return rows[0];
}

export function* run(sql: string, params: readonly Param[] = []): Op<number> {
  return (yield { kind: "run", sql, params }) as number;
}

export function* exec(sql: string): Op<void> {
  yield { kind: "exec", sql };
}

export function* lock(key: LockKey): Op<void> {
  yield { kind: "lock", key };
}

export function* notify(event: StreamEvent): Op<void> {
  yield { kind: "notify", event };
}

/** Row lock for a read that is followed by a dependent write (no-op on SQLite, see above). */
export function forUpdate(ctx: OpContext): string {
  return ctx.dialect === "postgres" ? " FOR UPDATE" : "";
}

/** `?, ?, ?` */
export function placeholders(n: number): string {
  return Array.from({ length: n }, () => "?").join(", ");
}
