import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { adminGroup, resumeEmergencyStops } from "../../../control-plane/api/admin.ts";
import { commandsGroup } from "../../../control-plane/api/commands.ts";
import type { ApiContext } from "../../../control-plane/api/context.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import { unixSeconds } from "../../../lib/clock.ts";
import { encodeBase64url } from "../../../lib/crypto/base64url.ts";
import { documentIdentity } from "../../../lib/crypto/jws.ts";
import { signConsent } from "../../../policy-guard/sign.ts";
import { type TestCp, type TestMachine, type TestOwner, useTestCp } from "./harness.ts";

const groups = (ctx: ApiContext) => [adminGroup(ctx), commandsGroup(ctx)];

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
      ["emergency_stop:es1", { workers_stopped: 2, workers_not_stopped: 0, resumed: true }],
    ]);
    // Completed now: a later start resumes nothing.
    expect(await resumeEmergencyStops(t.ctx)).toEqual([]);
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
