import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  adminGroup,
  resumeEmergencyStops,
  STOP_CLAIM_LEASE_S,
} from "../../../control-plane/api/admin.ts";
import { attestGroup } from "../../../control-plane/api/attest.ts";
import { commandsGroup } from "../../../control-plane/api/commands.ts";
import type { ApiContext } from "../../../control-plane/api/context.ts";
import { policiesGroup } from "../../../control-plane/api/policies.ts";
import { publishForWorker } from "../../../control-plane/api/publish.ts";
import { createApiClient } from "../../../control-plane/protocol/client-api.ts";
import { signAttestation } from "../../../control-plane/protocol/documents/attestation.ts";
import { createProof } from "../../../control-plane/protocol/proof.ts";
import type { HostFacts } from "../../../control-plane/protocol/schemas/attestation.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import { unixSeconds } from "../../../lib/clock.ts";
import { encodeBase64url } from "../../../lib/crypto/base64url.ts";
import { documentIdentity } from "../../../lib/crypto/jws.ts";
import { signConsent } from "../../../policy-guard/sign.ts";
import { type TestCp, type TestMachine, type TestOwner, useTestCp } from "./harness.ts";

// Resumes are driven by the tests (resumeEmergencyStops), except where said otherwise.
const groups = (ctx: ApiContext) => [
  adminGroup(ctx, { resumeInBackground: false }),
  commandsGroup(ctx),
];
const withPolicies = (ctx: ApiContext) => [...groups(ctx), policiesGroup(ctx)];
const withAttest = (ctx: ApiContext) => [...groups(ctx), attestGroup(ctx)];

/** A consent through `POST /v1/policies`, as an owner posts it (the policies group). */
async function postConsent(t: TestCp, o: TestOwner, m: TestMachine, seq: number) {
  const now = unixSeconds(t.clock);
  const jws = signConsent({
    ownerKey: o.privateKey,
    worker: m.workerId,
    rules: { commands: ["mining.pause"] },
    seq,
    policyId: "p1",
    iat: now,
    exp: now + 30 * 86_400,
  });
  const r = await t.call("POST", "/v1/policies", { apiKey: o.apiKey, body: { consent: jws } });
  expect(r.status, r.text).toBe(200);
  return r.json;
}

/** An emergency stop as a crash right after `markEmergencyStopExecuted` leaves it. */
async function executedStop(
  t: TestCp,
  id: string,
  at: number,
  claim?: { by: string; until: number },
) {
  await t.store.createEmergencyStop({ id, scope: { all: true }, requested_by: "a", at });
  await t.store.approveEmergencyStop(id, "a", at);
  await t.store.approveEmergencyStop(id, "b", at);
  await t.store.markEmergencyStopExecuted(id, at, {
    ...(claim === undefined ? {} : { claim }),
    audit: {
      actor: "apikey:b",
      type: "emergency_stop.executed",
      object: `emergency_stop:${id}`,
      data: {},
    },
  });
}

const FACTS: HostFacts = {
  machine_id_sha256: "a".repeat(64),
  binary_sha256: "b".repeat(64),
  os: "Debian GNU/Linux 13",
  boot_time: 1_790_000_000,
  agent_version: "0.1.0",
};

/** Challenge, attestation and `POST /v1/auth/agent/attest` with the proof alone. */
async function attest(t: TestCp, m: TestMachine, facts: Partial<HostFacts> = {}) {
  const c = await t.call("GET", `/v1/auth/agent/challenge?worker=${m.workerId}`);
  expect(c.status).toBe(200);
  const attestation = signAttestation({
    privateKey: m.privateKey,
    challenge: c.json.challenge,
    facts: { ...FACTS, ...facts },
    clock: t.clock,
  });
  const proof = createProof({
    privateKey: m.privateKey,
    method: "POST",
    url: `${t.url}/v1/auth/agent/attest`,
    clock: t.clock,
  });
  const r = await t.call("POST", "/v1/auth/agent/attest", {
    headers: { "agentd-proof": proof },
    body: { attestation },
  });
  expect(r.status, r.text).toBe(200);
  const json = validate("attest-response", r.json);
  return { ...json, machine: { ...m, accessToken: json.access_token } };
}

