import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { attestGroup } from "../../../control-plane/api/attest.ts";
import type { ApiContext } from "../../../control-plane/api/context.ts";
import { defineRoute } from "../../../control-plane/http/route.ts";
import { signAttestation } from "../../../control-plane/protocol/documents/attestation.ts";
import { createProof } from "../../../control-plane/protocol/proof.ts";
import type { HostFacts } from "../../../control-plane/protocol/schemas/attestation.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import { fixedClock } from "../../../lib/clock.ts";
import { encodeBase64url } from "../../../lib/crypto/base64url.ts";
import { generateEd25519KeyPair } from "../../../lib/crypto/ed25519.ts";
import { documentIdentity } from "../../../lib/crypto/jws.ts";
import { signConsent } from "../../../policy-guard/sign.ts";
import { T0_MS, type TestCp, type TestMachine, type TestOwner, useTestCp } from "./harness.ts";

const NOW = Math.floor(T0_MS / 1000);
const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");

const FACTS: HostFacts = {
  machine_id_sha256: "a".repeat(64),
  binary_sha256: "b".repeat(64),
  os: "Debian GNU/Linux 13",
  boot_time: NOW - 3600,
  agent_version: "0.1.0",
};

/** A machine-token route, to show that the issued access token works like any other. */
const echoGroup = () => ({
  routes: [
    defineRoute({
      method: "GET",
      path: "/v1/workers/{id}/echo",
      auth: ["machine"],
      machineParam: "id",
      async handler(c) {
        return { status: 200, body: { caller: c.caller } };
      },
    }),
  ],
});

async function challenge(t: TestCp, worker?: string): Promise<string> {
  const r = await t.call(
    "GET",
    `/v1/auth/agent/challenge${worker === undefined ? "" : `?worker=${worker}`}`,
  );
  expect(r.status).toBe(200);
  validate("challenge-response", r.json);
  return r.json.challenge;
}

function proofFor(t: TestCp, m: TestMachine, path = "/v1/auth/agent/attest"): string {
  return createProof({
    privateKey: m.privateKey,
    method: "POST",
    url: `${t.url}${path}`,
    clock: t.clock,
  });
}

function attestation(t: TestCp, m: TestMachine, nonce: string, facts: Partial<HostFacts> = {}) {
  return signAttestation({
    privateKey: m.privateKey,
    challenge: nonce,
    facts: { ...FACTS, ...facts },
    clock: t.clock,
  });
}

/** POST /v1/auth/agent/attest with the proof alone (no access token), as an agent does. */
function attest(
  t: TestCp,
  m: TestMachine,
  jws: string,
  headers: Record<string, string> = { "agentd-proof": proofFor(t, m) },
) {
  return t.call("POST", "/v1/auth/agent/attest", { headers, body: { attestation: jws } });
}

async function attestOk(t: TestCp, m: TestMachine, facts: Partial<HostFacts> = {}) {
  const r = await attest(t, m, attestation(t, m, await challenge(t, m.workerId), facts));
  expect(r.status).toBe(200);
  validate("attest-response", r.json);
  return r.json as { verdict: string; quarantined: boolean; access_token: string };
}

/** An accepted consent for the worker, stored directly (its API is another group's). */
async function acceptConsent(t: TestCp, owner: TestOwner, m: TestMachine): Promise<void> {
  const jws = signConsent({
    ownerKey: owner.privateKey,
    worker: m.workerId,
    rules: {},
    seq: 1,
    policyId: "p",
    iat: NOW,
    exp: NOW + 30 * 86_400,
  });
  await t.store.acceptConsent({
    identity: documentIdentity(jws),
    worker_id: m.workerId,
    owner_id: owner.ownerId,
    seq: 1,
    jws,
    exp: NOW + 30 * 86_400,
    accepted_at: NOW,
  });
}

