import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startAgent } from "../../agent/daemon.ts";
import { enrollMachine } from "../../agent/enrollment.ts";
import { initMachineIdentity } from "../../agent/identity.ts";
import { loadConfig } from "../../lib/config/load.ts";
import { generateEd25519KeyPair, publicJwk } from "../../lib/crypto/ed25519.ts";
import { AgentdError } from "../../lib/errors.ts";
import { createLogger } from "../../lib/log/logger.ts";
import { FACTS, useServedCp } from "../control-plane/protocol/client-fixture.ts";

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
