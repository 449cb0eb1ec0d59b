import { describe, expect, it } from "vitest";
import { runCli } from "../../cli/program.ts";
import { signAssignment } from "../../control-plane/protocol/documents/assignment.ts";
import { signKeySet } from "../../control-plane/protocol/keyset.ts";
import { generateEd25519KeyPair, publicKeyOf } from "../../lib/crypto/ed25519.ts";
import { systemTimers } from "../../lib/timers.ts";
import { signConsent, signRevocation } from "../../policy-guard/sign.ts";
import { SimPool } from "../../sim/pool/server.ts";
import { until } from "../control-plane/protocol/client-fixture.ts";
import { ALLOWED, type HostileWorld, useHostileWorld } from "./hostile-world.ts";

/**
 * The owner's sovereignty against a malicious control plane (issue 15): every private key of
 * the control plane stolen (root, publication, command, assignment, token), its handlers
 * replaced or its database written, against a real agent mining to the owner's pool. For each
 * attack: nothing the owner did not sign happened (the pool, the agent's state and decision,
 * its audit log say so), and nothing the stolen keys left behind outlives the owner's next
 * consent — with it, and an honest publication from the control plane after its keys are
 * rotated, the machine mines again under the same machine key (`recover`).
 */

const MAX = Number.MAX_SAFE_INTEGER;
const world = useHostileWorld();

const refusals = (w: HostileWorld, type: string) => w.audit().filter((r) => r.type === type);

/** Shares that reach the owner's pool over `ms` (real time), after those in flight landed. */
async function sharesOver(w: HostileWorld, ms: number): Promise<number> {
  await new Promise((r) => setTimeout(r, 300));
  const from = w.shares();
  await new Promise((r) => setTimeout(r, ms));
  return w.shares() - from;
}

describe("a stolen control plane cannot lock the owner out", { timeout: 120_000 }, () => {
  it("a publication of version 2^53-1: accepted for the consent it countersigns, and the owner's next consent starts a fresh version space", async () => {
    const w = await world();
    await w.inject.publication(w.c1.jws, w.forge.publication(w.c1.jws, MAX), MAX);
    await until(() => w.status().policy.version === MAX, "the stolen key's publication taken");
    // It re-published what the owner signed: nothing widened, mining goes on as the owner said.
    await w.mines(2, "mining under the owner's consent 1");
    const c2 = await w.recover(2);
    expect(w.status().policy.version).toBeLessThan(MAX);
    expect(w.status().policy.consent_sha256).toBe(c2.identity);
  });

  it("a command of seq 2^53-1: runs if the owner allowed it, blocks nothing after the owner's next consent; a command of the old consent never runs again", async () => {
    const w = await world();
    const pause = w.forge.command("mining.pause", MAX, w.c1.identity);
    await w.inject.command(pause);
    await until(() => w.status().holds.includes("agent.paused_remotely"), "the remote pause");
    expect(await sharesOver(w, 1_000)).toBe(0);
    // The owner signs consent 2: the remote pause, the stolen key's doing, ends with it.
    const c2 = await w.owner.consent(2);
    await until(() => !w.status().holds.includes("agent.paused_remotely"), "the pause ended");
    await w.mines(3, "mining under consent 2");
    // The attacker (keys not rotated yet) sends a command bound to consent 1 with a fresh seq:
    // refused, it names another consent.
    const stale = w.forge.command("mining.pause", 5, w.c1.identity);
    await w.inject.command(stale);
    await until(
      () =>
        refusals(w, "command.refused").some(
          (r) => r.cmd_id === stale.payload.cmd_id && r.reason === "command.consent_mismatch",
        ),
      "the old consent's command refused",
    );
    expect(w.status().holds).not.toContain("agent.paused_remotely");
    // Keys rotated (the stolen ones dropped); the honest control plane's commands under
    // consent 2 run, in a fresh seq space.
    await w.cp.api(w.cp.adminKey).rotateKeys({ keep_previous: false });
    const op = await w.cp.api(w.cp.adminKey).createApiKey({ role: "operator" });
    for (const action of ["mining.pause", "mining.resume"] as const) {
      const sent = await w.cp.api(op.api_key).createCommand({
        worker: w.workerId,
        action,
        args: {},
      });
      expect(sent.seq).toBeLessThan(MAX);
      await until(
        () => refusals(w, "command.executed").some((r) => r.cmd_id === sent.cmd_id),
        `the honest ${action}`,
      );
    }
    expect(w.status().holds).not.toContain("agent.paused_remotely");
    await w.mines(3, "mining again under consent 2");
    expect(w.status().policy.consent_sha256).toBe(c2.identity);
  });
});

