import { DatabaseSync, type StatementSync } from "node:sqlite";
import { type Clock, systemClock } from "../../lib/clock.ts";
import { isAgentdError } from "../../lib/errors.ts";
import { storeError } from "./errors.ts";
import type { Driver } from "./sql/driver.ts";
import type { Op, SqlRequest } from "./sql/op.ts";
import { SqlStore } from "./sql/sql-store.ts";
import type { Store, StreamEvent, StreamSubscription, Unsubscribe } from "./store.ts";

export interface SqliteStoreOptions {
  readonly clock?: Clock;
  /** How long a writer waits for another process's write transaction (ms); default 10 000. */
  readonly busyTimeoutMs?: number;
}

/**
 * The embedded store: one SQLite file through node:sqlite.
 *
 * - WAL, so readers never wait for the writer; `synchronous=FULL`, so a committed transaction
 *   (the WAL fsync) survives a power cut, which is what "durably committed" means here.
 * - Every transaction runs synchronously from BEGIN to COMMIT (the operations are generators,
 *   see sql/op.ts): nothing else in this process can interleave, and two connections in one
 *   process never wait on each other. Write transactions start with BEGIN IMMEDIATE, taking
 *   the write lock up front, so a read-then-write never needs a lock upgrade (which WAL would
 *   refuse with SQLITE_BUSY rather than wait); other processes wait up to the busy timeout.
 * - Stream events are delivered to this Store's subscribers after the commit; other
 *   processes sharing the file do not see them (use PostgreSQL to scale out).
 */
export function openSqliteStore(path: string, options: SqliteStoreOptions = {}): Store {
  const driver = new SqliteDriver(path, options.busyTimeoutMs ?? 10_000);
  return new SqlStore(driver, options.clock ?? systemClock, { maxBatch: 2000, maxInFlight: 1 });
}

class SqliteDriver implements Driver {
  readonly dialect = "sqlite" as const;
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();
  readonly #subscribers = new Set<StreamSubscription>();

  constructor(path: string, busyTimeoutMs: number) {
    try {
      this.#db = new DatabaseSync(path, { enableForeignKeyConstraints: true });
      this.#db.exec(`PRAGMA busy_timeout = ${Math.trunc(busyTimeoutMs)}`);
      this.#db.exec("PRAGMA journal_mode = WAL");
      this.#db.exec("PRAGMA synchronous = FULL");
    } catch (e) {
      throw storeError("sqlite", e);
    }
  }

  transact<T>(op: () => Op<T>, mode: "read" | "write"): Promise<T> {
    try {
      return Promise.resolve(this.#transact(op, mode));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #transact<T>(op: () => Op<T>, mode: "read" | "write"): T {
    const committed: StreamEvent[] = [];
    let result: T;
    try {
      this.#db.exec(mode === "write" ? "BEGIN IMMEDIATE" : "BEGIN");
      const gen = op();
      let step = gen.next();
      while (!step.done) step = gen.next(this.#execute(step.value, committed));
      result = step.value;
      this.#db.exec("COMMIT");
    } catch (e) {
      if (this.#db.isOpen && this.#db.isTransaction) {
        try {
          this.#db.exec("ROLLBACK");
        } catch {
          // The original error is the one to report.
        }
      }
      throw isAgentdError(e) ? e : storeError("sqlite", e);
    }
    for (const event of committed) this.#deliver(event);
    return result;
  }

  #execute(req: SqlRequest, committed: StreamEvent[]): unknown {
    switch (req.kind) {
      case "all":
        return this.#statement(req.sql).all(...req.params);
      case "run":
        return Number(this.#statement(req.sql).run(...req.params).changes);
      case "exec":
        this.#db.exec(req.sql);
        return undefined;
      case "lock":
        // BEGIN IMMEDIATE already excludes every other writer.
        return undefined;
      case "notify":
        committed.push(req.event);
        return undefined;
    }
  }

  #statement(sql: string): StatementSync {
    let s = this.#statements.get(sql);
    if (s === undefined) {
      s = this.#db.prepare(sql);
      // Heartbeat batches make many distinct multi-row statements: keep the cache bounded.
      if (this.#statements.size >= 512) this.#statements.clear();
      this.#statements.set(sql, s);
    }
    return s;
  }

  #deliver(event: StreamEvent): void {
    for (const s of this.#subscribers) {
      try {
        s.onEvent(event);
      } catch {
        // A subscriber's failure is its own; the others still get the event.
      }
    }
  }

  subscribe(subscription: StreamSubscription): Promise<Unsubscribe> {
    this.#subscribers.add(subscription);
    return Promise.resolve(async () => {
      this.#subscribers.delete(subscription);
    });
  }

  close(): Promise<void> {
    this.#subscribers.clear();
    this.#statements.clear();
    try {
      if (this.#db.isOpen) this.#db.close();
    } catch (e) {
      return Promise.reject(storeError("sqlite", e));
    }
    return Promise.resolve();
  }
}
