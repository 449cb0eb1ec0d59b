import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startAgent } from "../../agent/daemon.ts";
import { enrollMachine, readEnrollment } from "../../agent/enrollment.ts";
import { initMachineIdentity } from "../../agent/identity.ts";
import { loadConfig } from "../../lib/config/load.ts";
import { generateEd25519KeyPair, publicJwk } from "../../lib/crypto/ed25519.ts";
import { AgentdError } from "../../lib/errors.ts";
import { createLogger } from "../../lib/log/logger.ts";
import { signConsent, signDecommission } from "../../policy-guard/sign.ts";
import { FACTS, until, useServedCp } from "../control-plane/protocol/client-fixture.ts";

/**
 * `agentd run` and a cloned identity: the machine key enrolled on one machine, started on
 * another (its machine id differs). The agent records the quarantine and refuses to run, also
 * on the next start, until the machine is enrolled again; then it runs.
 */

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("agentd run: a cloned identity", () => {
  const serve = useServedCp();

  it("stops, recorded, until enrolled again", async () => {
    const cp = await serve();
    const owner = generateEd25519KeyPair();
    const created = await cp.api(cp.adminKey).createOwner({ jwk: publicJwk(owner.publicKey) });
    const api = cp.api(created.api_key);
    const stateDir = mkdtempSync(join(tmpdir(), "agentd-clone-"));
    dirs.push(stateDir);
    const enroll = async (force: boolean) =>
      enrollMachine({
        stateDir,
        token: (await api.createEnrollmentToken()).token,
        ownerPub: owner.publicKey,
        facts: FACTS,
        clock: cp.clock,
        force,
      });
    await enroll(false);
    const start = (machineId: string) =>
      startAgent({
        stateDir,
        clock: cp.clock,
        logger: createLogger({ level: "silent" }),
        agentVersion: "0.1.0",
        heartbeatIntervalS: 30,
        hostFacts: () => ({ ...FACTS, machine_id_sha256: machineId }),
        apiSocket: join(stateDir, "agentd.sock"),
        config: loadConfig({ env: {}, defaultPath: join(stateDir, "absent.toml") }).config,
        stratum: { host: "127.0.0.1", port: 0 },
      });
    const refusal = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (err) {
        return err as AgentdError;
      }
      throw new Error("started");
    };

    const elsewhere = await refusal(start("c".repeat(64)));
    expect(elsewhere).toBeInstanceOf(AgentdError);
    expect(elsewhere.code).toBe("AGENTD_E_IDENTITY_CLONED");
    const audit = readFileSync(join(stateDir, "audit.jsonl"), "utf8").trim().split("\n");
    expect(JSON.parse(audit.at(-1) as string)).toMatchObject({
      type: "state.transition",
      to: "QUARANTINED",
    });
    // on the original machine too, now: the identity is quarantined until enrolled again
    expect((await refusal(start(FACTS.machine_id_sha256))).code).toBe("AGENTD_E_IDENTITY_CLONED");

    // enrolled again as the machine it is: a key of its own, then a new registration
    initMachineIdentity(stateDir, { force: true });
    await enroll(true);
    const agent = await start(FACTS.machine_id_sha256);
    try {
      expect(agent.state()).toBe("ATTESTED");
    } finally {
      await agent.close();
    }
  });
});

describe("agentd run: one agent per state directory", () => {
  const serve = useServedCp();

  it("refuses a second agent on the same state directory while the first runs", async () => {
    const cp = await serve();
    const owner = generateEd25519KeyPair();
    const created = await cp.api(cp.adminKey).createOwner({ jwk: publicJwk(owner.publicKey) });
    const stateDir = mkdtempSync(join(tmpdir(), "agentd-lock-"));
    dirs.push(stateDir);
    await enrollMachine({
      stateDir,
      token: (await cp.api(created.api_key).createEnrollmentToken()).token,
      ownerPub: owner.publicKey,
      facts: FACTS,
      clock: cp.clock,
    });
    const start = () =>
      startAgent({
        stateDir,
        clock: cp.clock,
        logger: createLogger({ level: "silent" }),
        agentVersion: "0.1.0",
        heartbeatIntervalS: 30,
        hostFacts: () => FACTS,
        apiSocket: join(stateDir, "agentd.sock"),
        config: loadConfig({ env: {}, defaultPath: join(stateDir, "absent.toml") }).config,
        stratum: { host: "127.0.0.1", port: 0 },
      });
    const first = await start();
    let second: unknown;
    try {
      await start();
    } catch (err) {
      second = err;
    } finally {
      await first.close();
    }
    expect(second).toBeInstanceOf(AgentdError);
    expect((second as AgentdError).message).toContain(`pid ${process.pid}`);
    // released on close: the next one starts
    const again = await start();
    await again.close();
  });
});

