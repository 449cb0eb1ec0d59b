import type { KeyObject } from "node:crypto";
import { describe, expect, it } from "vitest";
import { commandsGroup } from "../../../control-plane/api/commands.ts";
import { ownerRotationsGroup } from "../../../control-plane/api/owner-rotations.ts";
import { policiesGroup } from "../../../control-plane/api/policies.ts";
import { revocationsGroup } from "../../../control-plane/api/revocations.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import { generateEd25519KeyPair, jwkThumbprint } from "../../../lib/crypto/ed25519.ts";
import { documentIdentity } from "../../../lib/crypto/jws.ts";
import { signConsent, signOwnerRotation, signRevocation } from "../../../policy-guard/sign.ts";
import { type TestCp, type TestMachine, type TestOwner, useTestCp } from "./harness.ts";

/**
 * `POST /v1/workers/{id}/owner-rotations`: the owner relays an owner-key rotation; the control
 * plane checks it under the worker's owner key in force, stores it in order with its stream
 * event, and from then on verifies that worker's owner documents under the new key.
 */

const RULES = { upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "owner1.rig" }] };
const nowS = (t: TestCp) => Math.floor(t.clock.now() / 1000);

const groups = (ctx: Parameters<typeof policiesGroup>[0]) => [
  policiesGroup(ctx),
  revocationsGroup(ctx),
  ownerRotationsGroup(ctx),
  commandsGroup(ctx),
];

const consent = (t: TestCp, key: KeyObject, m: TestMachine, seq: number) =>
  signConsent({
    ownerKey: key,
    worker: m.workerId,
    rules: RULES,
    seq,
    policyId: "farm-a",
    iat: nowS(t),
    exp: nowS(t) + 30 * 86_400,
  });

