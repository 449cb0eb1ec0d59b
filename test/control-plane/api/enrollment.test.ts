import type { KeyObject } from "node:crypto";
import { describe, expect, it } from "vitest";
import { enrollmentGroup } from "../../../control-plane/api/enrollment.ts";
import {
  encodeEnrollmentToken,
  newTokenId,
  newTokenSecret,
  parseEnrollmentToken,
} from "../../../control-plane/protocol/enrollment-token.ts";
import { verifyKeySet } from "../../../control-plane/protocol/keyset.ts";
import { createProof } from "../../../control-plane/protocol/proof.ts";
import { caSha256 } from "../../../control-plane/protocol/tls.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import { generateEd25519KeyPair, jwkThumbprint, publicJwk } from "../../../lib/crypto/ed25519.ts";
import { T0_MS, type TestCp, type TestOwner, useTestCp } from "./harness.ts";

const NOW = Math.floor(T0_MS / 1000);

const FACTS = {
  machine_id_sha256: "a".repeat(64),
  binary_sha256: "b".repeat(64),
  os: "Debian GNU/Linux 13",
  boot_time: NOW - 3600,
  agent_version: "0.1.0",
};

async function newToken(t: TestCp, owner: TestOwner, body?: unknown): Promise<string> {
  const r = await t.call("POST", "/v1/enrollment-tokens", {
    apiKey: owner.apiKey,
    ...(body === undefined ? {} : { body }),
  });
  expect(r.status).toBe(200);
  return r.json.token;
}

interface RegisterOptions {
  readonly proof?: string | null;
  readonly signer?: KeyObject;
  readonly accessToken?: string;
  readonly jwk?: unknown;
  readonly facts?: unknown;
  /** The owner the machine is pinned to. */
  readonly owner?: string;
}

/** POST /v1/machines/register as a machine would: its key's proof, no access token. */
function register(t: TestCp, token: string, privateKey: KeyObject, o: RegisterOptions = {}) {
  const headers: Record<string, string> = {};
  const proof =
    o.proof === undefined
      ? createProof({
          privateKey: o.signer ?? privateKey,
          method: "POST",
          url: `${t.url}/v1/machines/register`,
          clock: t.clock,
          ...(o.accessToken === undefined ? {} : { accessToken: o.accessToken }),
        })
      : o.proof;
  if (proof !== null) headers["agentd-proof"] = proof;
  return t.call("POST", "/v1/machines/register", {
    headers,
    body: {
      token,
      jwk: o.jwk ?? jwkOf(privateKey),
      facts: o.facts ?? FACTS,
      ...(o.owner === undefined ? {} : { owner: o.owner }),
    },
  });
}

function jwkOf(privateKey: KeyObject) {
  const pair = KEYS.get(privateKey);
  if (pair === undefined) throw new Error("unknown test key");
  return publicJwk(pair);
}

/** Test machine keys: private → public. */
const KEYS = new Map<KeyObject, KeyObject>();
function machineKey(): { privateKey: KeyObject; publicKey: KeyObject; workerId: string } {
  const pair = generateEd25519KeyPair();
  KEYS.set(pair.privateKey, pair.publicKey);
  return { ...pair, workerId: jwkThumbprint(pair.publicKey) };
}

