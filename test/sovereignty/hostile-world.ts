import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect } from "vitest";
import type { RunningAgent } from "../../agent/daemon.ts";
import { localApiRequest } from "../../agent/local-api.ts";
import type { ApiContext, ApiGroup } from "../../control-plane/api/context.ts";
import { allGroups } from "../../control-plane/api/index.ts";
import { conditionalJson } from "../../control-plane/http/conditional.ts";
import type { HandlerResult } from "../../control-plane/http/route.ts";
import { type ControlPlaneKeys, loadControlPlaneKeys } from "../../control-plane/keys/load.ts";
import { signCommand } from "../../control-plane/protocol/documents/command.ts";
import type { CommandAction } from "../../control-plane/protocol/schemas/command.ts";
import { layoutOf } from "../../control-plane/serve.ts";
import { documentIdentity } from "../../lib/crypto/jws.ts";
import type { Rules } from "../../policy-guard/documents.ts";
import { signPublication } from "../../policy-guard/sign.ts";
import { SimCluster } from "../../sim/asic/cluster.ts";
import { SimPool } from "../../sim/pool/server.ts";
import { enrolledMachine } from "../agent/daemon-fixture.ts";
import { FACTS, until, useServedCp } from "../control-plane/protocol/client-fixture.ts";

/**
 * A world for the sovereignty suite (issue 15): the real control plane, whose every private
 * key the attacker holds (copied from its directory: root, publication, command, assignment,
 * token), and whose handlers the attacker may replace ("a malicious control plane in front of
 * the real one"), or whose database they may write (the store, as the control plane's own code
 * writes it); an owner; a machine enrolled and running `agentd run` in-process with its
 * Stratum proxy; a simulated pool and one simulated ASIC mining through the proxy — so "it
 * mines" means shares reach the owner's pool, and "nothing the owner did not sign happened"
 * can be checked on the pool, the agent's state and its audit log.
 *
 * `recover(seq)` is the owner's way back after an attack: the control plane's operator
 * rotates its keys (the stolen ones dropped at once), the malicious handlers go, and the owner signs
 * the next consent; with the honest publication the machine must mine again under the same
 * machine key.
 */

const DIFFICULTY = 2 ** -18;
/** The commands the owner allows in every consent here. */
export const ALLOWED: readonly CommandAction[] = [
  "mining.pause",
  "mining.resume",
  "worker.quarantine",
];

/** What the malicious control plane does instead of the honest handler, route by route. */
export interface Attacks {
  /** Rewrites the attestation reply (an unsigned field). */
  attest: ((body: Record<string, unknown>) => Record<string, unknown>) | null;
  /** Answers the assignment request with this JWS instead. */
  assignment: (() => string) | null;
  /** Answers the owner's revocation with success, and neither stores nor pushes it. */
  withholdRevocations: boolean;
  /** Answers GET /v1/keys with this key set instead. */
  keys: (() => string) | null;
  /** Bundles the policy poll answers with, one per request, before the honest one. */
  bundles: { consent: string; publication: string }[];
}

type Route = ApiGroup["routes"][number];

function hostileGroups(attacks: Attacks): (ctx: ApiContext) => readonly ApiGroup[] {
  const wrap = (r: Route): Route => {
    const id = `${r.method} ${r.path}`;
    const handler = async (c: Parameters<Route["handler"]>[0]): Promise<HandlerResult> => {
      if (id === "POST /v1/auth/agent/attest" && attacks.attest !== null) {
        const out = await r.handler(c);
        return { ...out, body: attacks.attest(out.body as Record<string, unknown>) };
      }
      if (id === "GET /v1/workers/{id}/assignment" && attacks.assignment !== null) {
        return { status: 200, body: { assignment: attacks.assignment() } };
      }
      if (id === "GET /v1/workers/{id}/policy") {
        const bundle = attacks.bundles.shift();
        if (bundle !== undefined) return conditionalJson(c.req, bundle);
      }
      if (id === "GET /v1/keys" && attacks.keys !== null) {
        return { status: 200, body: { keyset: attacks.keys() } };
      }
      if (id === "POST /v1/workers/{id}/revocations" && attacks.withholdRevocations) {
        // the answer an honest control plane gives, for a revocation it neither keeps nor sends
        const document = (c.body as { document: string }).document;
        return {
          status: 200,
          body: {
            worker: c.params.id,
            kind: "revocation",
            identity: documentIdentity(document),
            event_id: 1,
          },
        };
      }
      return r.handler(c);
    };
    return { ...r, handler } as Route;
  };
  return (ctx) => allGroups(ctx).map((g) => ({ ...g, routes: g.routes.map(wrap) }));
}

export type HostileWorld = Awaited<ReturnType<ReturnType<typeof useHostileWorld>>>;