describe("a stolen control plane can stop a machine, never brick it", { timeout: 120_000 }, () => {
  it("quarantined: true in the attestation reply (unsigned) is recorded, never obeyed", async () => {
    const w = await world();
    w.attacks.attest = (body) => ({ ...body, quarantined: true });
    await w.restart();
    await until(
      () => refusals(w, "attestation.quarantine_ignored").length > 0,
      "the unsigned quarantine recorded",
    );
    expect(w.agent().state()).not.toBe("QUARANTINED");
    await w.recover(2);
  });

  it("a signed worker.quarantine (allowed by the owner) holds across a restart, and the owner's next consent clears it", async () => {
    const w = await world();
    await w.inject.command(w.forge.command("worker.quarantine", 7, w.c1.identity, { reason: "x" }));
    await until(() => w.agent().state() === "QUARANTINED", "quarantined by the signed command");
    expect(await sharesOver(w, 1_000)).toBe(0);
    // A restart runs (it does not refuse to start), still quarantined, still not mining.
    await w.restart();
    expect(w.agent().state()).toBe("QUARANTINED");
    expect(w.status().decision.mining).toBe(false);
    await w.recover(2);
    expect(w.agent().state()).not.toBe("QUARANTINED");
  });

  it("a remote mining.resume does not lift a pause made on the machine", async () => {
    const w = await world();
    expect((await w.api("POST", "/v1/mining/pause")).status).toBe(200);
    await w.inject.command(w.forge.command("mining.resume", 9, w.c1.identity));
    await until(
      () => refusals(w, "command.executed").some((r) => r.action === "mining.resume"),
      "the remote resume handled",
    );
    expect(w.status().holds).toContain("agent.paused");
    expect(await sharesOver(w, 1_000)).toBe(0);
    // only the machine lifts its own pause
    expect((await w.api("POST", "/v1/mining/resume")).status).toBe(200);
    await w.mines(3, "mining after the local resume");
    await w.recover(2);
  });

  it("a command the owner did not allow is refused, and nothing happens", async () => {
    const w = await world();
    const stop = w.forge.command("service.stop", 11, w.c1.identity, { service: "bitcoind" });
    expect(ALLOWED).not.toContain("service.stop");
    await w.inject.command(stop);
    await until(
      () =>
        refusals(w, "command.refused").some(
          (r) => r.cmd_id === stop.payload.cmd_id && r.reason === "command.not_allowed",
        ),
      "the command refused",
    );
    await w.mines(2, "still mining");
    await w.recover(2);
  });
});

