import type { KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { localApiGet, localApiRequest } from "../../agent/local-api.ts";
import { runCli } from "../../cli/program.ts";
import { allGroups } from "../../control-plane/api/index.ts";
import { generateEd25519KeyPair, jwkThumbprint } from "../../lib/crypto/ed25519.ts";
import { writeKeyPair } from "../../lib/crypto/key-files.ts";
import { systemTimers } from "../../lib/timers.ts";
import { signConsent, signOwnerRotation } from "../../policy-guard/sign.ts";
import {
  FACTS,
  type ServedCp,
  until,
  useServedCp,
} from "../control-plane/protocol/client-fixture.ts";
import { enrolledMachine } from "./daemon-fixture.ts";

/**
 * Owner-key rotation end to end, `agentd run` in-process against a real control plane: through
 * the local API (`agentd owner rotate --apply`), relayed by the control plane over the push
 * stream, and fetched through the poll by an agent without a stream. In each, the consent in
 * force keeps mining, the old key signs nothing accepted, the new key's consent is accepted.
 */

type Machine = Awaited<ReturnType<typeof enrolledMachine>>;
type Agent = Awaited<ReturnType<Machine["start"]>>;

const nowS = (cp: ServedCp) => Math.floor(cp.clock.now() / 1000);
const mining = (a: Agent) =>
  (a.status() as { decision: { mining: boolean; reasons: string[] } }).decision;
const policyVersion = (a: Agent) =>
  (a.status() as { policy: { version: number | null } }).policy.version;
const ownerKey = async (a: Agent) => (await localApiGet(a.apiSocket, "/v1/policy")).owner_key;
const audit = (m: Machine) =>
  readFileSync(join(m.stateDir, "audit.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { type: string; data?: Record<string, unknown> });

/** The owner's consent for the machine, signed by `key`. */
function consentBy(cp: ServedCp, m: Machine, key: KeyObject, seq: number): string {
  return signConsent({
    ownerKey: key,
    worker: m.enrolled.worker_id,
    policyId: "daemon",
    seq,
    iat: nowS(cp),
    exp: nowS(cp) + 86_400,
    rules: { upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "o.rig" }], commands: [] },
  });
}

/** An agent whose first consent (signed by the enrolled owner key) is published and followed. */
async function runningOnConsent1(m: Machine, agent: Agent) {
  const published = await m.ownerApi.postConsent(m.consent(1));
  await until(() => policyVersion(agent) === published.version, "consent 1");
  await until(() => mining(agent).mining, "mining under consent 1");
  return published;
}

/** `agentd …` in-process, as the binary runs it. */
async function cli(cp: ServedCp, args: string[]) {
  let stdout = "";
  let stderr = "";
  const code = await runCli(args, {
    stdout: (s) => {
      stdout += s;
    },
    stderr: (s) => {
      stderr += s;
    },
    env: {},
    clock: cp.clock,
    timers: systemTimers,
  });
  return { code, stdout, stderr };
}

describe("owner-key rotation, agentd run", () => {
  const serve = useServedCp();

  it("through the local API (agentd owner rotate --apply): consent 1 keeps mining, only the new key is heard", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const agent = await m.start();
    try {
      await runningOnConsent1(m, agent);
      const oldKeyFile = join(m.stateDir, "owner.key");
      writeKeyPair(oldKeyFile, `${oldKeyFile}.pub`, m.owner.privateKey, { force: false });
      const next = generateEd25519KeyPair();
      const newKeyFile = join(m.stateDir, "owner-2.key");
      writeKeyPair(newKeyFile, `${newKeyFile}.pub`, next.privateKey, { force: false });
      const rotate = (...extra: string[]) =>
        cli(cp, [
          "owner",
          "rotate",
          "--old-key",
          oldKeyFile,
          "--new-key",
          `${newKeyFile}.pub`,
          "--worker",
          m.enrolled.worker_id,
          "--apply",
          "--state-dir",
          m.stateDir,
          ...extra,
        ]);
      const r = await rotate("--json");
      expect([r.code, r.stderr]).toEqual([0, ""]);
      const summary = JSON.parse(r.stdout) as { document: string; applied: unknown; to: unknown };
      expect(summary).toMatchObject({
        owner: jwkThumbprint(m.owner.publicKey),
        new_owner: jwkThumbprint(next.publicKey),
        applied: { accepted: true, reasons: [] },
      });
      expect(await ownerKey(agent)).toBe(jwkThumbprint(next.publicKey));
      // The consent in force survives: still mining on it.
      expect(mining(agent)).toEqual({ mining: true, reasons: [] });
      expect(
        audit(m)
          .filter((e) => e.type === "owner.rotated")
          .at(-1)?.data,
      ).toMatchObject({
        source: "local",
        to: jwkThumbprint(next.publicKey),
      });

      // The same document again: refused, with its reason, over the route itself.
      const replay = await localApiRequest(agent.apiSocket, "POST", "/v1/owner-rotations", {
        document: summary.document,
      });
      expect(replay).toEqual({
        status: 422,
        json: { accepted: false, reasons: ["rotation.replayed"] },
      });
      // The old key signing again (a fresh rotation): exit 3, the agent's reason in the message.
      const byOld = await rotate();
      expect(byOld.code).toBe(3);
      expect(byOld.stderr).toContain("AGENTD_E_ROTATION_REFUSED");
      expect(byOld.stderr).toContain("AGENTD_E_JWS_UNKNOWN_KEY");
      const refused = audit(m).filter((e) => e.type === "document.refused");
      expect(refused.map((e) => e.data?.reasons)).toEqual([
        ["rotation.replayed"],
        ["AGENTD_E_JWS_UNKNOWN_KEY"],
      ]);
      const bad = await localApiRequest(agent.apiSocket, "POST", "/v1/owner-rotations", {
        jws: summary.document,
      });
      expect([bad.status, (bad.json.error as { code: string }).code]).toEqual([
        400,
        "AGENTD_E_SCHEMA",
      ]);
      expect(await ownerKey(agent)).toBe(jwkThumbprint(next.publicKey));
    } finally {
      await agent.close();
    }
  });

  it("relayed by the control plane over the push stream: A→B, B→A, the replay refused, consents follow the key", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    let agent = await m.start();
    const rotated = () => audit(m).filter((e) => e.type === "owner.rotated");
    try {
      await runningOnConsent1(m, agent);
      const a = m.owner;
      const b = generateEd25519KeyPair();
      const aToB = signOwnerRotation({
        ownerKey: a.privateKey,
        worker: m.enrolled.worker_id,
        newOwnerKey: b.privateKey,
        iat: nowS(cp),
      });
      await m.ownerApi.postOwnerRotation(m.enrolled.worker_id, aToB);
      await until(() => rotated().length === 1, "A→B pushed");
      expect(rotated()[0]?.data).toMatchObject({ source: "push", to: jwkThumbprint(b.publicKey) });
      expect(await ownerKey(agent)).toBe(jwkThumbprint(b.publicKey));
      expect(mining(agent)).toEqual({ mining: true, reasons: [] });

      // A consent by the new key is accepted by the control plane and the agent alike.
      cp.clock.advance(1000);
      const second = await m.ownerApi.postConsent(consentBy(cp, m, b.privateKey, 2));
      await until(() => policyVersion(agent) === second.version, "consent 2, signed by B");
      await until(() => mining(agent).mining, "mining under consent 2");

      cp.clock.advance(1000);
      const bToA = signOwnerRotation({
        ownerKey: b.privateKey,
        worker: m.enrolled.worker_id,
        newOwnerKey: a.privateKey,
        iat: nowS(cp),
      });
      await m.ownerApi.postOwnerRotation(m.enrolled.worker_id, bToA);
      await until(() => rotated().length === 2, "B→A pushed");
      expect(await ownerKey(agent)).toBe(jwkThumbprint(a.publicKey));
      // consent 2 (signed by B, now retired) is the one in force and stays so
      expect(policyVersion(agent)).toBe(second.version);
      expect(mining(agent)).toEqual({ mining: true, reasons: [] });

      // The replayed A→B, signed by the key in force: refused by the control plane…
      await expect(m.ownerApi.postOwnerRotation(m.enrolled.worker_id, aToB)).rejects.toMatchObject({
        code: "AGENTD_E_CP_CONFLICT",
      });
      // …and by the agent, had a control plane relayed it anyway.
      const local = await localApiRequest(agent.apiSocket, "POST", "/v1/owner-rotations", {
        document: aToB,
      });
      expect(local.json).toEqual({ accepted: false, reasons: ["rotation.replayed"] });
      expect(await ownerKey(agent)).toBe(jwkThumbprint(a.publicKey));

      // Persisted: a restart keeps the key, the history and the consent in force.
      await agent.close();
      agent = await m.start();
      expect(await ownerKey(agent)).toBe(jwkThumbprint(a.publicKey));
      await until(() => policyVersion(agent) === second.version, "consent 2 after the restart");
      const again = await localApiRequest(agent.apiSocket, "POST", "/v1/owner-rotations", {
        document: aToB,
      });
      expect(again.json).toEqual({ accepted: false, reasons: ["rotation.replayed"] });
    } finally {
      await agent.close();
    }
  });

  it("without the push stream, a consent by the new key brings the missed rotation through the poll", async () => {
    const noStream = (ctx: Parameters<typeof allGroups>[0]) =>
      allGroups(ctx).map((g) => ({ ...g, wsRoutes: [] }));
    const cp = await serve({ groups: noStream });
    const m = await enrolledMachine(cp);
    const agent = await m.start(FACTS);
    try {
      await runningOnConsent1(m, agent);
      const b = generateEd25519KeyPair();
      await m.ownerApi.postOwnerRotation(
        m.enrolled.worker_id,
        signOwnerRotation({
          ownerKey: m.owner.privateKey,
          worker: m.enrolled.worker_id,
          newOwnerKey: b.privateKey,
          iat: nowS(cp),
        }),
      );
      cp.clock.advance(1000);
      const second = await m.ownerApi.postConsent(consentBy(cp, m, b.privateKey, 2));
      await until(() => policyVersion(agent) === second.version, "consent 2 through the poll");
      expect(await ownerKey(agent)).toBe(jwkThumbprint(b.publicKey));
      const rotated = audit(m).filter((e) => e.type === "owner.rotated");
      expect(rotated.map((e) => e.data?.source)).toEqual(["poll"]);
    } finally {
      await agent.close();
    }
  });
});