export function useHostileWorld() {
  const serve = useServedCp();
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  return async () => {
    const pool = await SimPool.start({ difficulty: DIFFICULTY, jobIntervalMs: 5_000 });
    cleanups.push(() => pool.close());
    const attacks: Attacks = {
      attest: null,
      assignment: null,
      withholdRevocations: false,
      keys: null,
      bundles: [],
    };
    const cp = await serve({ groups: hostileGroups(attacks) });
    /** Every private key of the control plane, as the attacker copied them. */
    const stolen: ControlPlaneKeys = loadControlPlaneKeys(layoutOf(cp.dir).keys);
    const tiny = String(DIFFICULTY);
    const m = await enrolledMachine(cp, {
      config: {
        "stratum.vardiff": "false",
        "stratum.initial_difficulty": tiny,
        "stratum.min_difficulty": tiny,
      },
    });
    const workerId = m.enrolled.worker_id;
    const rules: Partial<Rules> = {
      upstreams: [{ url: `stratum+tcp://127.0.0.1:${pool.address.port}`, user: "owner.rig" }],
      networks: ["127.0.0.1/32"],
    };
    let agent: RunningAgent = await m.start(FACTS, { heartbeatIntervalS: 1 });
    cleanups.push(() => agent.close());

    const status = () =>
      agent.status() as unknown as {
        state: string;
        decision: { mining: boolean; reasons: string[] };
        policy: { version: number | null; consent_sha256: string | null };
        holds: string[];
      };
    const shares = () => pool.stats().accepted;
    const audit = () =>
      readFileSync(join(m.stateDir, "audit.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Record<string, unknown> & { type: string });
    const consents: string[] = [];
    /** The owner signs consent `seq` and posts it; resolves once the agent holds it. */
    const owner = {
      async consent(seq: number, commands: readonly CommandAction[] = ALLOWED) {
        const jws = m.consent(seq, [...commands], rules);
        consents.push(jws);
        const p = await m.ownerApi.postConsent(jws);
        await until(
          () => status().policy.consent_sha256 === p.consent_sha256,
          `consent ${seq} in force on the machine`,
        );
        return { jws, identity: p.consent_sha256, version: p.version };
      },
    };
    /** Resolves once `n` more shares reached the owner's pool. */
    const mines = async (n: number, what: string) => {
      const from = shares();
      await until(() => shares() >= from + n, what, 30_000);
      expect(status().decision).toEqual({ mining: true, reasons: [] });
    };

    const c1 = await owner.consent(1);
    const asic = await SimCluster.start({
      count: 1,
      profile: "cpuminer",
      pools: [`stratum+tcp://127.0.0.1:${agent.stratum.port}`],
      user: "sim",
      retryDelayMs: 100,
      maxHashesPerSecond: 150_000,
    });
    cleanups.push(() => asic.stop());
    await mines(3, "shares at the owner's pool under consent 1");

    const nowS = () => Math.floor(cp.clock.now() / 1000);
    const forge = {
      /** A publication of `consent` signed with the stolen publication key. */
      publication(consent: string, version: number, o: { stop?: boolean } = {}) {
        return signPublication({
          cpKey: stolen.signing.publication.privateKey,
          consent,
          worker: workerId,
          version,
          iat: nowS(),
          ttlS: 3600,
          ...(o.stop === undefined ? {} : { stop: o.stop }),
        });
      },
      /** A command signed with the stolen command key. */
      command(action: CommandAction, seq: number, consentSha256: string, args: object = {}) {
        return signCommand({
          privateKey: stolen.signing.command.privateKey,
          worker: workerId,
          action,
          args: args as never,
          seq,
          consentSha256,
          clock: cp.clock,
        });
      },
    };
    /** The malicious control plane writes a document into its store: it reaches the agent. */
    const inject = {
      async publication(consent: string, jws: string, version: number) {
        const identity = documentIdentity(consent);
        return cp.serving.store.storePublication({
          worker_id: workerId,
          version,
          consent_identity: identity,
          jws,
          iat: nowS(),
          exp: nowS() + 3600,
          stop: false,
        });
      },
      async command(c: ReturnType<typeof forge.command>) {
        return cp.serving.store.createCommand({
          cmd_id: c.payload.cmd_id,
          worker_id: workerId,
          action: c.payload.action,
          args: c.payload.args as never,
          jws: c.jws,
          iat: c.payload.iat,
          exp: c.payload.exp,
          seq: c.payload.seq,
          consent_identity: c.payload.consent_sha256,
        });
      },
    };

    /**
     * The owner's way back: the control plane's keys rotated (the stolen ones retired), its
     * handlers honest again, the owner's next consent published; then the machine mines under
     * the same machine key.
     */
    const recover = async (seq: number) => {
      attacks.attest = null;
      attacks.assignment = null;
      attacks.withholdRevocations = false;
      attacks.keys = null;
      attacks.bundles.length = 0;
      // dropping the stolen keys at once (a compromise), not keeping them verify-only
      await cp.api(cp.adminKey).rotateKeys({ keep_previous: false });
      const c = await owner.consent(seq);
      await mines(3, `mining again under consent ${seq}`);
      expect(agent.workerId).toBe(workerId);
      return c;
    };

    const api = (method: "GET" | "POST", path: string, body?: unknown) =>
      localApiRequest(agent.apiSocket, method, path, body);

    return {
      cp,
      pool,
      stolen,
      attacks,
      machine: m,
      workerId,
      agent: () => agent,
      /** Stops the agent and starts it again on the same state directory and Stratum port. */
      async restart() {
        const stratum = agent.stratum;
        await agent.close();
        agent = await m.start(FACTS, { heartbeatIntervalS: 1, stratum });
      },
      status,
      shares,
      audit,
      owner,
      c1,
      consents,
      mines,
      forge,
      inject,
      recover,
      api,
    };
  };
}
