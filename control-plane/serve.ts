import { join } from "node:path";
import type { Clock } from "../lib/clock.ts";
import { fail, isAgentdError } from "../lib/errors.ts";
import { writeFileAtomic } from "../lib/fs/atomic.ts";
import { readTrustedFile } from "../lib/fs/trust.ts";
import type { RateLimitConfig } from "../lib/http/rate-limit.ts";
import { parseJsonObjectStrict } from "../lib/json/strict-parse.ts";
import type { Logger } from "../lib/log/logger.ts";
import type { Timers } from "../lib/timers.ts";
import type { ApiContext, ApiGroup, ApiSettings } from "./api/context.ts";
import { allGroups } from "./api/index.ts";
import { loadControlPlaneKeys } from "./keys/load.ts";
import { compileSchemas } from "./protocol/validate.ts";
import { type RunningControlPlane, startControlPlane } from "./server.ts";
import { openStore } from "./store/open.ts";
import type { Store } from "./store/store.ts";

/**
 * `agentd cp serve`: a control plane from its directory (made by `agentd cp init`) —
 * schemas compiled, keys loaded and cross-checked, store opened and migrated, every endpoint
 * group started on the HTTPS listener — and one `close` that undoes it in reverse, however
 * many times it is called (a second signal, a test's cleanup after the CLI's).
 *
 * The directory:
 *
 *   DIR/keys/      the key directory (control-plane/keys/: root, working keys, CA, server)
 *   DIR/cp.db      the SQLite database, unless another was chosen at init
 *   DIR/cp.json    {"v": 1, "database": URL} (0600: a PostgreSQL URL may carry a password)
 */

export interface ControlPlaneLayout {
  readonly keys: string;
  readonly sqlite: string;
  readonly config: string;
}

export function layoutOf(dir: string): ControlPlaneLayout {
  return { keys: join(dir, "keys"), sqlite: join(dir, "cp.db"), config: join(dir, "cp.json") };
}

export function writeServeConfig(dir: string, c: { readonly database: string }): void {
  writeFileAtomic(layoutOf(dir).config, `${JSON.stringify({ v: 1, database: c.database })}\n`, {
    mode: 0o600,
  });
}

/** The database URL recorded at init. */
export function readServeConfig(dir: string): { readonly database: string } {
  const path = layoutOf(dir).config;
  let obj: Record<string, unknown>;
  try {
    obj = parseJsonObjectStrict(readTrustedFile(path, "private-key").toString("utf8"));
  } catch (err) {
    if (isAgentdError(err) && err.code === "AGENTD_E_IO" && err.context.errno === "ENOENT") {
      throw fail(
        "AGENTD_E_USAGE",
        `${dir} is not a control plane directory (no cp.json): run agentd cp init --dir first`,
        { path },
      );
    }
    throw err;
  }
  if (obj.v !== 1 || typeof obj.database !== "string" || Object.keys(obj).length !== 2) {
    throw fail("AGENTD_E_FILE_CORRUPT", `${path}: expected {"v": 1, "database": URL}`, { path });
  }
  return { database: obj.database };
}

/**
 * Rate limits unless told otherwise (docs/protocol.md, "Limits"). Per caller (an API key, a
 * machine): 20 requests a second, 100 at once — an agent makes one every few seconds, an
 * operator's tool a few a second. Per client address: 1,000 a second, 2,000 at once — a farm
 * of a thousand machines behind one NAT stays far below it; a flood from one address does
 * not. Both answer 429 AGENTD_E_CP_RATE_LIMITED with Retry-After.
 */
export const DEFAULT_RATE_LIMITS = Object.freeze({
  perIp: Object.freeze({ ratePerSecond: 1000, burst: 2000 }),
  perCaller: Object.freeze({ ratePerSecond: 20, burst: 100 }),
});

export function rateLimitsOf(given: ServeOptions["rateLimits"]): {
  perIp?: RateLimitConfig;
  perCaller?: RateLimitConfig;
} {
  const perIp = given?.perIp === undefined ? DEFAULT_RATE_LIMITS.perIp : given.perIp;
  const perCaller =
    given?.perCaller === undefined ? DEFAULT_RATE_LIMITS.perCaller : given.perCaller;
  return {
    ...(perIp === null ? {} : { perIp }),
    ...(perCaller === null ? {} : { perCaller }),
  };
}

export interface ServeOptions {
  readonly dir: string;
  readonly listen: { readonly host: string; readonly port: number };
  /** Default: the URL recorded by init in DIR/cp.json. */
  readonly database?: string;
  /** The origin agents and tokens use; default `https://<listen host>:<bound port>`. */
  readonly publicUrl?: string;
  readonly clock: Clock;
  /** Every wait of the control plane and its store (default: Node's); fake time in tests. */
  readonly timers?: Timers;
  readonly logger: Logger;
  readonly settings?: Partial<Omit<ApiSettings, "publicUrl">>;
  /**
   * Default DEFAULT_RATE_LIMITS; a member given as null is switched off (a benchmark whose
   * agents all come from 127.0.0.1, say).
   */
  readonly rateLimits?: {
    readonly perIp?: RateLimitConfig | null;
    readonly perCaller?: RateLimitConfig | null;
  };
  /** Default allGroups (control-plane/api/index.ts). */
  readonly groups?: (ctx: ApiContext) => readonly ApiGroup[];
}

export interface ServingControlPlane {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly caSha256: string;
  readonly rootKid: string;
  readonly caCertPem: string;
  readonly store: Store;
  readonly cp: RunningControlPlane;
  /** Stops the server, then closes the store; once, whoever calls. */
  close(): Promise<void>;
}

export async function serveControlPlane(o: ServeOptions): Promise<ServingControlPlane> {
  // A broken schema or key directory stops here, before anything listens.
  compileSchemas();
  const database = o.database ?? readServeConfig(o.dir).database;
  const keys = loadControlPlaneKeys(layoutOf(o.dir).keys);
  const store = openStore(database, {
    clock: o.clock,
    ...(o.timers === undefined ? {} : { timers: o.timers }),
  });
  let cp: RunningControlPlane;
  try {
    await store.migrate();
    cp = await startControlPlane({
      store,
      keys,
      clock: o.clock,
      ...(o.timers === undefined ? {} : { timers: o.timers }),
      logger: o.logger,
      listen: o.listen,
      groups: o.groups ?? allGroups,
      ...(o.publicUrl === undefined ? {} : { publicUrl: o.publicUrl }),
      ...(o.settings === undefined ? {} : { settings: o.settings }),
      rateLimits: rateLimitsOf(o.rateLimits),
    });
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    host: cp.host,
    port: cp.port,
    url: cp.url,
    caSha256: keys.caSha256,
    rootKid: keys.root.kid,
    caCertPem: keys.caCertPem,
    store,
    cp,
    close: () => {
      closing ??= (async () => {
        try {
          await cp.close();
        } finally {
          await store.close();
        }
      })();
      return closing;
    },
  };
}