describe.each(["sqlite", "postgres"] as const)("enrollment (%s)", (backend) => {
  const start = useTestCp();
  const cp = (settings?: { enrollmentTokenTtlS?: number }) =>
    start({
      backend,
      groups: (ctx) => [enrollmentGroup(ctx)],
      ...(settings === undefined ? {} : { settings }),
    });

  it("issues a self-describing token that pins this control plane, and registers a machine with it", async () => {
    const t = await cp();
    const owner = await t.owner();
    const r = await t.call("POST", "/v1/enrollment-tokens", {
      apiKey: owner.apiKey,
      body: { ttl_s: 600, label: "rack 3" },
    });
    expect(r.status).toBe(200);
    validate("enrollment-token-create-response", r.json);
    expect(r.json.expires_at).toBe(NOW + 600);
    const parsed = parseEnrollmentToken(r.json.token);
    expect(parsed).toMatchObject({
      url: t.url,
      ca_sha256: caSha256(t.caPem),
      root_kid: t.ctx.keys().root.kid,
      id: r.json.id,
    });
    const [created] = await t.store.listAudit({ type: "enrollment_token.created" });
    expect(created?.data).toEqual({ token_id: r.json.id, expires_at: NOW + 600, label: "rack 3" });
    expect(JSON.stringify(created)).not.toContain(parsed.secret);

    const m = machineKey();
    const reg = await register(t, r.json.token, m.privateKey, {});
    expect(reg.status).toBe(200);
    validate("machine-register-response", reg.json);
    expect([reg.json.worker, reg.json.owner]).toEqual([m.workerId, owner.ownerId]);
    // The agent's check: the key set is signed by the root the token names.
    expect(verifyKeySet(reg.json.keyset, { rootKid: parsed.root_kid }).seq).toBe(1);
    const worker = await t.store.getWorker(m.workerId);
    expect(worker).toMatchObject({
      owner_id: owner.ownerId,
      jwk: publicJwk(m.publicKey),
      facts: FACTS,
      registered_at: NOW,
    });
    const [registered] = await t.store.listAudit({ type: "worker.registered" });
    expect(registered).toMatchObject({
      actor: `enrollment_token:${r.json.id}`,
      object: `worker:${m.workerId}`,
      data: { worker: m.workerId, owner: owner.ownerId, token_id: r.json.id },
    });
  });

  it("refuses a token of another owner than the one the machine is pinned to, before using it", async () => {
    const t = await cp();
    const owner = await t.owner();
    const other = await t.owner();
    const token = await newToken(t, owner);
    const m = machineKey();
    const r = await register(t, token, m.privateKey, { owner: other.ownerId });
    expect([r.status, r.json.error.code]).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
    expect(await t.store.getWorker(m.workerId)).toBeNull();
    const refused = (await t.store.listAudit({ type: "enrollment.refused" })).at(-1);
    expect(refused?.data).toEqual({ reason: "owner_mismatch", worker: m.workerId });
    // not consumed: pinned to the right owner, the same token registers
    const ok = await register(t, token, m.privateKey, { owner: owner.ownerId });
    expect([ok.status, ok.json.owner]).toEqual([200, owner.ownerId]);
    // without the secret, the owner check says nothing about the token: 401 like any other
    const { id } = parseEnrollmentToken(await newToken(t, owner));
    const keys = t.ctx.keys();
    const forged = encodeEnrollmentToken({
      url: t.url,
      ca_sha256: keys.caSha256,
      root_kid: keys.root.kid,
      id,
      secret: newTokenSecret(),
    });
    const probe = await register(t, forged, machineKey().privateKey, { owner: other.ownerId });
    expect([probe.status, probe.json.error.code]).toEqual([401, "AGENTD_E_CP_TOKEN_INVALID"]);
  });

  it("defaults the lifetime to the setting, bounded to 60..86400 s", async () => {
    const t = await cp({ enrollmentTokenTtlS: 10 });
    const owner = await t.owner();
    const short = await t.call("POST", "/v1/enrollment-tokens", { apiKey: owner.apiKey });
    expect(short.json.expires_at).toBe(NOW + 60);
    const t2 = await cp();
    const o2 = await t2.owner();
    const byDefault = await t2.call("POST", "/v1/enrollment-tokens", {
      apiKey: o2.apiKey,
      body: {},
    });
    expect(byDefault.json.expires_at).toBe(NOW + 3600);
    for (const body of [{ ttl_s: 59 }, { ttl_s: 86_401 }, { ttl_s: "600" }, { other: 1 }]) {
      const r = await t2.call("POST", "/v1/enrollment-tokens", { apiKey: o2.apiKey, body });
      expect([JSON.stringify(body), r.status, r.json.error.code]).toEqual([
        JSON.stringify(body),
        400,
        "AGENTD_E_SCHEMA",
      ]);
    }
    expect((await t2.store.listAudit({ type: "enrollment_token.created" })).length).toBe(1);
  });

  it("lets only owners create tokens: 401 without credentials before 400, 403 for the rest", async () => {
    const t = await cp();
    const owner = await t.owner();
    const m = await t.machine(owner);
    const bad = { raw: '{"ttl_s":1,"ttl_s":2', headers: { "content-type": "application/json" } };
    const none = await t.call("POST", "/v1/enrollment-tokens", bad);
    expect([none.status, none.json.error.code]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    for (const key of [t.adminKey, await t.apiKey("operator"), await t.apiKey("auditor")]) {
      const r = await t.call("POST", "/v1/enrollment-tokens", { ...bad, apiKey: key });
      expect([r.status, r.json.error.code]).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
    }
    const machine = await t.call("POST", "/v1/enrollment-tokens", { body: {}, machine: m });
    expect(machine.status).toBe(403);
    expect(await t.store.listAudit({ type: "enrollment_token.created" })).toEqual([]);
  });

  it("lets exactly one of 10 concurrent registrations use a token", async () => {
    const t = await cp();
    const owner = await t.owner();
    const token = await newToken(t, owner);
    const machines = Array.from({ length: 10 }, machineKey);
    const replies = await Promise.all(machines.map((m) => register(t, token, m.privateKey)));
    const statuses = replies.map((r) => r.status).sort();
    expect(statuses).toEqual([200, ...Array(9).fill(401)]);
    for (const r of replies.filter((x) => x.status === 401)) {
      expect(r.json.error.code).toBe("AGENTD_E_CP_TOKEN_INVALID");
    }
    const workers = await t.store.listWorkers({ owner_id: owner.ownerId });
    expect(workers.map((w) => w.worker_id)).toEqual([
      replies.find((r) => r.status === 200)?.json.worker,
    ]);
    const refused = await t.store.listAudit({ type: "enrollment.refused" });
    expect(refused.map((e) => e.data.reason)).toEqual(Array(9).fill("used"));
  });

  it("refuses a used, expired, unknown or wrong-secret token with 401, audited, registering nothing", async () => {
    const t = await cp();
    const owner = await t.owner();
    const keys = t.ctx.keys();
    const forge = (id: string, secret: string) =>
      encodeEnrollmentToken({
        url: t.url,
        ca_sha256: keys.caSha256,
        root_kid: keys.root.kid,
        id,
        secret,
      });
    const refused = async (token: string, reason: string) => {
      const m = machineKey();
      const r = await register(t, token, m.privateKey);
      expect([reason, r.status, r.json.error.code]).toEqual([
        reason,
        401,
        "AGENTD_E_CP_TOKEN_INVALID",
      ]);
      expect(r.headers["www-authenticate"]).toBeDefined();
      expect(await t.store.getWorker(m.workerId)).toBeNull();
      const last = (await t.store.listAudit({ type: "enrollment.refused" })).at(-1);
      expect(last?.data.reason).toBe(reason);
    };

    await refused(forge(newTokenId(), newTokenSecret()), "unknown");
    const token = await newToken(t, owner);
    const { id, secret } = parseEnrollmentToken(token);
    // A wrong secret is refused and leaves the token usable.
    await refused(forge(id, newTokenSecret()), "mismatch");
    expect((await register(t, token, machineKey().privateKey)).status).toBe(200);
    await refused(token, "used");
    expect(secret).not.toBe("");

    const late = await newToken(t, owner);
    t.clock.advance(3600 * 1000);
    await refused(late, "expired");
    expect((await t.store.listWorkers({ owner_id: owner.ownerId })).length).toBe(1);
  });

  it("refuses malformed tokens and tokens made for another control plane", async () => {
    const t = await cp();
    const owner = await t.owner();
    const token = parseEnrollmentToken(await newToken(t, owner));
    for (const [bad, reason] of [
      ["agentd1.AAAA", "malformed"],
      [encodeEnrollmentToken({ ...token, ca_sha256: "0".repeat(64) }), "other_control_plane"],
      [
        encodeEnrollmentToken({
          ...token,
          root_kid: jwkThumbprint(generateEd25519KeyPair().publicKey),
        }),
        "other_control_plane",
      ],
    ] as const) {
      const r = await register(t, bad, machineKey().privateKey);
      expect([reason, r.status, r.json.error.code]).toEqual([
        reason,
        401,
        "AGENTD_E_CP_TOKEN_INVALID",
      ]);
      expect((await t.store.listAudit({ type: "enrollment.refused" })).at(-1)?.data.reason).toBe(
        reason,
      );
    }
    // The genuine token was not burned by any of these.
    expect((await register(t, encodeEnrollmentToken(token), machineKey().privateKey)).status).toBe(
      200,
    );
  });

  it("registers only a key whose holder signs the request; a bad proof burns no token", async () => {
    const t = await cp();
    const owner = await t.owner();
    const token = await newToken(t, owner);
    const m = machineKey();
    const cases: [string, RegisterOptions, number, string][] = [
      ["no proof", { proof: null }, 401, "AGENTD_E_CP_PROOF_INVALID"],
      ["garbage", { proof: "a.b.c" }, 401, "AGENTD_E_CP_PROOF_INVALID"],
      ["other key", { signer: machineKey().privateKey }, 401, "AGENTD_E_CP_PROOF_INVALID"],
      ["with ath", { accessToken: "agentd_at_x" }, 401, "AGENTD_E_CP_PROOF_INVALID"],
      [
        "other URL",
        {
          proof: createProof({
            privateKey: m.privateKey,
            method: "POST",
            url: `${t.url}/v1/auth/agent/attest`,
            clock: t.clock,
          }),
        },
        401,
        "AGENTD_E_CP_PROOF_INVALID",
      ],
    ];
    for (const [what, o, status, code] of cases) {
      const r = await register(t, token, m.privateKey, o);
      expect([what, r.status, r.json.error.code]).toEqual([what, status, code]);
    }
    expect(await t.store.getWorker(m.workerId)).toBeNull();
    const refusals = await t.store.listAudit({ type: "auth.proof_refused" });
    expect(refusals.map((e) => e.data.reason)).toEqual([
      "malformed",
      "key",
      "ath_unexpected",
      "htu",
    ]);

    // A stale proof (older than the skew) is refused too.
    const stale = createProof({
      privateKey: m.privateKey,
      method: "POST",
      url: `${t.url}/v1/machines/register`,
      clock: t.clock,
    });
    t.clock.advance(61_000);
    const late = await register(t, token, m.privateKey, { proof: stale });
    expect([late.status, late.json.error.code]).toEqual([401, "AGENTD_E_CP_PROOF_INVALID"]);

    // The token is intact: the real registration goes through, and its proof cannot be replayed.
    const proof = createProof({
      privateKey: m.privateKey,
      method: "POST",
      url: `${t.url}/v1/machines/register`,
      clock: t.clock,
    });
    expect((await register(t, token, m.privateKey, { proof })).status).toBe(200);
    const token2 = await newToken(t, owner);
    const replay = await register(t, token2, m.privateKey, { proof });
    expect([replay.status, replay.json.error.code]).toEqual([409, "AGENTD_E_CP_REPLAY"]);
    expect((await t.store.listAudit({ type: "auth.proof_refused" })).at(-1)?.data.reason).toBe(
      "replay",
    );
  });

  it("refuses a machine key registered already with 409 and leaves the new token usable", async () => {
    const t = await cp();
    const owner = await t.owner();
    const m = machineKey();
    expect((await register(t, await newToken(t, owner), m.privateKey)).status).toBe(200);
    const token = await newToken(t, owner);
    const again = await register(t, token, m.privateKey);
    expect([again.status, again.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
    expect((await register(t, token, machineKey().privateKey)).status).toBe(200);
  });

  it("a registered key enrolled again (agentd enroll --force, same key) is 409 saying why, audited, no token burnt", async () => {
    const t = await cp();
    const owner = await t.owner();
    const m = machineKey();
    const first = await register(t, await newToken(t, owner), m.privateKey);
    expect(first.status).toBe(200);
    const worker = first.json.worker as string;
    const token = await newToken(t, owner);
    const again = await register(t, token, m.privateKey);
    expect([again.status, again.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
    // The message says why, and what to do instead: a newer consent recovers the counters.
    expect(again.json.error.message).toContain(`registered already as worker ${worker}`);
    expect(again.json.error.message).toContain("owner's next consent");
    expect(again.json.error.message).toContain("agentd init --force");
    expect((await t.store.listAudit({ type: "enrollment.refused" })).at(-1)).toMatchObject({
      object: `worker:${worker}`,
      data: { reason: "registered", worker, decommissioned: false },
    });
    // A decommissioned worker's key: never enrolled again, and it says so.
    await t.store.storeRevocation({
      worker_id: worker,
      kind: "decommission",
      through_seq: null,
      jws: "d",
      at: Math.floor(t.clock.now() / 1000),
    });
    const ended = await register(t, token, m.privateKey);
    expect([ended.status, ended.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
    expect(ended.json.error.message).toContain("decommissioned");
    expect((await t.store.listAudit({ type: "enrollment.refused" })).at(-1)?.data).toMatchObject({
      reason: "registered",
      decommissioned: true,
    });
    // The token was never consumed: a new key enrolls with it.
    expect((await register(t, token, machineKey().privateKey)).status).toBe(200);
  });

  it("refuses a mis-shaped registration with 400 before the token is looked at", async () => {
    const t = await cp();
    const owner = await t.owner();
    const token = await newToken(t, owner);
    const m = machineKey();
    const good = publicJwk(m.publicKey);
    for (const [what, o] of [
      ["RSA jwk", { jwk: { kty: "RSA", n: "AQAB", e: "AQAB" } }],
      ["private jwk", { jwk: { ...good, d: good.x } }],
      ["short x", { jwk: { ...good, x: "AAAA" } }],
      ["facts member", { facts: { ...FACTS, hostname: "rig" } }],
      ["facts hash", { facts: { ...FACTS, machine_id_sha256: "nothex" } }],
    ] as const) {
      const r = await register(t, token, m.privateKey, o);
      expect([what, r.status, r.json.error.code]).toEqual([what, 400, "AGENTD_E_SCHEMA"]);
    }
    const noToken = await t.call("POST", "/v1/machines/register", {
      body: { jwk: good, facts: FACTS },
    });
    expect(noToken.status).toBe(400);
    expect(await t.store.listAudit()).toHaveLength(1); // the token's creation only
    expect((await register(t, token, m.privateKey)).status).toBe(200);
  });
});