describe("agentd run: the control plane rotates its keys", () => {
  const serve = useServedCp();

  it("fetches the rotated key set, verified under the pinned root, and keeps following the policy", async () => {
    const cp = await serve();
    const owner = generateEd25519KeyPair();
    const created = await cp.api(cp.adminKey).createOwner({ jwk: publicJwk(owner.publicKey) });
    const ownerApi = cp.api(created.api_key);
    const stateDir = mkdtempSync(join(tmpdir(), "agentd-keys-"));
    dirs.push(stateDir);
    const enrolled = await enrollMachine({
      stateDir,
      token: (await ownerApi.createEnrollmentToken()).token,
      ownerPub: owner.publicKey,
      facts: FACTS,
      clock: cp.clock,
    });
    const agent = await startAgent({
      stateDir,
      clock: cp.clock,
      logger: createLogger({ level: (process.env.DEBUG_AGENT as "info" | undefined) ?? "silent" }),
      agentVersion: "0.1.0",
      heartbeatIntervalS: 30,
      hostFacts: () => FACTS,
      apiSocket: join(stateDir, "agentd.sock"),
      config: loadConfig({ env: {}, defaultPath: join(stateDir, "absent.toml") }).config,
      stratum: { host: "127.0.0.1", port: 0 },
      longPollS: 1,
    });
    try {
      const consent = (seq: number) => {
        const iat = Math.floor(cp.clock.now() / 1000);
        return signConsent({
          ownerKey: owner.privateKey,
          worker: enrolled.worker_id,
          policyId: "keys",
          seq,
          iat,
          exp: iat + 86_400,
          rules: {
            upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "o.rig" }],
            commands: ["mining.pause"],
          },
        });
      };
      const policyVersion = () =>
        (agent.status() as { policy: { version: number | null } }).policy.version;
      const first = await ownerApi.postConsent(consent(1));
      await until(() => policyVersion() === first.version, "the first publication");
      // a rotation that drops the old keys at once: only the new set verifies from now on
      await cp.api(cp.adminKey).rotateKeys({ keep_previous: false });
      const second = await ownerApi.postConsent(consent(2));
      await until(() => policyVersion() === second.version, "the publication signed by a new key");
      expect((agent.status() as { keyset_seq: number }).keyset_seq).toBe(2);
      const stored = JSON.parse(readFileSync(join(stateDir, "enrollment.json"), "utf8")) as {
        data: { keyset: string };
      };
      expect(readEnrollment(stateDir)?.keyset.seq).toBe(2);
      expect(stored.data.keyset).not.toBe(enrolled.keyset);
      // a command signed by the new command key is verified and answered (no handler in this
      // build: refused, saying so), with a signed result and an audit record
      const op = await cp.api(cp.adminKey).createApiKey({ role: "operator" });
      const sent = await cp
        .api(op.api_key)
        .createCommand({ worker: enrolled.worker_id, action: "mining.pause", args: {} });
      let result: string | null = null;
      void (async () => {
        for (;;) {
          const c = await cp.serving.store.getCommand(sent.cmd_id);
          if (c?.result !== null && c?.result !== undefined) {
            result = c.result.status;
            return;
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      await until(() => result !== null, "the command's result");
      expect(result).toBe("refused");
      const audit = readFileSync(join(stateDir, "audit.jsonl"), "utf8");
      expect(audit).toContain('"type":"keys.updated"');
      expect(audit).toMatch(/"command_seq":\d+/);
      expect(audit).toContain("command.unsupported: mining.pause");
    } finally {
      await agent.close();
    }
  });
});

describe("agentd run: the control plane unreachable at start", () => {
  const serve = useServedCp();

  it("starts on the stored policy, which still allows mining, and keeps trying to attest", async () => {
    const cp = await serve();
    const owner = generateEd25519KeyPair();
    const created = await cp.api(cp.adminKey).createOwner({ jwk: publicJwk(owner.publicKey) });
    const ownerApi = cp.api(created.api_key);
    const stateDir = mkdtempSync(join(tmpdir(), "agentd-offline-"));
    dirs.push(stateDir);
    const enrolled = await enrollMachine({
      stateDir,
      token: (await ownerApi.createEnrollmentToken()).token,
      ownerPub: owner.publicKey,
      facts: FACTS,
      clock: cp.clock,
    });
    const start = () =>
      startAgent({
        stateDir,
        clock: cp.clock,
        logger: createLogger({ level: "silent" }),
        agentVersion: "0.1.0",
        heartbeatIntervalS: 30,
        hostFacts: () => FACTS,
        apiSocket: join(stateDir, "agentd.sock"),
        config: loadConfig({ env: {}, defaultPath: join(stateDir, "absent.toml") }).config,
        stratum: { host: "127.0.0.1", port: 0 },
        longPollS: 1,
      });
    const online = await start();
    const iat = Math.floor(cp.clock.now() / 1000);
    const published = await ownerApi.postConsent(
      signConsent({
        ownerKey: owner.privateKey,
        worker: enrolled.worker_id,
        policyId: "offline",
        seq: 1,
        iat,
        exp: iat + 86_400,
        rules: { upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "o.rig" }] },
      }),
    );
    const mining = (a: typeof online) =>
      a.status() as { decision: { mining: boolean }; policy: { version: number | null } };
    await until(() => mining(online).policy.version === published.version, "the publication");
    expect(mining(online).decision.mining).toBe(true);
    await online.close();

    await cp.serving.close(); // the control plane goes away
    const offline = await start();
    try {
      expect(mining(offline).policy.version).toBe(published.version);
      expect(mining(offline).decision.mining).toBe(true);
      expect(offline.state()).toBe("ELIGIBLE");
    } finally {
      await offline.close();
    }
  });
});

