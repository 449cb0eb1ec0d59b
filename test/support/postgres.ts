import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import pg from "pg";

/**
 * A real PostgreSQL for the tests: a throwaway cluster (initdb + pg_ctl, Debian's
 * `postgresql` package) in a temp dir on a free loopback port, started once per test run by
 * test/support/pg-global-setup.ts. As root, the server runs as the `postgres` system user
 * (PostgreSQL refuses to run as root). Test files get a fresh database each with
 * `createTestDatabase()`. Missing binaries fail the tests that need them, with the reason.
 */

declare module "vitest" {
  export interface ProvidedContext {
    agentdPostgres: { readonly url: string } | { readonly error: string };
  }
}

export interface PostgresServer {
  /** The `postgres` database as the `postgres` superuser (trust auth on 127.0.0.1). */
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  stop(): void;
}

export const MISSING_POSTGRES =
  "PostgreSQL is needed by these tests but initdb/pg_ctl were found neither on PATH nor in " +
  "/usr/lib/postgresql/*/bin: install Debian's `postgresql` package (./scripts/test does so " +
  "when run as root)";

/** The directory holding initdb and pg_ctl: PATH first, then the newest Debian version. */
export function findPostgresBin(): string | null {
  const has = (dir: string) => existsSync(join(dir, "initdb")) && existsSync(join(dir, "pg_ctl"));
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir !== "" && has(dir)) return dir;
  }
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return null;
  const versions = readdirSync(base)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const dir = join(base, v, "bin");
    if (has(dir)) return dir;
  }
  return null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const address = s.address();
      s.close(() => {
        if (address !== null && typeof address === "object") resolve(address.port);
        else reject(new Error("no port"));
      });
    });
  });
}

export async function startPostgres(): Promise<PostgresServer> {
  const bin = findPostgresBin();
  if (bin === null) throw new Error(MISSING_POSTGRES);
  const asRoot = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), "agentd-pg-"));
  const asServerUser = (cmd: string, args: string[]): [string, string[]] =>
    asRoot
      ? ["runuser", ["-u", "postgres", "--", join(bin, cmd), ...args]]
      : [join(bin, cmd), args];
  try {
    if (asRoot) {
      const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
      const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
      chownSync(dir, uid, gid);
    }
    const data = join(dir, "data");
    const [initCmd, initArgs] = asServerUser("initdb", [
      "-D",
      data,
      "--auth=trust",
      "-U",
      "postgres",
      "-E",
      "UTF8",
      "--no-sync",
    ]);
    execFileSync(initCmd, initArgs, { stdio: "pipe" });
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const [cmd, args] = asServerUser("pg_ctl", [
        "-D",
        data,
        "-l",
        join(dir, "server.log"),
        "-w",
        "-t",
        "60",
        "-o",
        `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=400`,
        "start",
      ]);
      const r = spawnSync(cmd, args, { stdio: "pipe", encoding: "utf8" });
      if (r.status === 0) {
        const stop = () => {
          const [sc, sa] = asServerUser("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
          spawnSync(sc, sa, { stdio: "ignore" });
          rmSync(dir, { recursive: true, force: true });
        };
        return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, port, dir, stop };
      }
      lastError = new Error(`pg_ctl start failed: ${r.stderr}\n${readLog(dir)}`);
    }
    throw lastError;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

function readLog(dir: string): string {
  try {
    return readFileSync(join(dir, "server.log"), "utf8").slice(-2000);
  } catch {
    return "";
  }
}

/** The server URL from the global setup; throws the setup's reason if it has none. */
export async function testPostgresUrl(): Promise<string> {
  const { inject } = await import("vitest");
  const info = inject("agentdPostgres");
  if (info === undefined) {
    throw new Error("test/support/pg-global-setup.ts did not run (see vitest.config.ts)");
  }
  if ("error" in info) throw new Error(info.error);
  return info.url;
}

/** A new, empty database on the test server; returns its URL. */
export async function createTestDatabase(prefix = "t"): Promise<string> {
  const url = await testPostgresUrl();
  const name = `${prefix}_${randomBytes(6).toString("hex")}`;
  await adminQuery(url, `CREATE DATABASE ${name}`);
  return databaseUrl(url, name);
}

/** `url` with its database replaced by `name`. */
export function databaseUrl(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** One statement on its own connection (CREATE DATABASE … cannot run in a transaction). */
export async function adminQuery(url: string, sql: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}