describe.each(["sqlite", "postgres"] as const)("attestation (%s)", (backend) => {
  const start = useTestCp();
  const cp = (settings?: { binaryAllowlist?: readonly string[] }) =>
    start({
      backend,
      groups: (ctx: ApiContext) => [attestGroup(ctx), echoGroup()],
      ...(settings === undefined ? {} : { settings }),
    });

  it("answers a challenge with a verdict and an access token bound to the machine key", async () => {
    const t = await cp();
    const m = await t.machine(await t.owner());
    const c = await t.call("GET", `/v1/auth/agent/challenge?worker=${m.workerId}`);
    expect(c.status).toBe(200);
    validate("challenge-response", c.json);
    expect(c.json.expires_at).toBe(NOW + 120);
    const r = await attest(t, m, attestation(t, m, c.json.challenge));
    expect(r.status).toBe(200);
    validate("attest-response", r.json);
    expect(r.json).toMatchObject({
      verdict: "ok",
      quarantined: false,
      token_type: "AgentD",
      expires_at: NOW + 900,
    });
    // Stored only as its hash, for this worker; and it authenticates the machine (with proofs).
    expect(await t.store.findAccessToken(sha256(r.json.access_token), NOW)).toEqual({
      token_sha256: sha256(r.json.access_token),
      worker_id: m.workerId,
      expires_at: NOW + 900,
    });
    const echo = await t.call("GET", `/v1/workers/${m.workerId}/echo`, {
      machine: { ...m, accessToken: r.json.access_token },
    });
    expect(echo.json.caller).toEqual({ kind: "machine", workerId: m.workerId });
    const stolen = await t.call("GET", `/v1/workers/${m.workerId}/echo`, {
      headers: { authorization: `AgentD ${r.json.access_token}` },
    });
    expect(stolen.status).toBe(401);
    const worker = await t.store.getWorker(m.workerId);
    expect(worker?.attestation).toMatchObject({
      verdict: "ok",
      machine_id_sha256: FACTS.machine_id_sha256,
    });
    const [event] = await t.store.listAudit({ type: "attestation.recorded" });
    expect(event).toMatchObject({ actor: `worker:${m.workerId}`, data: { verdict: "ok" } });
    expect(JSON.stringify(await t.store.listAudit())).not.toContain(r.json.access_token);
    // An unbound challenge works as well.
    expect((await attest(t, m, attestation(t, m, await challenge(t)))).status).toBe(200);
  });

  it("uses a challenge once: answering it again is 409 AGENTD_E_CP_REPLAY, audited", async () => {
    const t = await cp();
    const m = await t.machine(await t.owner());
    const nonce = await challenge(t, m.workerId);
    expect((await attest(t, m, attestation(t, m, nonce))).status).toBe(200);
    const again = await attest(t, m, attestation(t, m, nonce));
    expect([again.status, again.json.error.code]).toEqual([409, "AGENTD_E_CP_REPLAY"]);
    const refused = await t.store.listAudit({ type: "attestation.refused" });
    expect(refused.map((e) => e.data.reason)).toEqual(["challenge.used"]);
  });

  it("refuses unknown, expired and foreign challenges with 401; a foreign one stays usable", async () => {
    const t = await cp();
    const owner = await t.owner();
    const m = await t.machine(owner);
    const other = await t.machine(owner);
    const unknown = await attest(t, m, attestation(t, m, encodeBase64url(randomBytes(32))));
    expect([unknown.status, unknown.json.error.code]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    const foreign = await challenge(t, other.workerId);
    const stolen = await attest(t, m, attestation(t, m, foreign));
    expect([stolen.status, stolen.json.error.code]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    expect((await attest(t, other, attestation(t, other, foreign))).status).toBe(200);
    const old = await challenge(t, m.workerId);
    t.clock.advance(120_000);
    const expired = await attest(t, m, attestation(t, m, old));
    expect([expired.status, expired.json.error.code]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    const refused = await t.store.listAudit({ type: "attestation.refused" });
    expect(refused.map((e) => e.data.reason)).toEqual([
      "challenge.unknown",
      "challenge.mismatch",
      "challenge.expired",
    ]);
    expect((await t.store.getWorker(m.workerId))?.attestation).toBeNull();
  });

  it("flags the same key attested from another machine id as a clone: quarantined, sessions ended, stopped", async () => {
    const t = await cp();
    const owner = await t.owner();
    const m = await t.machine(owner);
    await acceptConsent(t, owner, m);
    const first = await attestOk(t, m);
    expect(first).toMatchObject({ verdict: "ok", quarantined: false });
    expect(await t.store.latestPublication(m.workerId)).toBeNull();
    const clone = await attestOk(t, m, { machine_id_sha256: "c".repeat(64) });
    // Still a token: the quarantined machine keeps sending heartbeats.
    expect(clone).toMatchObject({ verdict: "clone", quarantined: true });
    const worker = await t.store.getWorker(m.workerId);
    expect(worker?.quarantine).toEqual({ reason: "attestation.clone", at: NOW });
    expect(worker?.machine_id_sha256).toBe(FACTS.machine_id_sha256);
    const [event] = await t.store.listAudit({ type: "worker.quarantined" });
    expect(event).toMatchObject({
      actor: "system",
      object: `worker:${m.workerId}`,
      data: { reason: "attestation.clone" },
    });
    // Every earlier session of the key ends; only the token just issued is valid.
    for (const old of [m.accessToken, first.access_token]) {
      expect(await t.store.findAccessToken(sha256(old), NOW)).toBeNull();
    }
    expect(await t.store.findAccessToken(sha256(clone.access_token), NOW)).not.toBeNull();
    // And the worker is told to stop mining at once.
    expect((await t.store.latestPublication(m.workerId))?.stop).toBe(true);
    // The original machine attesting again is not a clone, but the quarantine stays.
    expect(await attestOk(t, m)).toMatchObject({ verdict: "ok", quarantined: true });
    expect((await t.store.listAudit({ type: "worker.quarantined" })).length).toBe(1);
  });

  it("quarantines a binary outside the allowlist, and keeps an earlier quarantine's reason", async () => {
    const allowed = "c".repeat(64);
    const t = await cp({ binaryAllowlist: [allowed] });
    const owner = await t.owner();
    const m = await t.machine(owner);
    expect(await attestOk(t, m)).toMatchObject({ verdict: "unknown_binary", quarantined: true });
    expect((await t.store.getWorker(m.workerId))?.quarantine?.reason).toBe(
      "attestation.unknown_binary",
    );
    const good = await t.machine(owner);
    expect(await attestOk(t, good, { binary_sha256: allowed })).toMatchObject({
      verdict: "ok",
      quarantined: false,
    });
    const held = await t.machine(owner);
    await t.store.setQuarantine(held.workerId, { reason: "admin says so", at: NOW });
    expect(await attestOk(t, held)).toMatchObject({ verdict: "unknown_binary", quarantined: true });
    expect((await t.store.getWorker(held.workerId))?.quarantine?.reason).toBe("admin says so");
  });

  it("refuses a replayed proof with 409 before the body, leaving the new challenge unused", async () => {
    const t = await cp();
    const m = await t.machine(await t.owner());
    const headers = { "agentd-proof": proofFor(t, m) };
    expect(
      (await attest(t, m, attestation(t, m, await challenge(t, m.workerId)), headers)).status,
    ).toBe(200);
    const nonce = await challenge(t, m.workerId);
    const replay = await attest(t, m, attestation(t, m, nonce), headers);
    expect([replay.status, replay.json.error.code]).toEqual([409, "AGENTD_E_CP_REPLAY"]);
    const [refused] = await t.store.listAudit({ type: "auth.proof_refused" });
    expect(refused).toMatchObject({ actor: `worker:${m.workerId}`, data: { reason: "replay" } });
    expect((await attest(t, m, attestation(t, m, nonce))).status).toBe(200);
  });

  it("authenticates by the proof alone: 401 without it (before 400), with a token, or from an unknown key; 403 for API keys", async () => {
    const t = await cp();
    const owner = await t.owner();
    const m = await t.machine(owner);
    const nonce = await challenge(t, m.workerId);
    const bad = {
      raw: '{"attestation":1,"attestation":2',
      headers: { "content-type": "application/json" },
    };
    const none = await t.call("POST", "/v1/auth/agent/attest", bad);
    expect([none.status, none.json.error.code]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    for (const key of [t.adminKey, owner.apiKey, await t.apiKey("operator")]) {
      const r = await t.call("POST", "/v1/auth/agent/attest", { ...bad, apiKey: key });
      expect([r.status, r.json.error.code]).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
    }
    const jws = attestation(t, m, nonce);
    // The usual machine credentials (token + proof with ath) are not what attest takes.
    const withToken = await t.call("POST", "/v1/auth/agent/attest", {
      machine: m,
      body: { attestation: jws },
    });
    expect([withToken.status, withToken.json.error.code]).toEqual([
      401,
      "AGENTD_E_CP_UNAUTHENTICATED",
    ]);
    const stranger: TestMachine = { ...m, ...generateEd25519KeyPair() };
    const unknown = await attest(t, m, jws, { "agentd-proof": proofFor(t, stranger) });
    expect([unknown.status, unknown.json.error.code]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    const cases: [string, string][] = [
      [
        "ath",
        createProof({
          privateKey: m.privateKey,
          method: "POST",
          url: `${t.url}/v1/auth/agent/attest`,
          accessToken: m.accessToken,
          clock: t.clock,
        }),
      ],
      ["htu", proofFor(t, m, "/v1/machines/register")],
      ["malformed", "not-a-jws"],
    ];
    for (const [what, proof] of cases) {
      const r = await attest(t, m, jws, { "agentd-proof": proof });
      expect([what, r.status, r.json.error.code]).toEqual([what, 401, "AGENTD_E_CP_PROOF_INVALID"]);
    }
    const refusals = await t.store.listAudit({ type: "auth.proof_refused" });
    expect(refusals.map((e) => e.data.reason)).toEqual(["ath_unexpected", "htu"]);
    // None of it used the challenge.
    expect((await attest(t, m, jws)).status).toBe(200);
  });

  it("refuses attestations that are not this worker's, stale or malformed, using no challenge", async () => {
    const t = await cp();
    const owner = await t.owner();
    const m = await t.machine(owner);
    const other = await t.machine(owner);
    const nonce = await challenge(t, m.workerId);
    const foreign = await attest(t, m, attestation(t, other, nonce));
    expect([foreign.status, foreign.json.error.code]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    const past = fixedClock(T0_MS - 61_000);
    const stale = signAttestation({
      privateKey: m.privateKey,
      challenge: nonce,
      facts: FACTS,
      clock: past,
    });
    const old = await attest(t, m, stale);
    expect([old.status, old.json.error.code]).toEqual([400, "AGENTD_E_JWS_EXPIRED"]);
    const future = fixedClock(T0_MS + 61_000);
    const early = signAttestation({
      privateKey: m.privateKey,
      challenge: nonce,
      facts: FACTS,
      clock: future,
    });
    expect((await attest(t, m, early)).json.error.code).toBe("AGENTD_E_JWS_NOT_YET_VALID");
    // Another document type signed by the right key is not an attestation.
    const wrongTyp = await attest(t, m, proofFor(t, m));
    expect([wrongTyp.status, wrongTyp.json.error.code]).toEqual([400, "AGENTD_E_JWS_TYP"]);
    const notJws = await attest(t, m, "abc");
    expect([notJws.status, notJws.json.error.code]).toEqual([400, "AGENTD_E_SCHEMA"]);
    const refused = await t.store.listAudit({ type: "attestation.refused" });
    expect(refused.map((e) => e.data.reason)).toEqual([
      "AGENTD_E_JWS_UNKNOWN_KEY",
      "AGENTD_E_JWS_EXPIRED",
      "AGENTD_E_JWS_NOT_YET_VALID",
      "AGENTD_E_JWS_TYP",
    ]);
    expect((await attest(t, m, attestation(t, m, nonce))).status).toBe(200);
  });

  it("refuses a decommissioned worker with 403; checks the challenge query", async () => {
    const t = await cp();
    const m = await t.machine(await t.owner());
    const nonce = await challenge(t, m.workerId);
    await t.store.storeRevocation({
      worker_id: m.workerId,
      kind: "decommission",
      through_seq: null,
      jws: "x.y.z",
      at: NOW,
    });
    const r = await attest(t, m, attestation(t, m, nonce));
    expect([r.status, r.json.error.code]).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
    for (const query of [
      "?worker=short",
      "?other=1",
      `?worker=${m.workerId}&worker=${m.workerId}`,
    ]) {
      const c = await t.call("GET", `/v1/auth/agent/challenge${query}`);
      expect([query, c.status]).toEqual([query, 400]);
    }
  });
});