describe("agentd run: decommissioned by its owner", () => {
  const serve = useServedCp();

  it("ends in TERMINATED with its credentials wiped, and says it is over", async () => {
    const cp = await serve();
    const owner = generateEd25519KeyPair();
    const created = await cp.api(cp.adminKey).createOwner({ jwk: publicJwk(owner.publicKey) });
    const ownerApi = cp.api(created.api_key);
    const stateDir = mkdtempSync(join(tmpdir(), "agentd-decom-"));
    dirs.push(stateDir);
    const enrolled = await enrollMachine({
      stateDir,
      token: (await ownerApi.createEnrollmentToken()).token,
      ownerPub: owner.publicKey,
      facts: FACTS,
      clock: cp.clock,
    });
    const agent = await startAgent({
      stateDir,
      clock: cp.clock,
      logger: createLogger({ level: (process.env.DEBUG_AGENT as "info" | undefined) ?? "silent" }),
      agentVersion: "0.1.0",
      heartbeatIntervalS: 30,
      hostFacts: () => FACTS,
      apiSocket: join(stateDir, "agentd.sock"),
      config: loadConfig({ env: {}, defaultPath: join(stateDir, "absent.toml") }).config,
      stratum: { host: "127.0.0.1", port: 0 },
      longPollS: 1,
    });
    try {
      let over = false;
      void agent.terminated.then(() => {
        over = true;
      });
      await ownerApi.postRevocation(
        enrolled.worker_id,
        signDecommission({
          ownerKey: owner.privateKey,
          worker: enrolled.worker_id,
          iat: Math.floor(cp.clock.now() / 1000),
        }),
      );
      await until(() => over, "the end");
      expect(agent.state()).toBe("TERMINATED");
      expect(existsSync(join(stateDir, "machine.key.pem"))).toBe(false);
      expect(existsSync(join(stateDir, "enrollment.json"))).toBe(false);
      expect(readFileSync(join(stateDir, "audit.jsonl"), "utf8")).toContain("credentials.wiped");
    } finally {
      await agent.close();
    }
  });
});
