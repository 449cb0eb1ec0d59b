import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { enrollmentGroup } from "../../../control-plane/api/enrollment.ts";
import { healthGroup } from "../../../control-plane/api/health.ts";
import { ownersGroup } from "../../../control-plane/api/owners.ts";
import { createApiClient } from "../../../control-plane/protocol/client-api.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import { generateEd25519KeyPair, jwkThumbprint, publicJwk } from "../../../lib/crypto/ed25519.ts";
import { isAgentdError } from "../../../lib/errors.ts";
import { useTestCp } from "./harness.ts";

const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");

describe.each(["sqlite", "postgres"] as const)("owners and API keys (%s)", (backend) => {
  const start = useTestCp();
  const cp = () =>
    start({
      backend,
      groups: (ctx) => [ownersGroup(ctx), healthGroup(ctx), enrollmentGroup(ctx)],
    });

  it("registers an owner by its public key and returns a working owner key, stored hashed", async () => {
    const t = await cp();
    const pair = generateEd25519KeyPair();
    const r = await t.call("POST", "/v1/owners", {
      apiKey: t.adminKey,
      body: { jwk: publicJwk(pair.publicKey), label: "alice" },
    });
    expect(r.status).toBe(200);
    validate("owner-create-response", r.json);
    expect(r.json.owner).toBe(jwkThumbprint(pair.publicKey));
    const stored = await t.store.findApiKeyBySha256(sha256(r.json.api_key));
    expect(stored).toMatchObject({ id: r.json.key_id, role: "owner", owner_id: r.json.owner });
    expect(await t.store.getOwner(r.json.owner)).toMatchObject({
      jwk: publicJwk(pair.publicKey),
    });
    // The owner key authenticates as that owner on the live server.
    const token = await t.call("POST", "/v1/enrollment-tokens", { apiKey: r.json.api_key });
    expect(token.status).toBe(200);
    const audit = await t.store.listAudit();
    const admin = await t.store.findApiKeyBySha256(sha256(t.adminKey));
    expect(audit.map((e) => [e.type, e.actor])).toEqual([
      ["owner.created", `apikey:${admin?.id}`],
      ["apikey.created", `apikey:${admin?.id}`],
      ["enrollment_token.created", `apikey:${r.json.key_id}`],
    ]);
    expect(audit[0]?.data).toEqual({ owner: r.json.owner, label: "alice" });
    expect(JSON.stringify(audit)).not.toContain(r.json.api_key);
    expect(JSON.stringify(audit)).not.toContain(r.json.api_key.slice("agentd_owner_".length));
  });

  it("refuses an owner registered already with 409 and makes no second key", async () => {
    const t = await cp();
    const jwk = publicJwk(generateEd25519KeyPair().publicKey);
    expect((await t.call("POST", "/v1/owners", { apiKey: t.adminKey, body: { jwk } })).status).toBe(
      200,
    );
    const keys = await t.store.countApiKeys();
    const again = await t.call("POST", "/v1/owners", { apiKey: t.adminKey, body: { jwk } });
    expect([again.status, again.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
    validate("error", again.json);
    expect(await t.store.countApiKeys()).toBe(keys);
    expect((await t.store.listAudit({ type: "owner.created" })).length).toBe(1);
  });

  it("refuses a bad JWK with 400 AGENTD_E_SCHEMA, never storing or echoing it", async () => {
    const t = await cp();
    const good = publicJwk(generateEd25519KeyPair().publicKey);
    const secretD = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const bad: unknown[] = [
      { kty: "RSA", n: "AQAB", e: "AQAB" },
      { ...good, crv: "X25519" },
      { ...good, d: secretD }, // a private key: the control plane never takes one
      { ...good, x: good.x.slice(0, 42) },
      { ...good, x: `${good.x.slice(0, 42)}B` }, // non-canonical base64url (unused bits set)
      { kty: "OKP", crv: "Ed25519" },
      "not a jwk",
    ];
    for (const jwk of bad) {
      const r = await t.call("POST", "/v1/owners", { apiKey: t.adminKey, body: { jwk } });
      expect([JSON.stringify(jwk), r.status, r.json.error.code]).toEqual([
        JSON.stringify(jwk),
        400,
        "AGENTD_E_SCHEMA",
      ]);
      expect(r.text).not.toContain(secretD);
    }
    const missing = await t.call("POST", "/v1/owners", { apiKey: t.adminKey, body: {} });
    expect(missing.status).toBe(400);
    expect(await t.store.listAudit()).toEqual([]);
    expect(await t.store.countApiKeys("owner")).toBe(0);
  });

  it("creates operator, auditor, admin and owner keys, each audited without the key", async () => {
    const t = await cp();
    const owner = await t.owner();
    const admin = await t.store.findApiKeyBySha256(sha256(t.adminKey));
    for (const body of [
      { role: "operator", label: "ops bob" },
      { role: "auditor" },
      { role: "admin" },
      { role: "owner", owner: owner.ownerId },
    ]) {
      const r = await t.call("POST", "/v1/api-keys", { apiKey: t.adminKey, body });
      expect(r.status).toBe(200);
      validate("apikey-create-response", r.json);
      expect(r.json.api_key).toMatch(new RegExp(`^agentd_${body.role}_`));
      expect([r.json.role, r.json.owner]).toEqual([body.role, body.owner ?? null]);
      expect(await t.store.findApiKeyBySha256(sha256(r.json.api_key))).toMatchObject({
        id: r.json.key_id,
        role: body.role,
        created_by: admin?.id,
      });
      const [event] = await t.store.listAudit({ object: `apikey:${r.json.key_id}` });
      expect(event).toMatchObject({
        type: "apikey.created",
        actor: `apikey:${admin?.id}`,
        data: { key_id: r.json.key_id, role: body.role, owner: body.owner ?? null },
      });
      expect(JSON.stringify(event)).not.toContain(r.json.api_key.slice(-43));
      if (body.role === "operator") {
        expect(event?.data.label).toBe("ops bob");
        // The new operator key works at once (GET /metrics allows operators).
        expect((await t.call("GET", "/metrics", { apiKey: r.json.api_key })).status).toBe(200);
      }
    }
  });

  it("refuses an owner key for an unknown owner (404) and a mis-shaped request (400), storing nothing", async () => {
    const t = await cp();
    const owner = await t.owner();
    const before = await t.store.countApiKeys();
    const unknown = await t.call("POST", "/v1/api-keys", {
      apiKey: t.adminKey,
      body: { role: "owner", owner: jwkThumbprint(generateEd25519KeyPair().publicKey) },
    });
    expect([unknown.status, unknown.json.error.code]).toEqual([404, "AGENTD_E_CP_NOT_FOUND"]);
    for (const body of [
      { role: "owner" },
      { role: "operator", owner: owner.ownerId },
      { role: "root" },
      { role: "operator", extra: 1 },
    ]) {
      const r = await t.call("POST", "/v1/api-keys", { apiKey: t.adminKey, body });
      expect([JSON.stringify(body), r.status, r.json.error.code]).toEqual([
        JSON.stringify(body),
        400,
        "AGENTD_E_SCHEMA",
      ]);
    }
    expect(await t.store.countApiKeys()).toBe(before);
    expect(await t.store.listAudit()).toEqual([]);
  });

  it("lets only admins call: 401 without credentials (before the body), 403 for other roles", async () => {
    const t = await cp();
    const owner = await t.owner();
    const m = await t.machine(owner);
    const bad = { raw: '{"jwk":1,"jwk":2', headers: { "content-type": "application/json" } };
    for (const path of ["/v1/owners", "/v1/api-keys"]) {
      const none = await t.call("POST", path, bad);
      expect([path, none.status, none.json.error.code]).toEqual([
        path,
        401,
        "AGENTD_E_CP_UNAUTHENTICATED",
      ]);
      for (const key of [await t.apiKey("operator"), await t.apiKey("auditor"), owner.apiKey]) {
        const r = await t.call("POST", path, { ...bad, apiKey: key });
        expect([path, r.status, r.json.error.code]).toEqual([path, 403, "AGENTD_E_CP_FORBIDDEN"]);
      }
      const machine = await t.call("POST", path, { body: { role: "admin" }, machine: m });
      expect([path, machine.status]).toEqual([path, 403]);
    }
    expect(await t.store.listAudit({ type: "apikey.created" })).toEqual([]);
  });
  it("revokes an API key for good: its next request is 401, audited, never revived, never the last admin", async () => {
    const t = await cp();
    const adminId = (await t.store.findApiKeyBySha256(sha256(t.adminKey)))?.id as string;
    const create = async (role: string) => {
      const r = await t.call("POST", "/v1/api-keys", { apiKey: t.adminKey, body: { role } });
      expect(r.status).toBe(200);
      return r.json as { key_id: string; api_key: string };
    };
    const admin2 = await create("admin");
    const operator = await create("operator");
    const works = (apiKey: string) =>
      t.call("POST", "/v1/api-keys", { apiKey, body: { role: "auditor" } });
    expect((await works(admin2.api_key)).status).toBe(200);
    const path = `/v1/api-keys/${admin2.key_id}`;
    // Admins only; the key to revoke named by the path, no body.
    expect((await t.call("DELETE", path)).status).toBe(401);
    expect((await t.call("DELETE", path, { apiKey: operator.api_key })).status).toBe(403);
    expect((await t.call("DELETE", path, { apiKey: t.adminKey, body: {} })).status).toBe(413);
    expect((await works(admin2.api_key)).status).toBe(200);

    const client = createApiClient({
      url: t.url,
      caPem: t.caPem,
      clock: t.clock,
      apiKey: t.adminKey,
    });
    try {
      const revoked = await client.revokeApiKey(admin2.key_id);
      expect(validate("apikey-revoke-response", revoked)).toEqual({
        key_id: admin2.key_id,
        role: "admin",
        owner: null,
        revoked: true,
        revoked_at: Math.floor(t.clock.now() / 1000),
      });
      // At once: its very next request is unauthenticated.
      const refused = await works(admin2.api_key);
      expect([refused.status, refused.json.error.code]).toEqual([
        401,
        "AGENTD_E_CP_UNAUTHENTICATED",
      ]);
      // Once: a second revocation is a conflict; an unknown id is 404.
      const twice = await client.revokeApiKey(admin2.key_id).catch((e: unknown) => e);
      expect(isAgentdError(twice) && [twice.code, twice.context.status]).toEqual([
        "AGENTD_E_CP_CONFLICT",
        409,
      ]);
      const unknown = await t.call("DELETE", "/v1/api-keys/AAAAAAAAAAAAAAAAAAAAAA", {
        apiKey: t.adminKey,
      });
      expect(unknown.status).toBe(404);
    } finally {
      client.close();
    }
    // Not revivable: its id and its hash can never be created again.
    const again = await t.store
      .createApiKey({
        id: "fresh-id",
        role: "admin",
        owner_id: null,
        key_sha256: sha256(admin2.api_key),
        created_at: 0,
        created_by: null,
      })
      .catch((e: unknown) => e);
    expect(isAgentdError(again) && again.code).toBe("AGENTD_E_CP_CONFLICT");
    expect((await works(admin2.api_key)).status).toBe(401);
    // Audited, with the key's id, role and owner; never the key.
    const audit = await t.store.listAudit({ type: "apikey.revoked" });
    expect(audit.map((e) => [e.actor, e.object, e.data])).toEqual([
      [
        `apikey:${adminId}`,
        `apikey:${admin2.key_id}`,
        { key_id: admin2.key_id, role: "admin", owner: null },
      ],
    ]);
    // The last admin key stays: the control plane would have no admin left.
    const last = await t.call("DELETE", `/v1/api-keys/${adminId}`, { apiKey: t.adminKey });
    expect([last.status, last.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
    expect((await works(t.adminKey)).status).toBe(200);
    // Any other key, an operator's here, goes at once too.
    const op = await t.call("DELETE", `/v1/api-keys/${operator.key_id}`, { apiKey: t.adminKey });
    expect(op.status).toBe(200);
    expect((await t.call("GET", "/metrics", { apiKey: operator.api_key })).status).toBe(401);
  });

  it("two admins revoking each other at once: one of them stays", async () => {
    const t = await cp();
    const adminId = (await t.store.findApiKeyBySha256(sha256(t.adminKey)))?.id as string;
    const r = await t.call("POST", "/v1/api-keys", { apiKey: t.adminKey, body: { role: "admin" } });
    const other = r.json as { key_id: string; api_key: string };
    const replies = await Promise.all([
      t.call("DELETE", `/v1/api-keys/${other.key_id}`, { apiKey: t.adminKey }),
      t.call("DELETE", `/v1/api-keys/${adminId}`, { apiKey: other.api_key }),
    ]);
    // One revocation wins; the other finds its caller revoked (401) or the last admin (409).
    expect(replies.filter((x) => x.status === 200)).toHaveLength(1);
    expect(await t.store.countApiKeys("admin")).toBe(1);
  });
});
