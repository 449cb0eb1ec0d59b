/**
 * A control plane for the protocol client's tests, served exactly as `agentd cp serve` serves
 * it (control-plane/serve.ts, from a directory made by `agentd cp init`), so that what the
 * client meets is the real thing: the CA in the TLS chain, the key set, every endpoint group.
 * A route spy records which endpoints the server actually ran (enrollment must not reach
 * register when a pin is wrong), and the control plane can be restarted on the same port and
 * database (stream resumption, nothing lost).
 */

import type { KeyObject } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach } from "vitest";
import type { ApiContext, ApiGroup } from "../../../control-plane/api/context.ts";
import { allGroups } from "../../../control-plane/api/index.ts";
import { initControlPlaneDir } from "../../../control-plane/init-dir.ts";
import {
  type ApiClient,
  createApiClient,
  createMachineClient,
  type Enrollment,
  enroll,
  type MachineClient,
} from "../../../control-plane/protocol/client.ts";
import type { HeartbeatBody } from "../../../control-plane/protocol/documents/heartbeat.ts";
import type { HostFacts } from "../../../control-plane/protocol/schemas/attestation.ts";
import { type ServingControlPlane, serveControlPlane } from "../../../control-plane/serve.ts";
import { fixedClock } from "../../../lib/clock.ts";
import { generateEd25519KeyPair, publicJwk } from "../../../lib/crypto/ed25519.ts";
import { AgentdError } from "../../../lib/errors.ts";
import { createLogger } from "../../../lib/log/logger.ts";
import { signConsent } from "../../../policy-guard/sign.ts";
import { createTestDatabase } from "../../support/postgres.ts";

/** Host facts of a test machine (advisory attestation facts, docs/protocol.md section 6). */
export const FACTS: HostFacts = {
  machine_id_sha256: "a".repeat(64),
  binary_sha256: "b".repeat(64),
  os: "Debian GNU/Linux 13",
  boot_time: 1_790_000_000,
  agent_version: "0.1.0",
};

/** The AgentdError a promise rejects with (anything else fails the test). */
export async function rejection(p: Promise<unknown>): Promise<AgentdError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AgentdError) return err;
    throw err;
  }
  throw new Error("resolved; a rejection was expected");
}

export type TestClock = ReturnType<typeof fixedClock>;

export interface ServedCp {
  serving: ServingControlPlane;
  readonly dir: string;
  readonly database: string;
  readonly clock: TestClock;
  readonly adminKey: string;
  readonly caPem: string;
  readonly caSha256: string;
  readonly rootKid: string;
  /** `METHOD /path/template` of every request a route handler ran, in order. */
  readonly seen: string[];
  url(): string;
  /** An API client for `apiKey` (closed after the test). */
  api(apiKey?: string): ApiClient;
  /** Stops the control plane and serves the same directory and database again, same port. */
  restart(): Promise<void>;
  /** Runs after the test, before the control plane is closed. */
  onCleanup(f: () => void | Promise<void>): void;
}

export interface ServeFixtureOptions {
  readonly backend?: "sqlite" | "postgres";
  readonly groups?: (ctx: ApiContext) => readonly ApiGroup[];
}

/** Wraps every route's handler to record that it ran (before the handler does anything). */
function spied(
  groups: (ctx: ApiContext) => readonly ApiGroup[],
  seen: string[],
): (ctx: ApiContext) => readonly ApiGroup[] {
  return (ctx) =>
    groups(ctx).map((g) => ({
      ...g,
      routes: g.routes.map((r) => ({
        ...r,
        handler: (c: Parameters<typeof r.handler>[0]) => {
          seen.push(`${r.method} ${r.path}`);
          return r.handler(c);
        },
      })),
    }));
}

