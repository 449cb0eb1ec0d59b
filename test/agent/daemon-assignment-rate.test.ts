import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startAgent } from "../../agent/daemon.ts";
import { enrollMachine } from "../../agent/enrollment.ts";
import type { ApiContext } from "../../control-plane/api/context.ts";
import { allGroups } from "../../control-plane/api/index.ts";
import { initControlPlaneDir } from "../../control-plane/init-dir.ts";
import { createApiClient } from "../../control-plane/protocol/client-api.ts";
import { serveControlPlane } from "../../control-plane/serve.ts";
import { loadConfig } from "../../lib/config/load.ts";
import { generateEd25519KeyPair, publicJwk } from "../../lib/crypto/ed25519.ts";
import { createLogger } from "../../lib/log/logger.ts";
import { type FakeTime, fakeTime } from "../../lib/timers.ts";
import { signConsent } from "../../policy-guard/sign.ts";
import { FACTS } from "../control-plane/protocol/client-fixture.ts";

/**
 * Issue 15, point 7c: with the owner's `max_publication_ttl_s` at 60 s every publication and
 * assignment lives a minute, and the agent used to renew its assignment about once a second.
 * On fake time shared by the real control plane and the real agent, the fetches of ten
 * minutes are counted: never more often than the floor (10 s) allows.
 */

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Moves fake time in small steps, letting real I/O (TLS, SQLite) run in between. */
async function advance(t: FakeTime, ms: number, stepMs = 250): Promise<void> {
  for (let moved = 0; moved < ms; moved += stepMs) {
    await t.advance(stepMs);
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe("agentd run, the assignment's renewal", () => {
  it("fetches the assignment no more often than its floor with a 60 s publication lifetime", async () => {
    const t = fakeTime(Date.now());
    const dir = join(tempDir("agentd-rate-cp-"), "cp");
    const init = await initControlPlaneDir({ dir, hosts: ["127.0.0.1"], clock: t.clock });
    const fetches: number[] = [];
    const spied = (ctx: ApiContext) =>
      allGroups(ctx).map((g) => ({
        ...g,
        routes: g.routes.map((r) =>
          r.path === "/v1/workers/{id}/assignment"
            ? {
                ...r,
                handler: (c: Parameters<typeof r.handler>[0]) => {
                  fetches.push(t.clock.now());
                  return r.handler(c);
                },
              }
            : r,
        ),
      }));
    const serving = await serveControlPlane({
      dir,
      listen: { host: "127.0.0.1", port: 0 },
      clock: t.clock,
      timers: t.timers,
      logger: createLogger({ level: "silent" }),
      groups: spied,
    });
    cleanups.push(() => serving.close());
    const api = (apiKey: string) => {
      const c = createApiClient({
        url: serving.url,
        caPem: serving.caCertPem,
        clock: t.clock,
        apiKey,
      });
      cleanups.push(() => c.close());
      return c;
    };
    const owner = generateEd25519KeyPair();
    const created = await api(init.api_key).createOwner({ jwk: publicJwk(owner.publicKey) });
    const ownerApi = api(created.api_key);
    const stateDir = tempDir("agentd-rate-");
    const enrolled = await enrollMachine({
      stateDir,
      token: (await ownerApi.createEnrollmentToken()).token,
      ownerPub: owner.publicKey,
      facts: FACTS,
      clock: t.clock,
    });
    const agent = await startAgent({
      stateDir,
      clock: t.clock,
      timers: t.timers,
      logger: createLogger({ level: "silent" }),
      agentVersion: "0.1.0",
      heartbeatIntervalS: 30,
      hostFacts: () => FACTS,
      apiSocket: join(stateDir, "agentd.sock"),
      config: loadConfig({ env: {}, defaultPath: join(stateDir, "absent.toml") }).config,
      stratum: { host: "127.0.0.1", port: 0 },
      longPollS: 25,
    });
    cleanups.push(() => agent.close());
    const iat = Math.floor(t.clock.now() / 1000);
    await ownerApi.postConsent(
      signConsent({
        ownerKey: owner.privateKey,
        worker: enrolled.worker_id,
        policyId: "rate",
        seq: 1,
        iat,
        exp: iat + 86_400,
        rules: {
          upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "o.rig" }],
          max_publication_ttl_s: 60,
        },
      }),
    );
    const status = () => agent.status() as { decision: { mining: boolean } };
    for (let i = 0; i < 400 && !status().decision.mining; i++) await advance(t, 250);
    expect(status().decision.mining).toBe(true);

    // ten minutes of a minute-long publication and assignment, renewed all along
    const from = t.clock.now();
    const before = fetches.length;
    await advance(t, 10 * 60_000, 500);
    const made = fetches.slice(before);
    // at most one every 10 s, and renewed at all (it did not just stop)
    expect(made.length).toBeLessThanOrEqual(61);
    expect(made.length).toBeGreaterThanOrEqual(10);
    for (let i = 1; i < made.length; i++) {
      expect((made[i] as number) - (made[i - 1] as number)).toBeGreaterThanOrEqual(10_000);
    }
    expect(made.every((at) => at >= from)).toBe(true);
  }, 120_000);
});
