import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { verifyAuditLines } from "../../cli/commands/cp-audit-verify.ts";
import {
  createApiClient,
  createMachineClient,
  enroll,
} from "../../control-plane/protocol/client.ts";
import { verifyCommand } from "../../control-plane/protocol/documents/command.ts";
import {
  encodeEnrollmentToken,
  parseEnrollmentToken,
} from "../../control-plane/protocol/enrollment-token.ts";
import {
  acceptKeySetUpdate,
  KEY_USES,
  resolverFor,
  signKeySet,
} from "../../control-plane/protocol/keyset.ts";
import type { WorkerEvent } from "../../control-plane/protocol/schemas/api-worker.ts";
import { encodeBase64url } from "../../lib/crypto/base64url.ts";
import { generateEd25519KeyPair, jwkThumbprint, publicJwk } from "../../lib/crypto/ed25519.ts";
import { decodeJwsUnverified } from "../../lib/crypto/jws.ts";
import type { PublicationPayload } from "../../policy-guard/documents.ts";
import { signConsent, signRevocation } from "../../policy-guard/sign.ts";
import { EMPTY_COUNTERS, verifyDocuments } from "../../policy-guard/verify.ts";
import {
  FACTS,
  heartbeatBody,
  rejection,
  type ServedCp,
  until,
  useServedCp,
} from "../control-plane/protocol/client-fixture.ts";

/**
 * The reference control plane end to end, over real TLS, as `agentd cp serve` runs it
 * (control-plane/serve.ts on a directory made by `agentd cp init`), driven by a scripted agent
 * built on the protocol client — on SQLite and on PostgreSQL: owner registration → enrollment
 * token → enrollment (tokens pinning another CA or another root refused by the client, before
 * the secret is sent) → attestation → consent signed with the owner's key → publication fetched
 * and verified with the policy guard → heartbeats (a replay refused) → a signed command pushed
 * over the stream → its result (a replay refused) → a revocation pushed over the stream → a
 * key-set rotation the agent accepts (and a forged one it refuses) → a restart of the control
 * plane that loses nothing: counters, versions, sessions, the audit chain.
 */

const seconds = (cp: ServedCp) => Math.floor(cp.clock.now() / 1000);
const payloadOf = <T>(jws: string) => decodeJwsUnverified(jws).payload as T;