describe("a stolen control plane cannot widen what the owner signed", { timeout: 120_000 }, () => {
  it("a consent forged with a control-plane key (wider rules) is refused", async () => {
    const w = await world();
    const attacker = await SimPool.start({ difficulty: 2 ** -18 });
    try {
      const forged = signConsent({
        ownerKey: w.stolen.signing.publication.privateKey,
        worker: w.workerId,
        policyId: "stolen",
        seq: 50,
        iat: Math.floor(w.cp.clock.now() / 1000),
        exp: Math.floor(w.cp.clock.now() / 1000) + 86_400,
        rules: {
          upstreams: [{ url: `stratum+tcp://127.0.0.1:${attacker.address.port}`, user: "thief" }],
          networks: ["0.0.0.0/0"],
          commands: ["agent.update", "service.stop"],
        },
      });
      // answered to the agent's policy poll, with a validly signed publication for it
      w.attacks.bundles.push({ consent: forged, publication: w.forge.publication(forged, 99) });
      await until(
        () =>
          refusals(w, "document.refused").some((r) =>
            JSON.stringify(r).includes("consent.unknown_key"),
          ),
        "the forged consent refused",
      );
      expect(w.status().policy.consent_sha256).toBe(w.c1.identity);
      await w.mines(2, "still mining to the owner's pool");
      expect(attacker.stats().accepted).toBe(0);
      expect(attacker.stats().connections).toBe(0);
    } finally {
      await attacker.close();
    }
    await w.recover(2);
  });

  it("an older consent re-published (rollback, stream replay) is refused", async () => {
    const w = await world();
    const c2 = await w.owner.consent(2);
    // consent 1 with a fresh, validly signed publication, answered to the policy poll
    w.attacks.bundles.push({
      consent: w.c1.jws,
      publication: w.forge.publication(w.c1.jws, MAX - 1),
    });
    await until(
      () =>
        refusals(w, "document.refused").some((r) =>
          JSON.stringify(r).includes("consent.seq_rollback"),
        ),
      "the rolled-back consent refused",
    );
    expect(w.status().policy.consent_sha256).toBe(c2.identity);
    await w.mines(2, "mining under consent 2");
    await w.recover(3);
  });

  it("an assignment to another pool or as another user is refused: no share reaches the attacker", async () => {
    const w = await world();
    const attacker = await SimPool.start({ difficulty: 2 ** -18 });
    try {
      const consent = {
        identity: w.c1.identity,
        payload: { worker: w.workerId, rules: { upstreams: [] } },
      };
      for (const upstream of [
        { url: `stratum+tcp://127.0.0.1:${attacker.address.port}`, user: "owner.rig" },
        { url: `stratum+tcp://127.0.0.1:${w.pool.address.port}`, user: "thief.rig" },
      ]) {
        w.attacks.assignment = () => {
          // signAssignment checks against the consent it is given: the attacker gives one
          // that lists their upstream.
          const listed = {
            ...consent,
            payload: { ...consent.payload, rules: { upstreams: [upstream] } },
          };
          return signAssignment({
            privateKey: w.stolen.signing.assignment.privateKey,
            worker: w.workerId,
            consent: listed as never,
            upstream,
            ttlS: 3600,
            clock: w.cp.clock,
          }).jws;
        };
        const before = refusals(w, "assignment.refused").length;
        await w.restart();
        await until(
          () => refusals(w, "assignment.refused").length > before,
          `the assignment to ${upstream.url} as ${upstream.user} refused`,
        );
      }
      expect(attacker.stats().connections).toBe(0);
      expect(attacker.stats().accepted).toBe(0);
      const users = Object.keys(w.pool.stats().users);
      expect(users).not.toContain("thief.rig");
    } finally {
      await attacker.close();
    }
    await w.recover(2);
  });

  it("a key set signed by a key other than the pinned root is refused, and documents signed by its keys too", async () => {
    const w = await world();
    const fake = generateEd25519KeyPair();
    const fakePub = generateEd25519KeyPair();
    w.attacks.keys = () =>
      signKeySet({
        rootPrivateKey: fake.privateKey,
        seq: 1_000,
        iat: Math.floor(w.cp.clock.now() / 1000),
        // one key per use, as a key set must have
        keys: [
          { use: "publication", publicKey: publicKeyOf(fakePub.privateKey) },
          ...(["command", "assignment", "token"] as const).map((use) => ({
            use,
            publicKey: generateEd25519KeyPair().publicKey,
          })),
        ],
      });
    // a publication signed by the attacker's key makes the agent look for it in a new key set
    const { signPublication } = await import("../../policy-guard/sign.ts");
    const pub = signPublication({
      cpKey: fakePub.privateKey,
      consent: w.c1.jws,
      worker: w.workerId,
      version: MAX,
      iat: Math.floor(w.cp.clock.now() / 1000),
      ttlS: 3600,
      stop: true,
    });
    w.attacks.bundles.push({ consent: w.c1.jws, publication: pub });
    await until(() => refusals(w, "keys.refused").length > 0, "the key set refused");
    expect(w.status().policy.version).not.toBe(MAX);
    await w.mines(2, "still mining: the attacker's stop was never taken");
    await w.recover(2);
  });
});

describe("the owner's revocation does not depend on the control plane's honesty", {
  timeout: 120_000,
}, () => {
  it("a revocation the control plane withholds: applied on the machine, it stops mining at once", async () => {
    const w = await world();
    w.attacks.withholdRevocations = true;
    const revocation = signRevocation({
      ownerKey: w.machine.owner.privateKey,
      worker: w.workerId,
      throughSeq: 1,
      iat: Math.floor(w.cp.clock.now() / 1000),
    });
    await w.machine.ownerApi.postRevocation(w.workerId, revocation);
    // withheld: the machine goes on mining
    await w.mines(2, "still mining: the revocation never arrived");
    // the owner's local path: `agentd consent revoke --apply --state-dir` on the machine
    const { writeFileSync } = await import("node:fs");
    const { join } = await import("node:path");
    const keyFile = join(w.machine.stateDir, "..", `owner-${process.pid}.key`);
    const { writeKeyPair } = await import("../../lib/crypto/key-files.ts");
    writeKeyPair(keyFile, `${keyFile}.pub`, w.machine.owner.privateKey, { force: true });
    const out: string[] = [];
    const code = await runCli(
      [
        "consent",
        "revoke",
        "--owner-key",
        keyFile,
        "--worker",
        w.workerId,
        "--through-seq",
        "1",
        "--apply",
        "--state-dir",
        w.machine.stateDir,
      ],
      {
        stdout: (s) => out.push(s),
        stderr: (s) => out.push(s),
        env: {},
        clock: w.cp.clock,
        timers: systemTimers,
      },
    );
    expect(code, out.join("")).toBe(0);
    writeFileSync(keyFile, "");
    await until(() => w.agent().state() === "REVOKED", "revoked on the machine");
    expect(await sharesOver(w, 1_000)).toBe(0);
    await w.recover(2);
  });
});
