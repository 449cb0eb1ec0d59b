import type { Clock } from "../../lib/clock.ts";
import { fail } from "../../lib/errors.ts";
import type { Timers } from "../../lib/timers.ts";
import { openPostgresStore } from "./postgres.ts";
import { openSqliteStore } from "./sqlite.ts";
import type { Store } from "./store.ts";

export interface OpenStoreOptions {
  readonly clock?: Clock;
  /** PostgreSQL: pooled connections per process (default 10). */
  readonly poolSize?: number;
  /** PostgreSQL: its retry pause and LISTEN backoff (postgres.ts has the defaults). */
  readonly timers?: Timers;
}

/**
 * `sqlite:/path/to/cp.db` (also `sqlite:relative.db`, `sqlite::memory:`) or
 * `postgres://user@host:port/db` (`postgresql://` too; libpq-style query parameters as `pg`
 * supports them). Opening does not touch the schema: call `migrate()`.
 */
export function openStore(url: string, options: OpenStoreOptions = {}): Store {
  const clock = options.clock === undefined ? {} : { clock: options.clock };
  if (url.startsWith("sqlite:")) {
    const path = url.slice("sqlite:".length);
    if (path.length === 0) throw fail("AGENTD_E_USAGE", "sqlite: store URL without a path");
    return openSqliteStore(path, clock);
  }
  if (url.startsWith("postgres://") || url.startsWith("postgresql://")) {
    return openPostgresStore(url, {
      ...clock,
      ...(options.poolSize === undefined ? {} : { poolSize: options.poolSize }),
      ...(options.timers === undefined ? {} : { timers: options.timers }),
    });
  }
  // Never echo the URL: it may carry a password.
  throw fail("AGENTD_E_USAGE", "the store URL must start with sqlite: or postgres://");
}
