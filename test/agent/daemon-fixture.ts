import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach } from "vitest";
import { type AgentDaemonOptions, startAgent } from "../../agent/daemon.ts";
import { enrollMachine } from "../../agent/enrollment.ts";
import type { HostFacts } from "../../control-plane/protocol/schemas/attestation.ts";
import { loadConfig } from "../../lib/config/load.ts";
import { generateEd25519KeyPair, publicJwk } from "../../lib/crypto/ed25519.ts";
import { createLogger } from "../../lib/log/logger.ts";
import type { Rules } from "../../policy-guard/documents.ts";
import { signConsent } from "../../policy-guard/sign.ts";
import { FACTS, type ServedCp } from "../control-plane/protocol/client-fixture.ts";

/**
 * An owner registered with a served control plane, a machine enrolled in a new state
 * directory, and how to start its agent in-process (startAgent) — for the daemon's tests.
 */

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

export interface MachineOptions {
  /** An existing (empty) directory to enroll in, e.g. on a small tmpfs. */
  readonly stateDir?: string;
  /** `--set`-style config values (key=value) for the agent. */
  readonly config?: Readonly<Record<string, string>>;
}

export async function enrolledMachine(cp: ServedCp, mo: MachineOptions = {}) {
  const owner = generateEd25519KeyPair();
  const created = await cp.api(cp.adminKey).createOwner({ jwk: publicJwk(owner.publicKey) });
  const ownerApi = cp.api(created.api_key);
  const stateDir = mo.stateDir ?? mkdtempSync(join(tmpdir(), "agentd-daemon-"));
  if (mo.stateDir === undefined) dirs.push(stateDir);
  const enroll = async (force = false) =>
    enrollMachine({
      stateDir,
      token: (await ownerApi.createEnrollmentToken()).token,
      ownerPub: owner.publicKey,
      facts: FACTS,
      clock: cp.clock,
      force,
    });
  const enrolled = await enroll();
  const config = loadConfig({
    env: {},
    defaultPath: join(stateDir, "absent.toml"),
    flags: Object.entries(mo.config ?? {}).map(([key, value]) => ({ key, value, flag: "--set" })),
  }).config;
  const start = (
    facts: HostFacts | (() => HostFacts) = FACTS,
    over: Partial<AgentDaemonOptions> = {},
  ) =>
    startAgent({
      stateDir,
      clock: cp.clock,
      logger: createLogger({ level: "silent" }),
      agentVersion: "0.1.0",
      heartbeatIntervalS: 30,
      hostFacts: typeof facts === "function" ? facts : () => facts,
      apiSocket: join(stateDir, "agentd.sock"),
      config,
      stratum: { host: "127.0.0.1", port: 0 },
      longPollS: 1,
      ...over,
    });
  /** The owner's consent for this machine, seq `seq`, a day long. */
  const consent = (seq: number, commands: Rules["commands"] = [], rules: Partial<Rules> = {}) => {
    const iat = Math.floor(cp.clock.now() / 1000);
    return signConsent({
      ownerKey: owner.privateKey,
      worker: enrolled.worker_id,
      policyId: "daemon",
      seq,
      iat,
      exp: iat + 86_400,
      rules: {
        upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "o.rig" }],
        commands,
        ...rules,
      },
    });
  };
  return { owner, ownerApi, stateDir, enrolled, enroll, start, consent };
}
