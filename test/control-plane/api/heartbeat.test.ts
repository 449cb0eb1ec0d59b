import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { heartbeatGroup } from "../../../control-plane/api/heartbeat.ts";
import { publishForWorker } from "../../../control-plane/api/publish.ts";
import {
  type HeartbeatBody,
  signHeartbeat,
} from "../../../control-plane/protocol/documents/heartbeat.ts";
import { createProof } from "../../../control-plane/protocol/proof.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import { fixedClock } from "../../../lib/clock.ts";
import { encodeBase64url } from "../../../lib/crypto/base64url.ts";
import { decodeJwsUnverified, documentIdentity } from "../../../lib/crypto/jws.ts";
import { signConsent } from "../../../policy-guard/sign.ts";
import { type TestCp, type TestMachine, useTestCp } from "./harness.ts";

const HEX = "ab".repeat(32);

function body(counter: number, over: Partial<HeartbeatBody> = {}): HeartbeatBody {
  return {
    counter,
    state: "MINING",
    policy: { version: null, consent_sha256: null },
    decision: { mining: true, reasons: [] },
    telemetry: {
      asics: 2,
      hashrate_hs: 2e14,
      shares_accepted: 10 * counter,
      shares_rejected: 0,
      uptime_s: 30 * counter,
    },
    services: { bitcoind: "running" },
    agent: { version: "0.1.0", binary_sha256: HEX },
    audit_head: null,
    ...over,
  };
}

/** A heartbeat signed by `m` with its clock `offsetS` seconds off the control plane's. */
function heartbeat(t: TestCp, m: TestMachine, b: HeartbeatBody, offsetS = 0): string {
  return signHeartbeat({
    privateKey: m.privateKey,
    body: b,
    clock: fixedClock(t.clock.now() + offsetS * 1000),
  });
}

const send = (t: TestCp, m: TestMachine, hb: string, worker = m.workerId) =>
  t.call("POST", `/v1/workers/${worker}/heartbeat`, { machine: m, body: { heartbeat: hb } });

const metric = (t: TestCp, outcome: string): number => {
  const line = t.ctx.metrics
    .render()
    .split("\n")
    .find((l) => l.startsWith(`agentd_cp_heartbeats_total{outcome="${outcome}"}`));
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
};