describe.each(["sqlite", "postgres"] as const)("control plane end to end (%s)", (backend) => {
  const serve = useServedCp();

  it("enrolls, attests, publishes, heartbeats, commands, revokes, and survives a restart", async () => {
    const cp = await serve({ backend });
    const admin = cp.api(cp.adminKey);

    // ---- owner registration and an enrollment token
    const ownerKeys = generateEd25519KeyPair();
    const ownerReg = await admin.createOwner({
      jwk: publicJwk(ownerKeys.publicKey),
      label: "farm",
    });
    expect(ownerReg.owner).toBe(jwkThumbprint(ownerKeys.publicKey));
    const owner = cp.api(ownerReg.api_key);
    const { token } = await owner.createEnrollmentToken({ ttl_s: 600 });
    const operator = cp.api((await admin.createApiKey({ role: "operator" })).api_key);

    // ---- enrollment: tokens with another CA hash or root thumbprint are refused first
    const machineKeys = generateEd25519KeyPair();
    const t = parseEnrollmentToken(token);
    const tries = [
      encodeEnrollmentToken({ ...t, ca_sha256: randomBytes(32).toString("hex") }),
      encodeEnrollmentToken({ ...t, root_kid: encodeBase64url(randomBytes(32)) }),
    ];
    for (const forged of tries) {
      const err = await rejection(
        enroll({
          token: forged,
          machineKey: machineKeys.privateKey,
          facts: FACTS,
          clock: cp.clock,
        }),
      );
      expect(err.code).toBe("AGENTD_E_ENROLL_PIN_MISMATCH");
    }
    expect(cp.seen).not.toContain("POST /v1/machines/register");
    const enrollment = await enroll({
      token,
      machineKey: machineKeys.privateKey,
      facts: FACTS,
      ownerPub: ownerKeys.publicKey,
      clock: cp.clock,
    });
    const worker = enrollment.workerId;
    expect(worker).toBe(jwkThumbprint(machineKeys.publicKey));

    // ---- the agent: attestation, then its loop
    const agent = createMachineClient({
      url: enrollment.url,
      caPem: enrollment.caPem,
      clock: cp.clock,
      machineKey: machineKeys.privateKey,
    });
    cp.onCleanup(() => agent.close());
    expect(await agent.attest(FACTS)).toMatchObject({ verdict: "ok", quarantined: false });

    const events: WorkerEvent[] = [];
    const stream = agent.openStream({
      after: 0,
      onEvent: (e) => {
        events.push(e);
      },
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
    });
    cp.onCleanup(() => stream.close());
    await until(() => stream.ready(), "the stream");

    // ---- consent signed by the owner's key, published by the control plane
    const iat = seconds(cp);
    const consent = (seq: number) =>
      signConsent({
        ownerKey: ownerKeys.privateKey,
        worker,
        policyId: "farm-a",
        seq,
        iat,
        exp: iat + 30 * 86_400,
        rules: {
          upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "owner1.rig1" }],
          commands: ["mining.pause", "mining.resume"],
        },
      });
    const published = await owner.postConsent(consent(1));
    expect(published).toMatchObject({ worker, seq: 1 });
    const policy = await agent.getPolicy();
    if (!policy.changed) throw new Error("expected the first bundle");
    const trust = {
      owner: ownerKeys.publicKey,
      publication: Object.values(enrollment.keyset.keys.publication),
    };
    const verified = verifyDocuments({
      bundle: policy.bundle,
      trust,
      worker,
      counters: EMPTY_COUNTERS,
    });
    expect([...verified.consentReasons, ...verified.publicationReasons]).toEqual([]);
    expect(verified.publication?.payload).toMatchObject({
      version: published.version,
      stop: false,
    });
    await until(() => events.some((e) => e.kind === "publication"), "the publication event");

    // ---- heartbeats; a replayed one is refused
    for (const n of [1, 2, 3]) expect((await agent.heartbeat(heartbeatBody(n))).counter).toBe(n);
    const [latest] = await cp.serving.store.listHeartbeats(worker, { limit: 1 });
    expect((await rejection(agent.sendHeartbeat(latest?.jws ?? ""))).code).toBe(
      "AGENTD_E_CP_REPLAY",
    );

    // ---- a command: signed, pushed over the stream, answered once
    const sent = await operator.createCommand({
      worker,
      action: "mining.pause",
      args: {},
      ttl_s: 600,
    });
    await until(() => events.some((e) => e.kind === "command"), "the pushed command");
    const pushed = events.find((e) => e.kind === "command") as WorkerEvent;
    const command = verifyCommand(pushed.jws, {
      key: resolverFor(enrollment.keyset, "command"),
      worker,
      clock: cp.clock,
    });
    expect(command.payload).toMatchObject({
      cmd_id: sent.cmd_id,
      action: "mining.pause",
      seq: sent.seq,
    });
    expect((await agent.heartbeat(heartbeatBody(4))).pending_commands).toEqual([sent.cmd_id]);
    await agent.postCommandResult({ cmdId: sent.cmd_id, status: "done", reason: "" });
    expect(
      (await rejection(agent.postCommandResult({ cmdId: sent.cmd_id, status: "done", reason: "" })))
        .code,
    ).toBe("AGENTD_E_CP_REPLAY");

    // ---- the owner revokes: pushed over the stream at once, and a stop is published
    const revocation = signRevocation({
      ownerKey: ownerKeys.privateKey,
      worker,
      iat: seconds(cp),
      throughSeq: 1,
    });
    const revoked = await owner.postRevocation(worker, revocation);
    await until(() => events.some((e) => e.kind === "revocation"), "the pushed revocation");
    expect(events.find((e) => e.kind === "revocation")).toMatchObject({
      id: revoked.event_id,
      jws: revocation,
    });
    const stopped = await agent.getPolicy({ etag: policy.etag });
    if (!stopped.changed) throw new Error("expected the stop publication");
    expect(payloadOf<PublicationPayload>(stopped.bundle.publication).stop).toBe(true);
    const ids = events.map((e) => e.id);
    expect(ids).toEqual([...new Set(ids)].sort((a, b) => a - b));

    // ---- a key-set rotation signed by the root is accepted; a forged one is refused
    const rotated = await admin.rotateKeys();
    const next = acceptKeySetUpdate(enrollment.keyset, rotated.keyset);
    expect(next.seq).toBe(enrollment.keyset.seq + 1);
    const forger = generateEd25519KeyPair();
    const forged = signKeySet({
      rootPrivateKey: forger.privateKey,
      seq: next.seq + 1,
      iat: seconds(cp),
      keys: KEY_USES.map((use) => ({ use, publicKey: generateEd25519KeyPair().publicKey })),
    });
    expect(() => acceptKeySetUpdate(next, forged)).toThrow(
      expect.objectContaining({ code: "AGENTD_E_ENROLL_PIN_MISMATCH" }),
    );

    // ---- restart: nothing lost
    const auditBefore = await allAudit(cp);
    const before = await cp.serving.store.getWorker(worker);
    const versionBefore = (await cp.serving.store.latestPublication(worker))?.version;
    await stream.close();
    await cp.restart();
    const after = await cp.serving.store.getWorker(worker);
    expect(after).toMatchObject({
      last_counter: 4,
      consent_seq: 1,
      publication_version: before?.publication_version,
      last_event_id: before?.last_event_id,
    });
    expect((await cp.serving.store.latestPublication(worker))?.version).toBe(versionBefore);
    expect((await cp.serving.store.getCommand(sent.cmd_id))?.result?.status).toBe("done");
    // the session and the counter: a replay still refused, the next counter accepted
    expect((await rejection(agent.heartbeat(heartbeatBody(4)))).code).toBe("AGENTD_E_CP_REPLAY");
    expect((await agent.heartbeat(heartbeatBody(5))).counter).toBe(5);
    // versions keep going up
    const republished = await owner.postConsent(consent(2));
    expect(republished.version).toBeGreaterThan(versionBefore ?? Number.POSITIVE_INFINITY);
    // the audit chain: the same events, extended, and still verifying end to end
    const auditAfter = await allAudit(cp);
    expect(auditAfter.slice(0, auditBefore.length)).toEqual(auditBefore);
    expect(auditAfter.length).toBeGreaterThan(auditBefore.length);
    const check = verifyAuditLines(auditAfter.map((e) => `${JSON.stringify(e)}\n`).join(""));
    expect(check).toMatchObject({ valid: true, count: auditAfter.length });
    expect(auditAfter.map((e) => e.type)).toEqual(
      expect.arrayContaining(["owner.created", "keys.rotated"]),
    );
    expect((await cp.serving.store.verifyAudit()).ok).toBe(true);
  });
});

async function allAudit(cp: ServedCp) {
  const auditor = createApiClient({
    url: cp.url(),
    caPem: cp.caPem,
    clock: cp.clock,
    apiKey: (await cp.api(cp.adminKey).createApiKey({ role: "auditor" })).api_key,
  });
  try {
    const out = [];
    for await (const e of auditor.auditExport({ pageSize: 7 })) out.push(e);
    return out;
  } finally {
    auditor.close();
  }
}
