import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { IncomingHttpHeaders } from "node:http";
import { type Agent, request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, afterEach, beforeAll } from "vitest";
import type {
  ApiKeyRecord,
  AuthenticateMachine,
  MachineAuthInput,
  Role,
} from "../../../control-plane/http/auth.ts";
import {
  type ApiServer,
  type ApiServerOptions,
  createApiServer,
} from "../../../control-plane/http/server.ts";
import { fail } from "../../../lib/errors.ts";
import { createLogger, type Logger } from "../../../lib/log/logger.ts";
import type { Timers } from "../../../lib/timers.ts";

/**
 * Shared by the HTTP framework tests: a throwaway ECDSA P-256 certificate made by the openssl
 * CLI (the project's X.509 builder is written separately), servers on 127.0.0.1 port 0 closed
 * after each test, API keys per role, a fake machine authenticator, a log capture and a small
 * HTTPS client that never reuses connections unless asked.
 */

export interface TestCert {
  key: string;
  cert: string;
}

export function useTestCert(): () => TestCert {
  let dir = "";
  let pair: TestCert | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "agentd-cp-http-"));
    const r = spawnSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        join(dir, "key.pem"),
        "-out",
        join(dir, "cert.pem"),
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-days",
        "1",
      ],
      { encoding: "utf8" },
    );
    if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
    pair = {
      key: readFileSync(join(dir, "key.pem"), "utf8"),
      cert: readFileSync(join(dir, "cert.pem"), "utf8"),
    };
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return () => {
    if (pair === undefined) throw new Error("certificate not made yet");
    return pair;
  };
}

/** One API key per role, and the lookup the server is given. */
export function makeApiKeys() {
  const keys = {} as Record<Role, string>;
  const records = new Map<string, ApiKeyRecord>();
  for (const role of ["admin", "operator", "owner", "auditor"] as const) {
    const key = `agentd_${role}_${randomBytes(32).toString("base64url")}`;
    keys[role] = key;
    const hash = createHash("sha256").update(key).digest("hex");
    records.set(hash, {
      id: `key-${role}`,
      role,
      owner_id: role === "owner" ? "owner-1" : null,
      key_sha256: hash,
    });
  }
  const lookups: string[] = [];
  return {
    keys,
    lookups,
    findApiKey: (sha256hex: string) => {
      lookups.push(sha256hex);
      return records.get(sha256hex);
    },
  };
}

/** Access token `tok-<worker>` with proof `proof-ok` authenticates as that worker. */
export function fakeMachineAuth(): {
  authenticateMachine: AuthenticateMachine;
  calls: MachineAuthInput[];
} {
  const calls: MachineAuthInput[] = [];
  return {
    calls,
    authenticateMachine: async (input) => {
      calls.push(input);
      if (!input.accessToken.startsWith("tok-")) {
        throw fail("AGENTD_E_CP_UNAUTHENTICATED", "unknown access token");
      }
      if (input.proof === "jws-garbage") throw fail("AGENTD_E_JWS_MALFORMED", "not a JWS");
      if (input.proof !== "proof-ok") throw fail("AGENTD_E_CP_PROOF_INVALID", "bad proof");
      return { worker_id: input.accessToken.slice(4) };
    },
  };
}

export function machineHeaders(worker: string): Record<string, string> {
  return { authorization: `AgentD tok-${worker}`, "agentd-proof": "proof-ok" };
}

/** A logger whose JSON lines are kept in `lines`. */
export function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { logger: createLogger({ level: "debug", destination }), lines };
}

/** Servers made by `start` are closed after each test. */
export function useServers() {
  const servers: ApiServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close(100)));
  });
  return async (options: ApiServerOptions): Promise<{ api: ApiServer; port: number }> => {
    const api = createApiServer(options);
    servers.push(api);
    const { port } = await api.listen(0, "127.0.0.1");
    return { api, port };
  };
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: unknown;
}

export interface RequestOptions {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  agent?: Agent | false;
}

export function call(port: number, cert: string, o: RequestOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method: o.method ?? "GET",
        path: o.path,
        headers: o.headers ?? {},
        ca: cert,
        agent: o.agent ?? false,
      },
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
    req.end(o.body);
  });
}

/** The `error.code` of a JSON error reply. */
export function errorCode(reply: Reply): string | undefined {
  const j = reply.json as { error?: { code?: string } } | undefined;
  return j?.error?.code;
}

/**
 * Timers that fire only when the test says so: timeouts in `pending` (`fireAll` runs them),
 * intervals in `intervals` (the test calls their `fn`).
 */
export function manualTimers() {
  const pending = new Map<number, { fn: () => void; ms: number }>();
  const intervals = new Map<number, { fn: () => void; ms: number }>();
  let next = 1;
  const add = (into: typeof pending) => (fn: () => void, ms: number) => {
    const id = next++;
    into.set(id, { fn, ms });
    return id;
  };
  const timers: Timers = {
    setTimeout: add(pending),
    clearTimeout: (h) => {
      pending.delete(h as number);
    },
    setInterval: add(intervals),
    clearInterval: (h) => {
      intervals.delete(h as number);
    },
  };
  return {
    timers,
    pending,
    intervals,
    fireAll: () => {
      for (const [id, t] of [...pending]) {
        pending.delete(id);
        t.fn();
      }
    },
  };
}

/**
 * Resolves once `cond()` holds, checking after each turn of the event loop. The deadline only
 * turns a hang into a readable failure; nothing is asserted about time.
 */
export async function until(cond: () => boolean, what = "condition"): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what} never became true`);
    await new Promise<void>((r) => setImmediate(r));
  }
}