describe.each(["sqlite", "postgres"] as const)("heartbeats (%s)", (backend) => {
  const start = useTestCp();
  const cp = () => start({ groups: (ctx) => [heartbeatGroup(ctx)], backend });

  it("stores a heartbeat and answers with pending commands, the clock and the policy version", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const now = Math.floor(t.clock.now() / 1000);
    const cmdIds = [randomUUID(), randomUUID()];
    for (const [i, cmd_id] of cmdIds.entries()) {
      await t.store.createCommand({
        cmd_id,
        worker_id: m.workerId,
        action: "mining.pause",
        args: {},
        jws: `cmd-${i}`,
        iat: now,
        exp: now + 600,
        seq: i + 1,
        consent_identity: null,
      });
    }
    const r = await send(t, m, heartbeat(t, m, body(1)));
    expect(r.status).toBe(200);
    expect(validate("heartbeat-response", r.json)).toEqual({
      accepted: true,
      counter: 1,
      flags: [],
      pending_commands: cmdIds,
      server_time: now,
      policy_version: null,
    });
    const worker = await t.store.getWorker(m.workerId);
    expect([worker?.last_counter, worker?.last_seen]).toEqual([1, now]);
    const [stored] = await t.store.listHeartbeats(m.workerId);
    expect(stored).toMatchObject({ counter: 1, received_at: now, flags: [] });
    expect(metric(t, "accepted")).toBe(1);
    // once something is published, the answer names its version
    const c = signConsent({
      ownerKey: o.privateKey,
      worker: m.workerId,
      rules: {},
      seq: 1,
      policyId: "p",
      iat: now,
      exp: now + 86_400,
    });
    await t.store.acceptConsent({
      identity: documentIdentity(c),
      worker_id: m.workerId,
      owner_id: o.ownerId,
      seq: 1,
      jws: c,
      exp: now + 86_400,
      accepted_at: now,
    });
    const p = await publishForWorker(t.ctx, m.workerId, {
      stop: false,
      actor: "system",
      reason: "test",
    });
    const r2 = await send(t, m, heartbeat(t, m, body(2)));
    expect(r2.json.policy_version).toBe(p.version);
  });

  it("refuses replays and equal or lower counters (409, audited), storing nothing", async () => {
    const t = await cp();
    const m = await t.machine(await t.owner());
    const hb5 = heartbeat(t, m, body(5));
    expect((await send(t, m, hb5)).status).toBe(200);
    const replay = await send(t, m, hb5);
    expect([replay.status, replay.json.error.code]).toEqual([409, "AGENTD_E_CP_REPLAY"]);
    t.clock.advance(1000);
    const equal = await send(t, m, heartbeat(t, m, body(5, { state: "PAUSED" })));
    expect([equal.status, equal.json.error.code]).toEqual([409, "AGENTD_E_CP_REPLAY"]);
    const lower = await send(t, m, heartbeat(t, m, body(4)));
    expect([lower.status, lower.json.error.code]).toEqual([409, "AGENTD_E_CP_REPLAY"]);
    expect((await t.store.listHeartbeats(m.workerId)).map((h) => h.counter)).toEqual([5]);
    const audit = await t.store.listAudit({ type: "heartbeat.replay" });
    expect(audit.map((e) => [e.data.counter, e.data.last_counter])).toEqual([
      [5, 5],
      [5, 5],
      [4, 5],
    ]);
    expect(metric(t, "replay")).toBe(3);
    expect((await send(t, m, heartbeat(t, m, body(6)))).status).toBe(200);
  });

  it("lets exactly one of many concurrent copies of a counter through", async () => {
    const t = await cp();
    const m = await t.machine(await t.owner());
    const hb = heartbeat(t, m, body(1));
    const replies = await Promise.all(Array.from({ length: 8 }, () => send(t, m, hb)));
    expect(replies.map((r) => r.status).sort()).toEqual([200, 409, 409, 409, 409, 409, 409, 409]);
    expect(await t.store.listHeartbeats(m.workerId)).toHaveLength(1);
  });

  it("refuses heartbeats from a skewed clock, forged, or of another machine", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const other = await t.machine(o);
    const ahead = await send(t, m, heartbeat(t, m, body(1), 61));
    expect([ahead.status, ahead.json.error.code]).toEqual([400, "AGENTD_E_JWS_NOT_YET_VALID"]);
    const behind = await send(t, m, heartbeat(t, m, body(1), -61));
    expect([behind.status, behind.json.error.code]).toEqual([400, "AGENTD_E_JWS_EXPIRED"]);
    const good = heartbeat(t, m, body(1));
    const [h, , s] = good.split(".");
    const payload = { ...(decodeJwsUnverified(good).payload as object), counter: 99 };
    const forged = `${h}.${encodeBase64url(Buffer.from(JSON.stringify(payload)))}.${s}`;
    const f = await send(t, m, forged);
    expect([f.status, f.json.error.code]).toEqual([400, "AGENTD_E_JWS_SIGNATURE"]);
    // another machine's document on its own path: not signed by its key
    const foreign = await send(t, other, heartbeat(t, m, body(1)), other.workerId);
    expect([foreign.status, foreign.json.error.code]).toEqual([400, "AGENTD_E_JWS_UNKNOWN_KEY"]);
    // another machine's path
    const path = await send(t, other, heartbeat(t, other, body(1)), m.workerId);
    expect([path.status, path.json.error.code]).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
    // owners and admins do not send heartbeats
    const byOwner = await t.call("POST", `/v1/workers/${m.workerId}/heartbeat`, {
      apiKey: o.apiKey,
      body: { heartbeat: good },
    });
    expect(byOwner.status).toBe(403);
    expect(await t.store.listHeartbeats(m.workerId)).toEqual([]);
    expect(await t.store.listHeartbeats(other.workerId)).toEqual([]);
    const refused = await t.store.listAudit({ type: "heartbeat.refused" });
    expect(refused.map((e) => e.data.code)).toEqual([
      "AGENTD_E_JWS_NOT_YET_VALID",
      "AGENTD_E_JWS_EXPIRED",
      "AGENTD_E_JWS_SIGNATURE",
      "AGENTD_E_JWS_UNKNOWN_KEY",
    ]);
    expect(metric(t, "refused")).toBe(4);
    // the good one still goes through afterwards
    expect((await send(t, m, good)).status).toBe(200);
  });

  it("takes the heartbeat as its own proof: token alone accepted, any flaw then 401", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const other = await t.machine(o);
    const bare = (hb: string, as = m, worker = as.workerId) =>
      t.call("POST", `/v1/workers/${worker}/heartbeat`, {
        machine: as,
        proof: false,
        body: { heartbeat: hb },
      });
    const ok = await bare(heartbeat(t, m, body(1)));
    expect([ok.status, ok.json.counter]).toEqual([200, 1]);
    // flaws that are 400 with a proof are 401 without one: the caller is not authenticated
    const good = heartbeat(t, m, body(2));
    const [h, , s] = good.split(".");
    const payload = { ...(decodeJwsUnverified(good).payload as object), counter: 99 };
    const forged = `${h}.${encodeBase64url(Buffer.from(JSON.stringify(payload)))}.${s}`;
    const cases = [
      [forged, m, "AGENTD_E_JWS_SIGNATURE"],
      [heartbeat(t, m, body(2), 61), m, "AGENTD_E_JWS_NOT_YET_VALID"],
      // a captured heartbeat presented with another machine's token
      [heartbeat(t, m, body(2)), other, "AGENTD_E_JWS_UNKNOWN_KEY"],
    ] as const;
    for (const [hb, as, reason] of cases) {
      const r = await bare(hb, as);
      expect([r.status, r.json.error.code]).toEqual([401, "AGENTD_E_CP_PROOF_INVALID"]);
      expect(r.json.error.message).toContain(reason);
    }
    const refused = await t.store.listAudit({ type: "heartbeat.refused" });
    expect(refused.map((e) => [e.data.code, e.data.reason])).toEqual(
      cases.map(([, , reason]) => ["AGENTD_E_CP_PROOF_INVALID", reason]),
    );
    // a replay of a verified heartbeat is still a replay; a stolen token with no heartbeat
    // signed by the machine gets nothing stored
    expect((await bare(heartbeat(t, m, body(1)))).status).toBe(409);
    expect((await t.store.listHeartbeats(m.workerId)).map((x) => x.counter)).toEqual([1]);
    expect(await t.store.listHeartbeats(other.workerId)).toEqual([]);
    // an unknown token is refused before the body is looked at
    const unknown = await t.call("POST", `/v1/workers/${m.workerId}/heartbeat`, {
      headers: { authorization: `AgentD agentd_at_${"A".repeat(43)}` },
      raw: "not json",
    });
    expect([unknown.status, unknown.json.error.code]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    // a proof that is sent is checked: one made for another URL is refused
    const wrongProof = await t.call("POST", `/v1/workers/${m.workerId}/heartbeat`, {
      headers: {
        authorization: `AgentD ${m.accessToken}`,
        "agentd-proof": createProof({
          privateKey: m.privateKey,
          method: "POST",
          url: `${t.url}/v1/workers/${m.workerId}/policy`,
          accessToken: m.accessToken,
          clock: t.clock,
        }),
      },
      body: { heartbeat: heartbeat(t, m, body(3)) },
    });
    expect([wrongProof.status, wrongProof.json.error.code]).toEqual([
      401,
      "AGENTD_E_CP_PROOF_INVALID",
    ]);
    expect((await t.store.listHeartbeats(m.workerId)).map((x) => x.counter)).toEqual([1]);
  });

  it("a stolen token sending junk heartbeats spends its own allowance, not the machine's", async () => {
    const t = await start({
      groups: (ctx) => [heartbeatGroup(ctx)],
      backend,
      rateLimits: { perCaller: { ratePerSecond: 0.001, burst: 3 } },
    });
    const o = await t.owner();
    const m = await t.machine(o);
    const thief = await t.machine(o); // a key that is not m's
    // m's stolen token, with heartbeats the thief can sign: refused, each of them
    const junk = () =>
      t.call("POST", `/v1/workers/${m.workerId}/heartbeat`, {
        machine: m,
        proof: false,
        body: { heartbeat: heartbeat(t, thief, body(1)) },
      });
    const first = await Promise.all([junk(), junk(), junk()]);
    expect(first.map((r) => r.status)).toEqual([401, 401, 401]);
    expect((await junk()).status).toBe(429);
    // the machine itself, with its proof, is untouched by that
    const real = await send(t, m, heartbeat(t, m, body(1)));
    expect(real.status).toBe(200);
  });

  it("flags counter gaps, clock skew and inconsistent telemetry; stores and audits them", async () => {
    const t = await cp();
    const m = await t.machine(await t.owner());
    const first = await send(t, m, heartbeat(t, m, body(1)));
    expect(first.json.flags).toEqual([]);
    t.clock.advance(30_000);
    const gap = await send(t, m, heartbeat(t, m, body(3)));
    expect(gap.json.flags).toEqual(["counter_gap"]);
    t.clock.advance(30_000);
    const skew = await send(t, m, heartbeat(t, m, body(4), 20));
    expect(skew.json.flags).toEqual(["clock_skew"]);
    t.clock.advance(30_000);
    const telemetry = body(5);
    const odd = await send(
      t,
      m,
      heartbeat(t, m, { ...telemetry, telemetry: { ...telemetry.telemetry, asics: 0 } }),
    );
    expect(odd.json.flags).toEqual(["telemetry_inconsistent"]);
    const stored = await t.store.listHeartbeats(m.workerId);
    expect(stored.map((h) => [h.counter, h.flags])).toEqual([
      [5, ["telemetry_inconsistent"]],
      [4, ["clock_skew"]],
      [3, ["counter_gap"]],
      [1, []],
    ]);
    const audit = await t.store.listAudit({ type: "heartbeat.anomaly" });
    expect(audit.map((e) => e.data.flags)).toEqual([
      ["counter_gap"],
      ["clock_skew"],
      ["telemetry_inconsistent"],
    ]);
  });

  it("accepts heartbeats while quarantined, refuses them once decommissioned", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    await t.store.setQuarantine(m.workerId, { reason: "clone", at: 1 });
    expect((await send(t, m, heartbeat(t, m, body(1)))).status).toBe(200);
    await t.store.storeRevocation({
      worker_id: m.workerId,
      kind: "decommission",
      through_seq: null,
      jws: "x",
      at: Math.floor(t.clock.now() / 1000),
    });
    const r = await send(t, m, heartbeat(t, m, body(2)));
    expect([r.status, r.json.error.code]).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
  });
});
