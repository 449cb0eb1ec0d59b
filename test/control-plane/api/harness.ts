/**
 * A real control plane for API tests: keys made by initControlPlaneKeys in a temp dir, a real
 * store (SQLite file, or a fresh PostgreSQL database from the run's cluster), the real HTTPS
 * server on 127.0.0.1 port 0 with the endpoint groups under test, and a settable clock.
 * Test fixtures (owners, machines with access tokens) are made directly in the store, so a
 * group can be tested without the groups that would otherwise create them.
 */
import { createHash, type KeyObject, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach } from "vitest";
import type { ApiContext, ApiGroup, ApiSettings } from "../../../control-plane/api/context.ts";
import { initControlPlaneKeys } from "../../../control-plane/keys/init.ts";
import { loadControlPlaneKeys } from "../../../control-plane/keys/load.ts";
import { createProof } from "../../../control-plane/protocol/proof.ts";
import type { Method as HttpMethod } from "../../../control-plane/protocol/roles.ts";
import { type RunningControlPlane, startControlPlane } from "../../../control-plane/server.ts";
import { openStore } from "../../../control-plane/store/open.ts";
import type { Role, Store } from "../../../control-plane/store/store.ts";
import { fixedClock } from "../../../lib/clock.ts";
import { encodeBase64url } from "../../../lib/crypto/base64url.ts";
import { generateEd25519KeyPair, jwkThumbprint, publicJwk } from "../../../lib/crypto/ed25519.ts";
import { createLogger } from "../../../lib/log/logger.ts";
import { createTestDatabase } from "../../support/postgres.ts";

/** 2026-11-01T00:00:00Z: tests move the clock from here. */
export const T0_MS = 1_793_491_200_000;

export type TestClock = ReturnType<typeof fixedClock>;

export interface TestMachine {
  readonly workerId: string;
  readonly ownerId: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly accessToken: string;
}

export interface TestOwner {
  readonly ownerId: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** A Bearer API key with role owner for this owner. */
  readonly apiKey: string;
}

export interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  // biome-ignore lint/suspicious/noExplicitAny: test convenience: replies are asserted field by field
  readonly json: any;
}

