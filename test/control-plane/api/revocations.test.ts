import { describe, expect, it } from "vitest";
import { policiesGroup } from "../../../control-plane/api/policies.ts";
import { revocationsGroup } from "../../../control-plane/api/revocations.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import { encodeBase64url } from "../../../lib/crypto/base64url.ts";
import { decodeJwsUnverified, documentIdentity } from "../../../lib/crypto/jws.ts";
import { signConsent, signDecommission, signRevocation } from "../../../policy-guard/sign.ts";
import { type TestCp, type TestMachine, type TestOwner, useTestCp } from "./harness.ts";

const RULES = { upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "owner1.rig" }] };
const nowS = (t: TestCp) => Math.floor(t.clock.now() / 1000);

async function postConsent(t: TestCp, o: TestOwner, m: TestMachine, seq: number) {
  const c = signConsent({
    ownerKey: o.privateKey,
    worker: m.workerId,
    rules: RULES,
    seq,
    policyId: "farm-a",
    iat: nowS(t),
    exp: nowS(t) + 30 * 86_400,
  });
  const r = await t.call("POST", "/v1/policies", { apiKey: o.apiKey, body: { consent: c } });
  expect(r.status).toBe(200);
  return r.json;
}

const revocation = (t: TestCp, o: TestOwner, worker: string, throughSeq: number) =>
  signRevocation({ ownerKey: o.privateKey, worker, throughSeq, iat: nowS(t) });

const groups = (ctx: Parameters<typeof policiesGroup>[0]) => [
  policiesGroup(ctx),
  revocationsGroup(ctx),
];