async function consent(t: TestCp, o: TestOwner, m: TestMachine) {
  const now = unixSeconds(t.clock);
  const jws = signConsent({
    ownerKey: o.privateKey,
    worker: m.workerId,
    rules: { commands: ["mining.pause"] },
    seq: 1,
    policyId: "p1",
    iat: now,
    exp: now + 30 * 86_400,
  });
  await t.store.acceptConsent({
    identity: documentIdentity(jws),
    worker_id: m.workerId,
    owner_id: o.ownerId,
    seq: 1,
    jws,
    exp: now + 30 * 86_400,
    accepted_at: now,
  });
}

/**
 * An operator key with a 16-byte id as the protocol has them (the harness's `apiKey` makes
 * 9-byte ids, which the emergency-stop response schema would refuse in `approvals`).
 */
async function operatorKey(t: TestCp): Promise<string> {
  const key = `agentd_operator_${encodeBase64url(randomBytes(32))}`;
  await t.store.createApiKey({
    id: encodeBase64url(randomBytes(16)),
    role: "operator",
    owner_id: null,
    key_sha256: createHash("sha256").update(key, "utf8").digest("hex"),
    created_at: unixSeconds(t.clock),
    created_by: null,
  });
  return key;
}

describe.each(["sqlite", "postgres"] as const)("admin API (%s)", (backend) => {
  const start = useTestCp();

  it("quarantines a worker: its sessions end, a stop is published, a second time is a conflict", async () => {
    const t = await start({ groups, backend });
    const o = await t.owner();
    const m = await t.machine(o);
    await consent(t, o, m);
    const operator = await t.apiKey("operator");
    const path = `/v1/admin/workers/${m.workerId}/quarantine`;
    // roles first: owner and auditor are refused, nothing changes
    for (const apiKey of [o.apiKey, await t.apiKey("auditor")]) {
      expect((await t.call("POST", path, { apiKey, body: { reason: "x" } })).status).toBe(403);
    }
    expect((await t.call("POST", path, { apiKey: operator, body: {} })).status).toBe(400);
    expect((await t.store.getWorker(m.workerId))?.quarantine).toBeNull();
    // the machine can still poll before
    const before = await t.call("GET", `/v1/workers/${m.workerId}/commands`, { machine: m });
    expect(before.status).toBe(200);

    const r = await t.call("POST", path, { apiKey: operator, body: { reason: "clone suspected" } });
    expect(r.status).toBe(200);
    expect(validate("quarantine-response", r.json)).toEqual({
      worker: m.workerId,
      quarantined: true,
      at: unixSeconds(t.clock),
    });
    expect((await t.store.getWorker(m.workerId))?.quarantine).toEqual({
      reason: "clone suspected",
      at: unixSeconds(t.clock),
    });
    // the access token is gone: the stolen-or-cloned session ends now
    const after = await t.call("GET", `/v1/workers/${m.workerId}/commands`, { machine: m });
    expect(after.status).toBe(401);
    expect((await t.store.latestPublication(m.workerId))?.stop).toBe(true);
    const types = (await t.store.listAudit({ object: `worker:${m.workerId}` })).map((e) => e.type);
    expect(types).toEqual(
      expect.arrayContaining(["worker.quarantined", "worker.tokens_deleted", "publication.issued"]),
    );

    const again = await t.call("POST", path, { apiKey: t.adminKey, body: { reason: "again" } });
    expect(again.status).toBe(409);
    const unknown = await t.call("POST", `/v1/admin/workers/${"A".repeat(43)}/quarantine`, {
      apiKey: operator,
      body: { reason: "x" },
    });
    expect(unknown.status).toBe(404);
  });

  it("finishes an emergency stop that was cut off after it was marked executed", async () => {
    const t = await start({ groups, backend });
    const o = await t.owner();
    const east = [await t.machine(o, { cohort: "east" }), await t.machine(o, { cohort: "east" })];
    const west = await t.machine(o, { cohort: "west" });
    for (const m of [...east, west]) await consent(t, o, m);
    const now = unixSeconds(t.clock);
    // What a crash right after `markEmergencyStopExecuted` leaves: executed, no stops, no
    // completion.
    await t.store.createEmergencyStop({
      id: "es1",
      scope: { cohort: "east" },
      requested_by: "a",
      at: now,
    });
    await t.store.approveEmergencyStop("es1", "a", now);
    await t.store.approveEmergencyStop("es1", "b", now);
    await t.store.markEmergencyStopExecuted("es1", now, {
      audit: {
        actor: "apikey:b",
        type: "emergency_stop.executed",
        object: "emergency_stop:es1",
        data: {},
      },
    });
    const stopped = async () =>
      Promise.all(
        [...east, west].map(
          async (m) => (await t.store.latestPublication(m.workerId))?.stop ?? null,
        ),
      );
    expect(await stopped()).toEqual([null, null, null]);
    expect(await resumeEmergencyStops(t.ctx)).toEqual(["es1"]);
    expect(await stopped()).toEqual([true, true, null]);
    const completed = await t.store.listAudit({ type: "emergency_stop.completed" });
    expect(completed.map((e) => [e.object, e.data])).toEqual([
      [
        "emergency_stop:es1",
        { workers_stopped: 2, workers_not_stopped: 0, workers_skipped: 0, resumed: true },
      ],
    ]);
    // Completed now: a later start resumes nothing.
    expect(await resumeEmergencyStops(t.ctx)).toEqual([]);
  });

  it("a resumed emergency stop leaves alone the workers whose owner consented after it", async () => {
    const t = await start({ groups: withPolicies, backend });
    const o = await t.owner();
    const [a, b, c] = [await t.machine(o), await t.machine(o), await t.machine(o)];
    for (const m of [a, b, c]) await consent(t, o, m);
    const executedAt = unixSeconds(t.clock);
    await executedStop(t, "es1", executedAt);
    // Cut off after the stop of a was published, before b's and c's.
    await publishForWorker(t.ctx, a.workerId, {
      stop: true,
      actor: "apikey:b",
      reason: "emergency stop es1",
    });
    // c's owner posts a consent in the very second of the stop: covered (the tie goes to it).
    await postConsent(t, o, c, 2);
    // Later, a's owner resumes: a consent posted after the stop lifts it.
    t.clock.advance(10_000);
    const resumedByOwner = await postConsent(t, o, a, 2);
    expect((await t.store.latestPublication(a.workerId))?.stop).toBe(false);

    expect(await resumeEmergencyStops(t.ctx)).toEqual(["es1"]);
    // a keeps what its owner decided; b and c are stopped.
    expect(await t.store.latestPublication(a.workerId)).toMatchObject({
      version: resumedByOwner.version,
      stop: false,
    });
    expect((await t.store.latestPublication(b.workerId))?.stop).toBe(true);
    expect((await t.store.latestPublication(c.workerId))?.stop).toBe(true);
    const completed = await t.store.listAudit({ type: "emergency_stop.completed" });
    expect(completed.map((e) => e.data)).toEqual([
      { workers_stopped: 2, workers_not_stopped: 0, workers_skipped: 1, resumed: true },
    ]);
    expect((await t.store.getEmergencyStop("es1"))?.completed_at).toBe(unixSeconds(t.clock));
  });

  it("two instances resuming one cut-off stop at once: one claims it, stops each worker once", async () => {
    const t1 = await start({ groups, backend });
    const t2 = await start({
      groups,
      backend,
      databaseUrl: t1.databaseUrl,
      keysDir: t1.keysDir,
    });
    const o = await t1.owner();
    const workers = [await t1.machine(o), await t1.machine(o), await t1.machine(o)];
    for (const m of workers) await consent(t1, o, m);
    await executedStop(t1, "es1", unixSeconds(t1.clock));
    const [r1, r2] = await Promise.all([
      resumeEmergencyStops(t1.ctx),
      resumeEmergencyStops(t2.ctx),
    ]);
    expect([...r1, ...r2]).toEqual(["es1"]);
    const completed = await t1.store.listAudit({ type: "emergency_stop.completed" });
    expect(completed).toHaveLength(1);
    expect(completed[0]?.data).toMatchObject({ workers_stopped: 3, resumed: true });
    for (const m of workers) {
      const issued = await t1.store.listAudit({
        type: "publication.issued",
        object: `worker:${m.workerId}`,
      });
      expect(issued.map((e) => e.data.stop)).toEqual([true]);
    }
  });

  it("a running instance finds a cut-off stop by itself and finishes it", async () => {
    const t = await start({
      groups: (ctx) => [adminGroup(ctx, { resumeIntervalMs: 20 }), commandsGroup(ctx)],
      backend,
    });
    const o = await t.owner();
    const m = await t.machine(o);
    await consent(t, o, m);
    await executedStop(t, "es1", unixSeconds(t.clock));
    const deadline = Date.now() + 10_000;
    while ((await t.store.getEmergencyStop("es1"))?.completed_at === null) {
      expect(Date.now(), "the background resume never finished the stop").toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect((await t.store.latestPublication(m.workerId))?.stop).toBe(true);
    const completed = await t.store.listAudit({ type: "emergency_stop.completed" });
    expect(completed.map((e) => [e.actor, e.data.resumed])).toEqual([["system", true]]);
  });

  it("leaves a stop to the instance that holds its claim until the claim runs out", async () => {
    const t = await start({ groups, backend });
    const o = await t.owner();
    const m = await t.machine(o);
    await consent(t, o, m);
    const now = unixSeconds(t.clock);
    // Executed by an instance that is still (or was last seen) publishing its stops.
    await executedStop(t, "es1", now, { by: "elsewhere", until: now + STOP_CLAIM_LEASE_S });
    expect(await resumeEmergencyStops(t.ctx)).toEqual([]);
    expect(await t.store.latestPublication(m.workerId)).toBeNull();
    t.clock.advance((STOP_CLAIM_LEASE_S - 1) * 1000);
    expect(await resumeEmergencyStops(t.ctx)).toEqual([]);
    // Its lease ran out: it died. Taken over and finished.
    t.clock.advance(1000);
    expect(await resumeEmergencyStops(t.ctx)).toEqual(["es1"]);
    expect((await t.store.latestPublication(m.workerId))?.stop).toBe(true);
    expect(await resumeEmergencyStops(t.ctx)).toEqual([]);
  });

  it("an operator lifts a quarantine: audited, nothing published, the machine attests and calls again", async () => {
    const t = await start({ groups: withAttest, backend });
    const o = await t.owner();
    const m = await t.machine(o);
    await consent(t, o, m);
    const operator = await operatorKey(t);
    const path = `/v1/admin/workers/${m.workerId}/quarantine`;
    expect((await attest(t, m)).verdict).toBe("ok");
    // The same key on another machine: a clone, quarantined by the control plane.
    const clone = await attest(t, m, { machine_id_sha256: "c".repeat(64) });
    expect([clone.verdict, clone.quarantined]).toEqual(["clone", true]);
    const quarantinedAt = unixSeconds(t.clock);
    const stopped = await t.store.latestPublication(m.workerId);
    expect(stopped?.stop).toBe(true);
    const fresh = (await attest(t, m)).machine;
    const poll = (mm: TestMachine) =>
      t.call("GET", `/v1/workers/${mm.workerId}/commands`, { machine: mm });
    expect((await poll(fresh)).json.error.code).toBe("AGENTD_E_CP_QUARANTINED");

    // Who may lift: operators only (an admin may quarantine, not lift); no body.
    for (const apiKey of [t.adminKey, o.apiKey, await t.apiKey("auditor")]) {
      expect((await t.call("DELETE", path, { apiKey })).status).toBe(403);
    }
    expect((await t.call("DELETE", path)).status).toBe(401);
    expect((await t.call("DELETE", path, { apiKey: operator, body: {} })).status).toBe(413);
    expect((await t.store.getWorker(m.workerId))?.quarantine).not.toBeNull();

    t.clock.advance(5000);
    const client = createApiClient({
      url: t.url,
      caPem: t.caPem,
      clock: t.clock,
      apiKey: operator,
    });
    try {
      const lifted = await client.liftQuarantine(m.workerId);
      expect(validate("quarantine-lift-response", lifted)).toEqual({
        worker: m.workerId,
        quarantined: false,
        at: unixSeconds(t.clock),
        lifted: { reason: "attestation.clone", at: quarantinedAt },
      });
    } finally {
      client.close();
    }
    expect((await t.store.getWorker(m.workerId))?.quarantine).toBeNull();
    const audit = await t.store.listAudit({ type: "worker.quarantine_lifted" });
    const opId = (
      await t.store.findApiKeyBySha256(createHash("sha256").update(operator, "utf8").digest("hex"))
    )?.id;
    expect(audit.map((e) => [e.actor, e.object, e.data])).toEqual([
      [
        `apikey:${opId}`,
        `worker:${m.workerId}`,
        { reason: "attestation.clone", quarantined_at: quarantinedAt },
      ],
    ]);
    // Nothing published: the stop stays in force until the owner posts a new consent.
    expect(await t.store.latestPublication(m.workerId)).toEqual(stopped);
    // The machine attests again, no longer quarantined, and its calls are answered.
    const again = await attest(t, m);
    expect([again.verdict, again.quarantined]).toEqual(["ok", false]);
    expect((await poll(again.machine)).status).toBe(200);

    // Not quarantined: 409; unknown: 404; two lifts racing: one lifts.
    const twice = await t.call("DELETE", path, { apiKey: operator });
    expect([twice.status, twice.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
    const unknown = await t.call("DELETE", `/v1/admin/workers/${"A".repeat(43)}/quarantine`, {
      apiKey: operator,
    });
    expect(unknown.status).toBe(404);
    await t.call("POST", path, { apiKey: operator, body: { reason: "again" } });
    const racing = await Promise.all([
      t.call("DELETE", path, { apiKey: operator }),
      t.call("DELETE", path, { apiKey: await operatorKey(t) }),
    ]);
    expect(racing.map((r) => r.status).sort()).toEqual([200, 409]);
    expect((await t.store.listAudit({ type: "worker.quarantine_lifted" })).length).toBe(2);
    expect(await t.store.verifyAudit()).toMatchObject({ ok: true });
  });

  it("runs an emergency stop only with two distinct operator approvals", async () => {
    const t = await start({ groups, backend });
    const o = await t.owner();
    const workers = [
      await t.machine(o, { cohort: "east" }),
      await t.machine(o, { cohort: "east" }),
      await t.machine(o, { cohort: "west" }),
    ];
    for (const m of workers) await consent(t, o, m);
    const noConsent = await t.machine(o, { cohort: "west" });
    const [opA, opB] = [await operatorKey(t), await operatorKey(t)];
    const stops = async () =>
      Promise.all(
        [...workers, noConsent].map(
          async (m) => (await t.store.latestPublication(m.workerId))?.stop ?? null,
        ),
      );

    // an operator's request counts as its first approval
    const created = await t.call("POST", "/v1/admin/emergency-stop", {
      apiKey: opA,
      body: { scope: "all", reason: "pool compromised" },
    });
    expect(created.status).toBe(200);
    const stop = validate("emergency-stop-response", created.json);
    expect(stop).toMatchObject({
      status: "pending",
      scope: "all",
      cohort: null,
      required_approvals: 2,
      executed_at: null,
      workers_stopped: null,
      expires_at: unixSeconds(t.clock) + 3600,
    });
    expect(stop.approvals.length).toBe(1);
    expect(await stops()).toEqual([null, null, null, null]);
    const approve = (apiKey: string, id = stop.stop_id) =>
      t.call("POST", `/v1/admin/emergency-stop/${id}/approve`, { apiKey, body: {} });

    // the same operator twice: 409, nothing published
    const same = await approve(opA);
    expect(same.status).toBe(409);
    expect(same.json.error.code).toBe("AGENTD_E_CP_CONFLICT");
    // an admin cannot approve (it could mint operator keys)
    expect((await approve(t.adminKey)).status).toBe(403);
    expect(await stops()).toEqual([null, null, null, null]);

    // a second operator: executed at once, a stop for every worker in scope
    const second = await approve(opB);
    expect(second.status).toBe(200);
    const done = validate("emergency-stop-response", second.json);
    expect(done).toMatchObject({
      stop_id: stop.stop_id,
      status: "executed",
      executed_at: unixSeconds(t.clock),
      workers_stopped: 3,
    });
    expect(done.approvals.length).toBe(2);
    expect(new Set(done.approvals).size).toBe(2);
    // the worker without a consent has nothing to stop (it cannot mine)
    expect(await stops()).toEqual([true, true, true, null]);
    // executed once: any further approval is a conflict
    const late = await approve(await operatorKey(t));
    expect(late.status).toBe(409);
    const audit = (await t.store.listAudit({ object: `emergency_stop:${stop.stop_id}` })).map(
      (e) => e.type,
    );
    expect(audit).toEqual([
      "emergency_stop.created",
      "emergency_stop.approved",
      "emergency_stop.approval_refused",
      "emergency_stop.approved",
      "emergency_stop.executed",
      "emergency_stop.completed",
      "emergency_stop.approval_refused",
    ]);
    expect(await t.store.verifyAudit()).toMatchObject({ ok: true });
  });

  it("executes once when two second approvals race", async () => {
    const t = await start({ groups, backend });
    const o = await t.owner();
    const m = await t.machine(o);
    await consent(t, o, m);
    const [opA, opB, opC] = [await operatorKey(t), await operatorKey(t), await operatorKey(t)];
    const created = await t.call("POST", "/v1/admin/emergency-stop", {
      apiKey: opA,
      body: { scope: "all", reason: "race" },
    });
    const id = validate("emergency-stop-response", created.json).stop_id;
    const replies = await Promise.all(
      [opB, opC].map((apiKey) =>
        t.call("POST", `/v1/admin/emergency-stop/${id}/approve`, { apiKey, body: {} }),
      ),
    );
    // one executes and reports the count; the other is refused or sees it executed
    const counts = replies.filter((r) => r.status === 200).map((r) => r.json.workers_stopped);
    expect(counts.filter((c) => c === 1)).toEqual([1]);
    for (const r of replies) expect([200, 409]).toContain(r.status);
    const object = `emergency_stop:${id}`;
    expect((await t.store.listAudit({ object, type: "emergency_stop.executed" })).length).toBe(1);
    expect((await t.store.listAudit({ object, type: "emergency_stop.completed" })).length).toBe(1);
    expect((await t.store.getEmergencyStop(id))?.executed_at).not.toBeNull();
  });

  it("an admin's request needs two operators; a cohort stop leaves other cohorts alone; requests expire", async () => {
    const t = await start({ groups, backend });
    const o = await t.owner();
    const east = await t.machine(o, { cohort: "east" });
    const west = await t.machine(o, { cohort: "west" });
    for (const m of [east, west]) await consent(t, o, m);
    const [opA, opB] = [await operatorKey(t), await operatorKey(t)];
    const created = await t.call("POST", "/v1/admin/emergency-stop", {
      apiKey: t.adminKey,
      body: { scope: "cohort", cohort: "east", reason: "firmware bug" },
    });
    const stop = validate("emergency-stop-response", created.json);
    expect(stop).toMatchObject({
      status: "pending",
      scope: "cohort",
      cohort: "east",
      approvals: [],
    });
    const approve = (apiKey: string, id = stop.stop_id) =>
      t.call("POST", `/v1/admin/emergency-stop/${id}/approve`, { apiKey, body: {} });
    const first = validate("emergency-stop-response", (await approve(opA)).json);
    expect(first.status).toBe("pending");
    expect((await t.store.latestPublication(east.workerId))?.stop).toBeUndefined();
    const second = validate("emergency-stop-response", (await approve(opB)).json);
    expect(second).toMatchObject({ status: "executed", workers_stopped: 1 });
    expect((await t.store.latestPublication(east.workerId))?.stop).toBe(true);
    expect(await t.store.latestPublication(west.workerId)).toBeNull();

    // bad requests and unknown ids
    const bad = await t.call("POST", "/v1/admin/emergency-stop", {
      apiKey: opA,
      body: { scope: "all", cohort: "east", reason: "x" },
    });
    expect(bad.status).toBe(400);
    expect((await approve(opA, "00000000-0000-4000-8000-000000000000")).status).toBe(404);
    const owner = await t.call("POST", "/v1/admin/emergency-stop", {
      apiKey: o.apiKey,
      body: { scope: "all", reason: "x" },
    });
    expect(owner.status).toBe(403);

    // a request not executed within an hour is dead
    const old = validate(
      "emergency-stop-response",
      (
        await t.call("POST", "/v1/admin/emergency-stop", {
          apiKey: opA,
          body: { scope: "all", reason: "x" },
        })
      ).json,
    );
    t.clock.advance(3600 * 1000);
    const expired = await approve(opB, old.stop_id);
    expect(expired.status).toBe(409);
    expect(await t.store.latestPublication(west.workerId)).toBeNull();
  });
});