export interface CallOptions {
  /** A Bearer API key. */
  readonly apiKey?: string;
  /** Machine authentication: access token + a fresh proof for this method and URL. */
  readonly machine?: TestMachine;
  /** With `machine`: false sends the access token without a proof (the heartbeat's way). */
  readonly proof?: boolean;
  /** A JSON body (serialised), or a raw string/Buffer. */
  readonly body?: unknown;
  readonly raw?: string | Buffer;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface TestCp {
  readonly cp: RunningControlPlane;
  readonly ctx: ApiContext;
  readonly store: Store;
  readonly clock: TestClock;
  readonly url: string;
  readonly caPem: string;
  readonly dir: string;
  /** The store's URL and the key directory: give them to a second instance to share them. */
  readonly databaseUrl: string;
  readonly keysDir: string;
  /** A Bearer API key with role admin. */
  readonly adminKey: string;
  call(method: HttpMethod, path: string, options?: CallOptions): Promise<Reply>;
  apiKey(role: Role, ownerId?: string): Promise<string>;
  owner(): Promise<TestOwner>;
  machine(owner: TestOwner, options?: { cohort?: string }): Promise<TestMachine>;
}

export interface StartOptions {
  readonly groups: (ctx: ApiContext) => readonly ApiGroup[];
  readonly backend?: "sqlite" | "postgres";
  readonly settings?: Partial<Omit<ApiSettings, "publicUrl">>;
  /** Rate limits (default: none, as startControlPlane). */
  readonly rateLimits?: Parameters<typeof startControlPlane>[0]["rateLimits"];
  /**
   * Another instance's `databaseUrl`: this one serves the same database (several `agentd cp
   * serve` on one PostgreSQL). Not dropped or removed by this instance.
   */
  readonly databaseUrl?: string;
  /** Another instance's `keysDir`: the same keys and CA (loaded, not created). */
  readonly keysDir?: string;
}

const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");

/** Started control planes are closed (and their stores and dirs removed) after each test. */
export function useTestCp(): (options: StartOptions) => Promise<TestCp> {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return async (options) => {
    const dir = mkdtempSync(join(tmpdir(), "agentd-cp-test-"));
    const clock = fixedClock(T0_MS);
    const keysDir = options.keysDir ?? join(dir, "keys");
    const keys =
      options.keysDir === undefined
        ? initControlPlaneKeys(keysDir, {
            hosts: ["127.0.0.1"],
            now: Math.floor(T0_MS / 1000) - 60,
          })
        : loadControlPlaneKeys(keysDir);
    const url =
      options.databaseUrl ??
      (options.backend === "postgres"
        ? await createTestDatabase("api")
        : `sqlite:${join(dir, "cp.db")}`);
    const store = openStore(url, { clock });
    await store.migrate();
    const cp = await startControlPlane({
      store,
      keys,
      clock,
      logger: createLogger({ level: "silent" }),
      listen: { host: "127.0.0.1", port: 0 },
      groups: options.groups,
      ...(options.settings === undefined ? {} : { settings: options.settings }),
      ...(options.rateLimits === undefined ? {} : { rateLimits: options.rateLimits }),
    });
    cleanups.push(async () => {
      await cp.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const apiKey = async (role: Role, ownerId?: string): Promise<string> => {
      const key = `agentd_${role}_${encodeBase64url(randomBytes(32))}`;
      await store.createApiKey({
        id: encodeBase64url(randomBytes(16)),
        role,
        owner_id: ownerId ?? null,
        key_sha256: sha256(key),
        created_at: Math.floor(clock.now() / 1000),
        created_by: null,
      });
      return key;
    };
    const adminKey = await apiKey("admin");

    const call = (method: HttpMethod, path: string, o: CallOptions = {}): Promise<Reply> => {
      const headers: Record<string, string> = { ...o.headers };
      let body: string | Buffer | undefined = o.raw;
      if (o.body !== undefined) {
        body = JSON.stringify(o.body);
        headers["content-type"] ??= "application/json";
      }
      // Node sends a DELETE's body neither chunked nor sized unless told its length.
      if (body !== undefined) headers["content-length"] ??= String(Buffer.byteLength(body));
      if (o.apiKey !== undefined) headers.authorization = `Bearer ${o.apiKey}`;
      if (o.machine !== undefined) {
        headers.authorization = `AgentD ${o.machine.accessToken}`;
        if (o.proof !== false) {
          headers["agentd-proof"] = createProof({
            privateKey: o.machine.privateKey,
            method,
            url: `${cp.url}${path}`,
            accessToken: o.machine.accessToken,
            clock,
          });
        }
      }
      return new Promise((resolve, reject) => {
        const req = request(
          `${cp.url}${path}`,
          { method, headers, ca: keys.caCertPem, agent: false },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => {
              const text = Buffer.concat(chunks).toString("utf8");
              let json: unknown;
              try {
                json = text === "" ? undefined : JSON.parse(text);
              } catch {
                json = undefined;
              }
              resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
            });
            res.on("error", reject);
          },
        );
        req.on("error", reject);
        req.end(body);
      });
    };

    const owner = async (): Promise<TestOwner> => {
      const pair = generateEd25519KeyPair();
      const ownerId = jwkThumbprint(pair.publicKey);
      await store.createOwner({
        id: ownerId,
        jwk: { ...publicJwk(pair.publicKey) },
        created_at: Math.floor(clock.now() / 1000),
      });
      return { ownerId, ...pair, apiKey: await apiKey("owner", ownerId) };
    };

    const machine = async (o: TestOwner, m: { cohort?: string } = {}): Promise<TestMachine> => {
      const pair = generateEd25519KeyPair();
      const workerId = jwkThumbprint(pair.publicKey);
      const now = Math.floor(clock.now() / 1000);
      await store.registerWorker({
        worker_id: workerId,
        owner_id: o.ownerId,
        jwk: { ...publicJwk(pair.publicKey) },
        facts: {},
        ...(m.cohort === undefined ? {} : { cohort: m.cohort }),
        registered_at: now,
      });
      const accessToken = encodeBase64url(randomBytes(32));
      await store.createAccessToken({
        token_sha256: sha256(accessToken),
        worker_id: workerId,
        expires_at: now + 86_400 * 365,
      });
      return { workerId, ownerId: o.ownerId, ...pair, accessToken };
    };

    return {
      cp,
      ctx: cp.ctx,
      store,
      clock,
      url: cp.url,
      caPem: keys.caCertPem,
      dir,
      databaseUrl: url,
      keysDir,
      adminKey,
      call,
      apiKey,
      owner,
      machine,
    };
  };
}
