import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, afterEach, beforeEach, expect } from "vitest";
import { openStore } from "../../../control-plane/store/open.ts";
import type { Store } from "../../../control-plane/store/store.ts";
import { type Clock, fixedClock } from "../../../lib/clock.ts";
import { isAgentdError } from "../../../lib/errors.ts";
import { adminQuery, createTestDatabase, databaseUrl } from "../../support/postgres.ts";

/** What the shared suite needs from a backend besides the Store itself. */
export interface Backend {
  readonly name: "sqlite" | "postgres";
  /** A new empty database. */
  freshUrl(): Promise<string>;
  /** A copy of a database no Store has open (a backup to restore later). */
  copy(url: string): Promise<string>;
  /** One raw statement (to tamper with the data or the schema behind the store's back). */
  raw(url: string, sql: string): Promise<void>;
}

export function sqliteBackend(): Backend {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const fresh = () => {
    const d = mkdtempSync(join(tmpdir(), "agentd-store-"));
    dirs.push(d);
    return d;
  };
  return {
    name: "sqlite",
    freshUrl: async () => `sqlite:${join(fresh(), "cp.db")}`,
    copy: async (url) => {
      const to = join(fresh(), "cp.db");
      // Closing the last connection checkpoints the WAL into the main file.
      copyFileSync(url.slice("sqlite:".length), to);
      return `sqlite:${to}`;
    },
    raw: async (url, sql) => {
      const db = new DatabaseSync(url.slice("sqlite:".length));
      try {
        db.exec(sql);
      } finally {
        db.close();
      }
    },
  };
}

export function postgresBackend(): Backend {
  return {
    name: "postgres",
    freshUrl: () => createTestDatabase("store"),
    copy: async (url) => {
      const source = new URL(url).pathname.slice(1);
      const name = `${source}_copy_${Math.floor(Math.random() * 1e9)}`;
      await adminQuery(databaseUrl(url, "postgres"), `CREATE DATABASE ${name} TEMPLATE ${source}`);
      return databaseUrl(url, name);
    },
    raw: async (url, sql) => {
      await adminQuery(url, sql);
    },
  };
}

export const T0 = 1_800_000_000;

/** Per test: a fresh migrated database, and any number of Stores on it, closed afterwards. */
export interface StoreFixture {
  readonly backend: Backend;
  readonly clock: ReturnType<typeof fixedClock>;
  url(): string;
  /** The test's first Store. */
  store(): Store;
  /** Another Store (another connection or pool) on the same database, migrated. */
  open(url?: string, clock?: Clock): Promise<Store>;
  /** Closes a Store early (e.g. before copying the database). */
  close(store: Store): Promise<void>;
}

export function useStore(backend: Backend): StoreFixture {
  let url = "";
  let first: Store | null = null;
  const opened = new Set<Store>();
  const clock = fixedClock(T0 * 1000);
  const fixture: StoreFixture = {
    backend,
    clock,
    url: () => url,
    store: () => {
      if (first === null) throw new Error("no store yet");
      return first;
    },
    open: async (at = url, c: Clock = clock) => {
      const s = openStore(at, { clock: c, poolSize: 6 });
      opened.add(s);
      await s.migrate();
      return s;
    },
    close: async (s) => {
      opened.delete(s);
      await s.close();
    },
  };
  beforeEach(async () => {
    clock.set(T0 * 1000);
    url = await backend.freshUrl();
    first = await fixture.open(url);
  });
  afterEach(async () => {
    const all = [...opened];
    opened.clear();
    first = null;
    await Promise.all(all.map((s) => s.close()));
  });
  return fixture;
}

/** Awaits `p` and checks that it fails with `code`. */
export async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, `expected ${code}`).not.toBeNull();
  expect(isAgentdError(e) ? e.code : e).toBe(code);
}

export const OWNER = "owner-1";
export const WORKER = "worker-1";

/** An owner and one worker: what most tests start from. */
export async function seed(store: Store, workerIds: readonly string[] = [WORKER]): Promise<void> {
  await store.createOwner({
    id: OWNER,
    jwk: { kty: "OKP", crv: "Ed25519", x: "owner" },
    created_at: T0,
  });
  for (const w of workerIds) {
    await store.registerWorker({
      worker_id: w,
      owner_id: OWNER,
      jwk: { kty: "OKP", crv: "Ed25519", x: w },
      facts: { os: "linux", cores: 4 },
      registered_at: T0,
    });
  }
}

export const hex = (c: string) => c.repeat(64).slice(0, 64);

/** Accepts a consent (identity hex(`id`)) for the worker: commands are issued under one. */
export async function consentIn(store: Store, id = "c", seq = 1, worker = WORKER): Promise<string> {
  await store.acceptConsent({
    identity: hex(id),
    worker_id: worker,
    owner_id: OWNER,
    seq,
    jws: `consent-${id}`,
    exp: T0 + 86_400,
    accepted_at: T0,
  });
  return hex(id);
}