export function useServedCp(): (o?: ServeFixtureOptions) => Promise<ServedCp> {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return async (o = {}) => {
    const base = mkdtempSync(join(tmpdir(), "agentd-cp-client-"));
    cleanups.push(async () => rmSync(base, { recursive: true, force: true }));
    const dir = join(base, "cp");
    const clock = fixedClock(Date.now());
    const database =
      o.backend === "postgres"
        ? await createTestDatabase("client")
        : `sqlite:${join(dir, "cp.db")}`;
    const init = await initControlPlaneDir({
      dir,
      hosts: ["127.0.0.1"],
      ...(o.backend === "postgres" ? { database } : {}),
      clock,
    });
    const seen: string[] = [];
    const groups = spied(o.groups ?? allGroups, seen);
    const logger = createLogger({ level: "silent" });
    const start = (port: number) =>
      serveControlPlane({ dir, listen: { host: "127.0.0.1", port }, clock, logger, groups });
    const clients: ApiClient[] = [];
    const serving = await start(0);
    const fixture: ServedCp = {
      serving,
      dir,
      database,
      clock,
      adminKey: init.api_key,
      caPem: serving.caCertPem,
      caSha256: init.ca_sha256,
      rootKid: init.root_kid,
      seen,
      url: () => fixture.serving.url,
      api: (apiKey) => {
        const c = createApiClient({
          url: fixture.serving.url,
          caPem: fixture.serving.caCertPem,
          clock,
          ...(apiKey === undefined ? {} : { apiKey }),
        });
        clients.push(c);
        return c;
      },
      onCleanup: (f) => {
        cleanups.push(async () => {
          await f();
        });
      },
      async restart() {
        const port = fixture.serving.port;
        await fixture.serving.close();
        fixture.serving = await start(port);
      },
    };
    cleanups.push(async () => {
      for (const c of clients) c.close();
      await fixture.serving.close();
    });
    return fixture;
  };
}

/** Waits until `check` holds (events arrive when they arrive; nothing here measures time). */
export async function until(
  check: () => boolean | Promise<boolean>,
  what = "condition",
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A heartbeat body in the REGISTERED state; `uptime_s` grows with the counter. */
export function heartbeatBody(counter: number): HeartbeatBody {
  return {
    counter,
    state: "ATTESTED",
    policy: { version: null, consent_sha256: null },
    decision: { mining: false, reasons: [] },
    telemetry: {
      asics: 0,
      hashrate_hs: 0,
      shares_accepted: 0,
      shares_rejected: 0,
      uptime_s: counter,
    },
    services: {},
    agent: { version: "0.1.0", binary_sha256: FACTS.binary_sha256 },
    audit_head: null,
  };
}

export interface EnrolledMachine {
  readonly client: MachineClient;
  readonly enrollment: Enrollment;
  readonly machineKey: KeyObject;
  readonly ownerKey: KeyObject;
  readonly ownerPub: KeyObject;
  readonly ownerId: string;
  /** The owner's API client. */
  readonly owner: ApiClient;
}

/** An owner registered by the admin, a token, the machine enrolled with it and attested. */
export async function enrolledMachine(
  cp: ServedCp,
  o: { readonly attest?: boolean } = {},
): Promise<EnrolledMachine> {
  const ownerPair = generateEd25519KeyPair();
  const created = await cp.api(cp.adminKey).createOwner({ jwk: publicJwk(ownerPair.publicKey) });
  const owner = cp.api(created.api_key);
  const { token } = await owner.createEnrollmentToken();
  const machine = generateEd25519KeyPair();
  const enrollment = await enroll({
    token,
    machineKey: machine.privateKey,
    facts: FACTS,
    ownerPub: ownerPair.publicKey,
    clock: cp.clock,
  });
  const client = createMachineClient({
    url: enrollment.url,
    caPem: enrollment.caPem,
    clock: cp.clock,
    machineKey: machine.privateKey,
  });
  cp.onCleanup(() => client.close());
  if (o.attest ?? true) await client.attest(FACTS);
  return {
    client,
    enrollment,
    machineKey: machine.privateKey,
    ownerKey: ownerPair.privateKey,
    ownerPub: ownerPair.publicKey,
    ownerId: created.owner,
    owner,
  };
}

/** A consent for `m` (30 days) allowing one upstream and the given commands. */
export function consentFor(
  m: EnrolledMachine,
  clock: TestClock,
  seq: number,
  commands: readonly string[] = ["mining.pause", "mining.resume"],
): string {
  const iat = Math.floor(clock.now() / 1000);
  return signConsent({
    ownerKey: m.ownerKey,
    worker: m.client.workerId,
    policyId: "farm-test",
    seq,
    iat,
    exp: iat + 30 * 86_400,
    rules: {
      upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "owner1.rig" }],
      commands,
    },
  });
}