describe.each(["sqlite", "postgres"] as const)("revocations (%s)", (backend) => {
  const start = useTestCp();
  const cp = () => start({ groups, backend });
  const post = (t: TestCp, o: TestOwner, worker: string, document: string) =>
    t.call("POST", `/v1/workers/${worker}/revocations`, { apiKey: o.apiKey, body: { document } });

  it("stores a revocation of the current consent, pushes it as an event and publishes a stop", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const published = await postConsent(t, o, m, 2);
    t.clock.advance(1000);
    const doc = revocation(t, o, m.workerId, 2);
    const r = await post(t, o, m.workerId, doc);
    expect(r.status).toBe(200);
    const body = validate("revocation-create-response", r.json);
    expect(body).toMatchObject({
      worker: m.workerId,
      kind: "revocation",
      identity: documentIdentity(doc),
    });
    const stored = await t.store.listRevocations(m.workerId);
    expect(stored.map((x) => [x.kind, x.through_seq, x.jws])).toEqual([["revocation", 2, doc]]);
    const events = await t.store.streamEventsSince(m.workerId, 0);
    const revEvent = events.find((e) => e.id === body.event_id);
    expect(revEvent?.kind).toBe("revocation");
    // the stop publication comes after the revocation event, with a higher version
    const last = events.at(-1);
    expect(last?.kind).toBe("publication");
    const latest = await t.store.latestPublication(m.workerId);
    expect(latest?.stop).toBe(true);
    expect(latest?.version).toBeGreaterThan(published.version);
    expect(String(latest?.version)).toBe(last?.ref);
    const audit = await t.store.listAudit({ object: `worker:${m.workerId}` });
    expect(audit.map((e) => e.type)).toEqual([
      "consent.accepted",
      "publication.issued",
      "revocation.accepted",
      "publication.issued",
    ]);
    expect(audit[3]?.data).toMatchObject({ stop: true, reason: "revocation" });
    // a newer consent lifts the stop
    t.clock.advance(1000);
    await postConsent(t, o, m, 3);
    expect((await t.store.latestPublication(m.workerId))?.stop).toBe(false);
  });

  it("stores a revocation of older consents only, without stopping the current one", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    await postConsent(t, o, m, 5);
    const before = await t.store.latestPublication(m.workerId);
    const r = await post(t, o, m.workerId, revocation(t, o, m.workerId, 4));
    expect(r.status).toBe(200);
    expect(await t.store.latestPublication(m.workerId)).toEqual(before);
  });

  it("stores a revocation for a worker without consent (nothing to stop)", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const r = await post(t, o, m.workerId, revocation(t, o, m.workerId, 1));
    expect(r.status).toBe(200);
    expect(await t.store.latestPublication(m.workerId)).toBeNull();
    expect(await t.store.listRevocations(m.workerId)).toHaveLength(1);
  });

  it("decommissions: stored, stopped, and every later owner change refused", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    await postConsent(t, o, m, 1);
    t.clock.advance(1000);
    const doc = signDecommission({ ownerKey: o.privateKey, worker: m.workerId, iat: nowS(t) });
    const r = await post(t, o, m.workerId, doc);
    expect(r.status).toBe(200);
    expect(r.json.kind).toBe("decommission");
    expect((await t.store.getWorker(m.workerId))?.decommissioned_at).toBe(nowS(t));
    expect((await t.store.latestPublication(m.workerId))?.stop).toBe(true);
    const kinds = (await t.store.streamEventsSince(m.workerId, 0)).map((e) => e.kind);
    expect(kinds).toEqual(["publication", "decommission", "publication"]);
    const again = await post(t, o, m.workerId, revocation(t, o, m.workerId, 1));
    expect([again.status, again.json.error.code]).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
  });

  it("refuses duplicates, forgeries and documents about other workers", async () => {
    const t = await cp();
    const o = await t.owner();
    const other = await t.owner();
    const m = await t.machine(o);
    const m2 = await t.machine(o);
    const mo = await t.machine(other);
    const doc = revocation(t, o, m.workerId, 1);
    expect((await post(t, o, m.workerId, doc)).status).toBe(200);
    const dup = await post(t, o, m.workerId, doc);
    expect([dup.status, dup.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);

    const [h, , s] = doc.split(".");
    const payload = { ...(decodeJwsUnverified(doc).payload as object), through_seq: 9 };
    const forged = `${h}.${encodeBase64url(Buffer.from(JSON.stringify(payload)))}.${s}`;
    const cases: [string, string, number, string][] = [
      [m.workerId, forged, 400, "AGENTD_E_JWS_SIGNATURE"],
      // signed by another owner's key
      [m.workerId, revocation(t, other, m.workerId, 1), 400, "AGENTD_E_JWS_UNKNOWN_KEY"],
      // about another worker of the same owner
      [m2.workerId, revocation(t, o, m.workerId, 2), 400, "AGENTD_E_JWS_PAYLOAD"],
      // not a revocation
      [
        m.workerId,
        signConsent({
          ownerKey: o.privateKey,
          worker: m.workerId,
          rules: RULES,
          seq: 1,
          policyId: "p",
          iat: nowS(t),
          exp: nowS(t) + 60,
        }),
        400,
        "AGENTD_E_JWS_TYP",
      ],
      // from the future
      [
        m.workerId,
        signRevocation({
          ownerKey: o.privateKey,
          worker: m.workerId,
          throughSeq: 3,
          iat: nowS(t) + 3600,
        }),
        400,
        "AGENTD_E_JWS_NOT_YET_VALID",
      ],
      // another owner's worker
      [mo.workerId, revocation(t, other, mo.workerId, 1), 403, "AGENTD_E_CP_FORBIDDEN"],
      ["A".repeat(43), revocation(t, o, m.workerId, 1), 404, "AGENTD_E_CP_NOT_FOUND"],
    ];
    for (const [worker, document, status, code] of cases) {
      const r = await post(t, o, worker, document);
      expect([r.status, r.json.error.code]).toEqual([status, code]);
    }
    expect(await t.store.listRevocations(m.workerId)).toHaveLength(1);
    expect(await t.store.listRevocations(m2.workerId)).toHaveLength(0);
    expect(await t.store.listRevocations(mo.workerId)).toHaveLength(0);
    const refused = await t.store.listAudit({ type: "revocation.refused" });
    expect(refused.map((e) => e.data.code)).toEqual([
      "AGENTD_E_CP_CONFLICT",
      "AGENTD_E_JWS_SIGNATURE",
      "AGENTD_E_JWS_UNKNOWN_KEY",
      "AGENTD_E_JWS_PAYLOAD",
      "AGENTD_E_JWS_TYP",
      "AGENTD_E_JWS_NOT_YET_VALID",
    ]);
    const r = await t.call("POST", `/v1/workers/${m.workerId}/revocations`, {
      apiKey: t.adminKey,
      body: { document: doc },
    });
    expect(r.status).toBe(403);
    const s400 = await post(t, o, m.workerId, "nope");
    expect([s400.status, s400.json.error.code]).toEqual([400, "AGENTD_E_SCHEMA"]);
  });
});
