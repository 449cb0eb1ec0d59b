import { closeSync, lstatSync, mkdirSync, openSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { type Clock, unixSeconds } from "../lib/clock.ts";
import { fail } from "../lib/errors.ts";
import { ioError } from "../lib/fs/trust.ts";
import { newApiKey } from "./api/owners.ts";
import { FILES } from "./keys/files.ts";
import { initControlPlaneKeys } from "./keys/init.ts";
import { layoutOf, writeServeConfig } from "./serve.ts";
import { openStore } from "./store/open.ts";

/**
 * A new control plane directory (the layout serve.ts reads): the key directory with the CA,
 * the server certificate, the root and per-use keys and the key set they sign; the database,
 * migrated, with the key set stored and the first admin API key (only its hash); and
 * `cp.json` naming the database. The admin key is returned once, in the clear.
 */

export interface InitResult {
  readonly api_key: string;
  readonly key_id: string;
  readonly role: "admin";
  readonly dir: string;
  readonly ca_file: string;
  readonly ca_sha256: string;
  readonly root_kid: string;
}

/**
 * Everything `agentd cp init` does (and `agentd devnet`, and tests that need a control plane
 * on disk); on failure the new directory is removed again.
 */
export async function initControlPlaneDir(o: {
  readonly dir: string;
  readonly hosts?: readonly string[];
  readonly database?: string;
  readonly clock: Clock;
}): Promise<InitResult> {
  const dir = resolve(o.dir);
  const layout = layoutOf(dir);
  const database = absoluteSqlite(o.database ?? `sqlite:${layout.sqlite}`);
  createNewDirectory(dir);
  try {
    const now = unixSeconds(o.clock);
    const keys = initControlPlaneKeys(layout.keys, {
      ...(o.hosts === undefined ? {} : { hosts: o.hosts }),
      now,
    });
    writeServeConfig(dir, { database });
    if (database.startsWith("sqlite:/")) createPrivateFile(database.slice("sqlite:".length));
    const store = openStore(database, { clock: o.clock });
    try {
      await store.migrate();
      // One admin per database: a second init on a shared PostgreSQL must not mint another.
      if ((await store.countApiKeys("admin")) > 0) {
        throw fail(
          "AGENTD_E_CP_CONFLICT",
          "this database already has an admin API key (it belongs to another control plane directory)",
        );
      }
      await store.storeKeySet(
        { seq: keys.keyset.seq, jws: keys.keysetJws, stored_at: now },
        {
          audit: {
            actor: "system",
            type: "keys.initialized",
            object: "keyset",
            data: { seq: keys.keyset.seq, root_kid: keys.root.kid, ca_sha256: keys.caSha256 },
          },
        },
      );
      const admin = newApiKey("admin", null, null, now);
      await store.createApiKey(admin.record, {
        audit: {
          actor: "system",
          type: "apikey.created",
          object: `apikey:${admin.record.id}`,
          data: { key_id: admin.record.id, role: "admin", owner: null, by: "agentd cp init" },
        },
      });
      return {
        api_key: admin.key,
        key_id: admin.record.id,
        role: "admin",
        dir,
        ca_file: join(layout.keys, FILES.caCert),
        ca_sha256: keys.caSha256,
        root_kid: keys.root.kid,
      };
    } finally {
      await store.close();
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

function createNewDirectory(dir: string): void {
  let exists = true;
  try {
    lstatSync(dir);
  } catch {
    exists = false;
  }
  if (exists) {
    throw fail("AGENTD_E_FILE_EXISTS", `${dir}: exists; agentd cp init makes a new directory`, {
      path: dir,
    });
  }
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    throw ioError(dir, "create", err);
  }
}

/** A relative SQLite path made absolute: `serve` may run from another directory. */
function absoluteSqlite(url: string): string {
  if (!url.startsWith("sqlite:") || url === "sqlite::memory:") return url;
  return `sqlite:${resolve(url.slice("sqlite:".length))}`;
}

/**
 * A new SQLite file is made with mode 0600 before SQLite opens it (SQLite would use the
 * umask); an existing one is left as it is (the admin check below decides about it).
 */
function createPrivateFile(path: string): void {
  try {
    closeSync(openSync(path, "wx", 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return;
    throw ioError(path, "create", err);
  }
}
