import { describe, expect, it } from "vitest";
import { assignmentGroup } from "../../../control-plane/api/assignment.ts";
import { policiesGroup } from "../../../control-plane/api/policies.ts";
import { verifyAssignment } from "../../../control-plane/protocol/documents/assignment.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import { publicKeyOf } from "../../../lib/crypto/ed25519.ts";
import { decodeJwsUnverified } from "../../../lib/crypto/jws.ts";
import { parseConsentPayload } from "../../../policy-guard/documents.ts";
import { signConsent } from "../../../policy-guard/sign.ts";
import { type TestCp, type TestMachine, type TestOwner, useTestCp } from "./harness.ts";

const UPSTREAMS = [
  { url: "stratum+tcp://pool.example:3333", user: "owner1.rig" },
  { url: "stratum+tcp://backup.example:3333", user: "owner1.rig2" },
];
const nowS = (t: TestCp) => Math.floor(t.clock.now() / 1000);

async function postConsent(
  t: TestCp,
  o: TestOwner,
  m: TestMachine,
  seq: number,
  rules: unknown,
  lifetimeS = 30 * 86_400,
): Promise<string> {
  const c = signConsent({
    ownerKey: o.privateKey,
    worker: m.workerId,
    rules,
    seq,
    policyId: "farm-a",
    iat: nowS(t),
    exp: nowS(t) + lifetimeS,
  });
  const r = await t.call("POST", "/v1/policies", { apiKey: o.apiKey, body: { consent: c } });
  expect(r.status).toBe(200);
  return c;
}

describe.each(["sqlite", "postgres"] as const)("assignment (%s)", (backend) => {
  const start = useTestCp();
  const cp = (publicationTtlS = 86_400) =>
    start({
      groups: (ctx) => [policiesGroup(ctx), assignmentGroup(ctx)],
      backend,
      settings: { publicationTtlS },
    });
  const get = (t: TestCp, m: TestMachine, worker = m.workerId) =>
    t.call("GET", `/v1/workers/${worker}/assignment`, { machine: m });

  it("assigns the consent's first upstream, signed by the assignment key, within the publication", async () => {
    const t = await cp(7200);
    const o = await t.owner();
    const m = await t.machine(o);
    const none = await get(t, m);
    expect([none.status, none.json.error.code]).toEqual([404, "AGENTD_E_CP_NOT_FOUND"]);
    const c = await postConsent(t, o, m, 1, { upstreams: UPSTREAMS });
    const r = await get(t, m);
    expect(r.status).toBe(200);
    const { assignment } = validate("assignment-response", r.json);
    const payload = parseConsentPayload(decodeJwsUnverified(c).payload as Record<string, unknown>);
    const latest = await t.store.latestPublication(m.workerId);
    const doc = verifyAssignment(assignment, {
      key: publicKeyOf(t.ctx.keys().signing.assignment.privateKey),
      worker: m.workerId,
      consent: { identity: latest?.consent_identity ?? "", payload },
      clock: t.clock,
    });
    expect(doc.payload.upstream).toEqual(UPSTREAMS[0]);
    expect(doc.payload.iat).toBe(nowS(t));
    expect(doc.payload.exp).toBe(latest?.exp);
    expect(doc.payload.exp - doc.payload.iat).toBe(7200);
  });

  it("ends the assignment with the consent when the consent ends first", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    await postConsent(t, o, m, 1, { upstreams: UPSTREAMS }, 600);
    const r = await get(t, m);
    const exp = (decodeJwsUnverified(r.json.assignment).payload as { exp: number }).exp;
    expect(exp).toBe(nowS(t) + 600);
    t.clock.advance(600_000);
    const expired = await get(t, m);
    expect([expired.status, expired.json.error.code]).toEqual([404, "AGENTD_E_CP_NOT_FOUND"]);
  });

  it("refuses without an upstream (404), under a stop (409) and after the publication expired (409)", async () => {
    const t = await cp(3600);
    const o = await t.owner();
    const m = await t.machine(o);
    await postConsent(t, o, m, 1, {});
    const noUpstream = await get(t, m);
    expect([noUpstream.status, noUpstream.json.error.code]).toEqual([404, "AGENTD_E_CP_NOT_FOUND"]);
    t.clock.advance(1000);
    await postConsent(t, o, m, 2, { upstreams: UPSTREAMS });
    expect((await get(t, m)).status).toBe(200);
    t.clock.advance(3600_000);
    const late = await get(t, m);
    expect([late.status, late.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
    // a stop: quarantine is lifted again so that only the stop publication refuses
    await t.store.setQuarantine(m.workerId, { reason: "x", at: nowS(t) });
    t.clock.advance(1000);
    await postConsent(t, o, m, 3, { upstreams: UPSTREAMS });
    expect((await t.store.latestPublication(m.workerId))?.stop).toBe(true);
    await t.store.setQuarantine(m.workerId, null);
    const stopped = await get(t, m);
    expect([stopped.status, stopped.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
  });

  it("answers only the machine itself, and not while quarantined", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const other = await t.machine(o);
    await postConsent(t, o, m, 1, { upstreams: UPSTREAMS });
    expect((await get(t, other, m.workerId)).status).toBe(403);
    const byOwner = await t.call("GET", `/v1/workers/${m.workerId}/assignment`, {
      apiKey: o.apiKey,
    });
    expect(byOwner.status).toBe(403);
    expect((await t.call("GET", `/v1/workers/${m.workerId}/assignment`)).status).toBe(401);
    await t.store.setQuarantine(m.workerId, { reason: "clone", at: nowS(t) });
    const q = await get(t, m);
    expect([q.status, q.json.error.code]).toEqual([403, "AGENTD_E_CP_QUARANTINED"]);
  });
});