describe.each(["sqlite", "postgres"] as const)("owner-key rotations (%s)", (backend) => {
  const start = useTestCp();
  const cp = () => start({ groups, backend });
  const post = (t: TestCp, o: TestOwner, worker: string, document: string) =>
    t.call("POST", `/v1/workers/${worker}/owner-rotations`, {
      apiKey: o.apiKey,
      body: { document },
    });
  const postConsent = (t: TestCp, o: TestOwner, c: string) =>
    t.call("POST", "/v1/policies", { apiKey: o.apiKey, body: { consent: c } });
  const rotate = (t: TestCp, from: KeyObject, to: KeyObject, m: TestMachine, dt = 0) =>
    signOwnerRotation({ ownerKey: from, worker: m.workerId, newOwnerKey: to, iat: nowS(t) + dt });

  it("stores the rotation with its event; then only the new key's documents are accepted", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    expect((await postConsent(t, o, consent(t, o.privateKey, m, 1))).status).toBe(200);
    const next = generateEd25519KeyPair();
    t.clock.advance(1000);
    const doc = rotate(t, o.privateKey, next.privateKey, m);
    const r = await post(t, o, m.workerId, doc);
    expect(r.status).toBe(200);
    expect(validate("owner-rotation-create-response", r.json)).toEqual({
      worker: m.workerId,
      identity: documentIdentity(doc),
      from_owner: o.ownerId,
      to_owner: jwkThumbprint(next.publicKey),
      event_id: r.json.event_id,
    });
    const event = (await t.store.streamEventsSince(m.workerId, 0)).find(
      (e) => e.id === r.json.event_id,
    );
    expect(event?.kind).toBe("owner_rotation");
    // the poll twin serves it as the agent will see it
    const polled = await t.call("GET", `/v1/workers/${m.workerId}/commands`, { machine: m });
    expect(polled.status).toBe(200);
    expect(polled.json.events.at(-1)).toEqual({
      id: r.json.event_id,
      kind: "owner_rotation",
      jws: doc,
    });
    // the consent in force is untouched: still the latest, still published
    expect((await t.store.latestConsent(m.workerId))?.seq).toBe(1);

    // The retired key: no consent, no revocation, no further rotation.
    t.clock.advance(1000);
    const byOld = await postConsent(t, o, consent(t, o.privateKey, m, 2));
    expect([byOld.status, byOld.json.error.code]).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
    const revokeOld = await t.call("POST", `/v1/workers/${m.workerId}/revocations`, {
      apiKey: o.apiKey,
      body: {
        document: signRevocation({
          ownerKey: o.privateKey,
          worker: m.workerId,
          throughSeq: 1,
          iat: nowS(t),
        }),
      },
    });
    expect([revokeOld.status, revokeOld.json.error.code]).toEqual([
      400,
      "AGENTD_E_JWS_UNKNOWN_KEY",
    ]);
    const again = await post(
      t,
      o,
      m.workerId,
      rotate(t, o.privateKey, generateEd25519KeyPair().privateKey, m),
    );
    expect([again.status, again.json.error.code]).toEqual([400, "AGENTD_E_JWS_UNKNOWN_KEY"]);

    // The new key, through the same owner account (its API key did not change).
    const byNew = await postConsent(t, o, consent(t, next.privateKey, m, 2));
    expect(byNew.status).toBe(200);
    expect((await t.store.latestConsent(m.workerId))?.seq).toBe(2);
    const revokeNew = await t.call("POST", `/v1/workers/${m.workerId}/revocations`, {
      apiKey: o.apiKey,
      body: {
        document: signRevocation({
          ownerKey: next.privateKey,
          worker: m.workerId,
          throughSeq: 1,
          iat: nowS(t),
        }),
      },
    });
    expect(revokeNew.status).toBe(200);
    const audit = await t.store.listAudit({ object: `worker:${m.workerId}` });
    expect(audit.filter((e) => e.type.startsWith("owner_rotation.")).map((e) => e.type)).toEqual([
      "owner_rotation.accepted",
      "owner_rotation.refused",
    ]);
  });

  it("A→B, B→A, then the replayed A→B is refused; an older rotation too", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const b = generateEd25519KeyPair().privateKey;
    const aToB = rotate(t, o.privateKey, b, m);
    expect((await post(t, o, m.workerId, aToB)).status).toBe(200);
    t.clock.advance(1000);
    expect((await post(t, o, m.workerId, rotate(t, b, o.privateKey, m))).status).toBe(200);
    // A is in force again and signed the replay: only the stored identity refuses it.
    const replay = await post(t, o, m.workerId, aToB);
    expect([replay.status, replay.json.error]).toEqual([
      409,
      expect.objectContaining({ code: "AGENTD_E_CP_CONFLICT" }),
    ]);
    // A fresh A→B dated before the last rotation: stale.
    const older = await post(t, o, m.workerId, rotate(t, o.privateKey, b, m, -10));
    expect([older.status, older.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
    const refused = await t.store.listAudit({ type: "owner_rotation.refused" });
    expect(refused.map((e) => e.data.reason)).toEqual(["duplicate", "stale"]);
    expect(await t.store.listOwnerRotations(m.workerId)).toHaveLength(2);
  });

  it("refuses forgeries, other workers, the key in force as the new key, the future", async () => {
    const t = await cp();
    const o = await t.owner();
    const other = await t.owner();
    const m = await t.machine(o);
    const m2 = await t.machine(o);
    const mo = await t.machine(other);
    const next = generateEd25519KeyPair().privateKey;
    const cases: [string, string, number, string][] = [
      [
        m.workerId,
        rotate(t, generateEd25519KeyPair().privateKey, next, m),
        400,
        "AGENTD_E_JWS_UNKNOWN_KEY",
      ],
      [m2.workerId, rotate(t, o.privateKey, next, m), 400, "AGENTD_E_JWS_PAYLOAD"],
      [m.workerId, rotate(t, o.privateKey, o.privateKey, m), 400, "AGENTD_E_JWS_PAYLOAD"],
      [m.workerId, rotate(t, o.privateKey, next, m, 3600), 400, "AGENTD_E_JWS_NOT_YET_VALID"],
      [m.workerId, consent(t, o.privateKey, m, 1), 400, "AGENTD_E_JWS_TYP"],
      [mo.workerId, rotate(t, other.privateKey, next, mo), 403, "AGENTD_E_CP_FORBIDDEN"],
    ];
    for (const [worker, document, status, code] of cases) {
      const r = await post(t, o, worker, document);
      expect([r.status, r.json.error.code], code).toEqual([status, code]);
    }
    for (const w of [m, m2, mo]) expect(await t.store.listOwnerRotations(w.workerId)).toEqual([]);
    const admin = await t.call("POST", `/v1/workers/${m.workerId}/owner-rotations`, {
      apiKey: t.adminKey,
      body: { document: rotate(t, o.privateKey, next, m) },
    });
    expect(admin.status).toBe(403);
  });
});
