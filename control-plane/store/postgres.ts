import { createHash } from "node:crypto";
import pg from "pg";
import { type Clock, systemClock } from "../../lib/clock.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import { sleep, systemTimers, type Timers } from "../../lib/timers.ts";
import { storeError } from "./errors.ts";
import { PgListener, STREAM_CHANNEL } from "./postgres-listen.ts";
import type { Driver } from "./sql/driver.ts";
import type { Op, Param, SqlRequest } from "./sql/op.ts";
import { SqlStore } from "./sql/sql-store.ts";
import type { Store, StreamSubscription, Unsubscribe } from "./store.ts";

export interface PostgresStoreOptions {
  readonly clock?: Clock;
  /** Pooled connections per Store (per server process); default 10. */
  readonly poolSize?: number;
  /**
   * The pause before re-running a deadlocked transaction (`systemTimers` by default) and the
   * LISTEN connection's reconnection backoff (`backgroundTimers` by default).
   */
  readonly timers?: Timers;
}

/**
 * The scale-out store: PostgreSQL through a `pg` Pool; several server processes may share
 * one database.
 *
 * - Transactions run at READ COMMITTED with explicit row locks (`FOR UPDATE`), conditional
 *   updates, unique constraints and advisory transaction locks (migrations, audit head, key
 *   set): see the operations in sql/ops/. A transaction PostgreSQL aborts as a deadlock victim
 *   or for a serialization failure is re-run from the start, a few times.
 * - BIGINT columns come back as JavaScript numbers; a value beyond 2^53 is an error rather
 *   than a silently rounded number.
 * - Stream events: pg_notify inside the transaction, LISTEN in PgListener.
 */
export function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Store {
  const poolSize = options.poolSize ?? 10;
  const driver = new PgDriver(url, poolSize, options.timers);
  return new SqlStore(driver, options.clock ?? systemClock, {
    maxBatch: 2000,
    maxInFlight: Math.max(1, Math.min(4, poolSize - 1)),
  });
}

const INT8_OID = 20;
const RETRYABLE = new Set(["40001", "40P01"]);
const MAX_ATTEMPTS = 5;
/** Statements with at most this many parameters are prepared per connection (#query). */
const MAX_NAMED_PARAMS = 16;

function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) {
    throw fail("AGENTD_E_STORE", "a BIGINT value is outside ±(2^53 − 1)");
  }
  return n;
}

function typeOverrides(): pg.CustomTypesConfig {
  const types = new pg.TypeOverrides();
  types.setTypeParser(INT8_OID, parseInt8);
  return types;
}

/** `?` placeholders to `$1, $2, …` (the SQL of sql/ops has no `?` inside literals). */
function numbered(sql: string): string {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
}

class PgDriver implements Driver {
  readonly dialect = "postgres" as const;
  readonly #pool: pg.Pool;
  readonly #listener: PgListener;
  readonly #timers: Timers;
  readonly #sql = new Map<string, { readonly text: string; readonly name?: string }>();

  constructor(url: string, poolSize: number, timers: Timers | undefined) {
    const types = typeOverrides();
    this.#timers = timers ?? systemTimers;
    this.#pool = new pg.Pool({ connectionString: url, max: poolSize, types });
    // An idle client's connection dropped: the pool discards it; the next query reconnects.
    this.#pool.on("error", () => {});
    this.#listener = new PgListener({ connectionString: url, types }, timers);
  }

  async transact<T>(op: () => Op<T>, mode: "read" | "write"): Promise<T> {
    if (mode === "read") {
      const single = await this.#singleStatementRead(op);
      if (single.done) return single.value;
    }
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.#pool.connect();
      } catch (e) {
        throw storeError("postgres", e);
      }
      let broken = false;
      try {
        await client.query(
          mode === "read" ? "BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ" : "BEGIN",
        );
        const gen = op();
        let step = gen.next();
        while (!step.done) step = gen.next(await this.#execute(client, step.value));
        await client.query("COMMIT");
        client.release();
        return step.value;
      } catch (e) {
        try {
          await client.query("ROLLBACK");
        } catch {
          broken = true;
        }
        const code = (e as { code?: unknown }).code;
        if (!isAgentdError(e) && typeof code === "string" && RETRYABLE.has(code)) {
          if (attempt < MAX_ATTEMPTS) {
            client.release(broken);
            await sleep(this.#timers, Math.floor(Math.random() * 10 * attempt));
            continue;
          }
        }
        client.release(broken);
        throw isAgentdError(e) ? e : storeError("postgres", e);
      }
    }
  }

  /**
   * Most reads are one SELECT, which sees one snapshot by itself: run it without
   * BEGIN/COMMIT (one round trip instead of three). If the operation asks for a second
   * statement, its first result may come from another snapshot than the second would, so it
   * is abandoned (`done: false`) and run again from the start in a transaction; an operation
   * is a pure function of its results, so running it again is safe.
   */
  async #singleStatementRead<T>(
    op: () => Op<T>,
  ): Promise<{ readonly done: true; readonly value: T } | { readonly done: false }> {
    const gen = op();
    const first = gen.next();
    if (first.done) return { done: true, value: first.value };
    // Only a SELECT: outside BEGIN READ ONLY nothing else would stop a write.
    if (first.value.kind !== "all" || !/^\s*SELECT\b/i.test(first.value.sql)) {
      return { done: false };
    }
    let result: unknown;
    try {
      result = await this.#execute(this.#pool, first.value);
    } catch (e) {
      throw isAgentdError(e) ? e : storeError("postgres", e);
    }
    const second = gen.next(result);
    return second.done ? { done: true, value: second.value } : { done: false };
  }

  async #execute(client: pg.PoolClient | pg.Pool, req: SqlRequest): Promise<unknown> {
    switch (req.kind) {
      case "all":
        return (await client.query(this.#query(req.sql, req.params))).rows;
      case "run":
        return (await client.query(this.#query(req.sql, req.params))).rowCount ?? 0;
      case "exec":
        await client.query(req.sql);
        return undefined;
      case "lock":
        await client.query("SELECT pg_advisory_xact_lock($1)", [req.key]);
        return undefined;
      case "notify":
        await client.query("SELECT pg_notify($1, $2)", [STREAM_CHANNEL, JSON.stringify(req.event)]);
        return undefined;
    }
  }

  /**
   * The query config: statements with few parameters (the per-request ones) are named, so
   * each connection parses and plans them once (a prepared statement); multi-row batches,
   * whose text changes with their size, are not, so connections do not collect one per size.
   */
  #query(sql: string, params: readonly Param[]): pg.QueryConfig {
    let prepared = this.#sql.get(sql);
    if (prepared === undefined) {
      const text = numbered(sql);
      prepared = {
        text,
        ...(params.length <= MAX_NAMED_PARAMS
          ? { name: `s${createHash("sha256").update(text).digest("hex").slice(0, 24)}` }
          : {}),
      };
      if (this.#sql.size >= 1024) this.#sql.clear();
      this.#sql.set(sql, prepared);
    }
    return { ...prepared, values: [...params] };
  }

  subscribe(subscription: StreamSubscription): Promise<Unsubscribe> {
    return this.#listener.subscribe(subscription);
  }

  async close(): Promise<void> {
    await this.#listener.close();
    await this.#pool.end();
  }
}
