import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { healthGroup } from "../../../control-plane/api/health.ts";
import { keysGroup, syncKeys } from "../../../control-plane/api/keys.ts";
import { loadControlPlaneKeys } from "../../../control-plane/keys/load.ts";
import {
  acceptKeySetUpdate,
  KEY_USES,
  KEYSET_TYP,
  signKeySet,
  verifyKeySet,
} from "../../../control-plane/protocol/keyset.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import {
  generateEd25519KeyPair,
  jwkThumbprint,
  publicJwk,
  publicKeyOf,
} from "../../../lib/crypto/ed25519.ts";
import { signJws } from "../../../lib/crypto/jws.ts";
import { T0_MS, type TestCp, useTestCp } from "./harness.ts";

const NOW = Math.floor(T0_MS / 1000);
const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");

async function currentKeySet(t: TestCp): Promise<string> {
  const r = await t.call("GET", "/v1/keys");
  expect(r.status).toBe(200);
  validate("keys-response", r.json);
  return r.json.keyset;
}

function kidsOf(t: TestCp, jws: string): string[] {
  const v = verifyKeySet(jws, { rootKid: t.ctx.keys().root.kid });
  return KEY_USES.flatMap((u) => Object.keys(v.keys[u]));
}

describe.each(["sqlite", "postgres"] as const)("key set and rotation (%s)", (backend) => {
  const start = useTestCp();
  const cp = () => start({ backend, groups: (ctx) => [keysGroup(ctx)] });

  it("serves the root-signed key set to anyone, credentials ignored", async () => {
    const t = await cp();
    const jws = await currentKeySet(t);
    expect(jws).toBe(t.ctx.keys().keysetJws);
    const v = verifyKeySet(jws, { rootKid: t.ctx.keys().root.kid });
    expect(v.seq).toBe(1);
    const withJunk = await t.call("GET", "/v1/keys", {
      headers: { authorization: "Bearer nonsense" },
    });
    expect(withJunk.json.keyset).toBe(jws);
  });

  it("rotates every use to a new key under the same root; the old set accepts the new one", async () => {
    const t = await cp();
    const first = await currentKeySet(t);
    const before = t.ctx.keys();
    const r = await t.call("POST", "/v1/admin/keys/rotate", { apiKey: t.adminKey });
    expect(r.status).toBe(200);
    validate("keys-response", r.json);
    // Visible at GET /v1/keys, and what this process now signs with.
    expect(await currentKeySet(t)).toBe(r.json.keyset);
    const old = verifyKeySet(first, { rootKid: before.root.kid });
    const next = acceptKeySetUpdate(old, r.json.keyset);
    expect(next.seq).toBe(2);
    const after = t.ctx.keys();
    for (const use of KEY_USES) {
      expect(after.signing[use].kid).not.toBe(before.signing[use].kid);
      expect(Object.keys(next.keys[use]).sort()).toEqual(
        [after.signing[use].kid, before.signing[use].kid].sort(), // the previous kept, verify-only
      );
    }
    // Persisted in the key directory and recorded in the store, audited.
    expect(loadControlPlaneKeys(before.dir).keysetJws).toBe(r.json.keyset);
    expect(await t.store.currentKeySet()).toEqual({ seq: 2, jws: r.json.keyset, stored_at: NOW });
    const admin = await t.store.findApiKeyBySha256(sha256(t.adminKey));
    const [event] = await t.store.listAudit({ type: "keys.rotated" });
    expect(event).toMatchObject({
      actor: `apikey:${admin?.id}`,
      object: "keyset",
      data: { seq: 2, previous_seq: 1, keep_previous: true },
    });
    expect(event?.data.keys).toEqual(
      Object.fromEntries(KEY_USES.map((u) => [u, after.signing[u].kid])),
    );
  });

  it("drops the previous keys with keep_previous false", async () => {
    const t = await cp();
    const first = await currentKeySet(t);
    const r = await t.call("POST", "/v1/admin/keys/rotate", {
      apiKey: t.adminKey,
      body: { keep_previous: false },
    });
    expect(r.status).toBe(200);
    const oldKids = kidsOf(t, first);
    const newKids = kidsOf(t, r.json.keyset);
    expect(newKids).toHaveLength(KEY_USES.length);
    expect(newKids.filter((k) => oldKids.includes(k))).toEqual([]);
    expect(
      acceptKeySetUpdate(verifyKeySet(first, { rootKid: t.ctx.keys().root.kid }), r.json.keyset)
        .seq,
    ).toBe(2);
  });

  it("leaves an agent refusing a rollback and any key set not signed by the pinned root", async () => {
    const t = await cp();
    const first = await currentKeySet(t);
    const rootKid = t.ctx.keys().root.kid;
    const r = await t.call("POST", "/v1/admin/keys/rotate", { apiKey: t.adminKey, body: {} });
    const current = verifyKeySet(r.json.keyset, { rootKid });
    // The older set again: a rollback.
    expect(() => acceptKeySetUpdate(current, first)).toThrow(
      expect.objectContaining({ code: "AGENTD_E_CP_CONFLICT" }),
    );
    // A well-formed set with a higher seq under another root.
    const rogue = generateEd25519KeyPair();
    const entries = KEY_USES.map((use) => ({ use, publicKey: generateEd25519KeyPair().publicKey }));
    const otherRoot = signKeySet({
      rootPrivateKey: rogue.privateKey,
      seq: 9,
      iat: NOW,
      keys: entries,
    });
    expect(() => acceptKeySetUpdate(current, otherRoot)).toThrow(
      expect.objectContaining({ code: "AGENTD_E_ENROLL_PIN_MISMATCH" }),
    );
    // A set that names the real root but is signed by a working key of the control plane.
    const command = t.ctx.keys().signing.command.privateKey;
    const payload = {
      v: 1,
      seq: 9,
      iat: NOW,
      root: publicJwk(t.ctx.keys().root.publicKey),
      keys: entries.map((e) => ({
        kid: jwkThumbprint(e.publicKey),
        use: e.use,
        jwk: publicJwk(e.publicKey),
      })),
    };
    const forged = signJws({ typ: KEYSET_TYP, payload, privateKey: command });
    expect(jwkThumbprint(publicKeyOf(command))).not.toBe(rootKid);
    expect(() => acceptKeySetUpdate(current, forged)).toThrow(
      expect.objectContaining({ code: expect.stringMatching(/^AGENTD_E_JWS_/) }),
    );
    // The control plane itself still serves the genuine set.
    expect(await currentKeySet(t)).toBe(r.json.keyset);
  });

  it("lets only admins rotate: 401 before 400, 403 for other callers, 400 rotates nothing", async () => {
    const t = await cp();
    const owner = await t.owner();
    const m = await t.machine(owner);
    const bad = { raw: '{"keep_previous":1,"x"', headers: { "content-type": "application/json" } };
    const none = await t.call("POST", "/v1/admin/keys/rotate", bad);
    expect([none.status, none.json.error.code]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    for (const key of [await t.apiKey("operator"), await t.apiKey("auditor"), owner.apiKey]) {
      const r = await t.call("POST", "/v1/admin/keys/rotate", { ...bad, apiKey: key });
      expect([r.status, r.json.error.code]).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
    }
    const machine = await t.call("POST", "/v1/admin/keys/rotate", { machine: m, body: {} });
    expect(machine.status).toBe(403);
    for (const body of [{ keep_previous: "no" }, { other: true }]) {
      const r = await t.call("POST", "/v1/admin/keys/rotate", { apiKey: t.adminKey, body });
      expect([r.status, r.json.error.code]).toEqual([400, "AGENTD_E_SCHEMA"]);
    }
    expect(verifyKeySet(await currentKeySet(t), { rootKid: t.ctx.keys().root.kid }).seq).toBe(1);
    expect(await t.store.currentKeySet()).toBeNull();
    expect(await t.store.listAudit()).toEqual([]);
  });
  it("another key set under the same seq in the database is a conflict, not current", async () => {
    const t = await start({ backend, groups: (ctx) => [keysGroup(ctx), healthGroup(ctx)] });
    const mine = t.ctx.keys();
    // Same root, same seq, other keys: what a second rotation elsewhere, or a changed row, holds.
    const other = signKeySet({
      rootPrivateKey: mine.root.privateKey,
      seq: mine.keyset.seq,
      iat: NOW,
      keys: KEY_USES.map((use) => ({ use, publicKey: generateEd25519KeyPair().publicKey })),
    });
    expect(other).not.toBe(mine.keysetJws);
    await t.store.storeKeySet({ seq: mine.keyset.seq, jws: other, stored_at: NOW });
    expect(await syncKeys(t.ctx)).toBe("conflict");
    // Neither kept silently: this instance keeps its keys but is not ready.
    expect(t.ctx.keys().keysetJws).toBe(mine.keysetJws);
    const notReady = await t.call("GET", "/readyz");
    expect([notReady.status, notReady.json.status]).toEqual([503, "not_ready"]);
  });

  it("the very key set of the directory under the same seq is current", async () => {
    const t = await start({ backend, groups: (ctx) => [keysGroup(ctx), healthGroup(ctx)] });
    const mine = t.ctx.keys();
    await t.store.storeKeySet({ seq: mine.keyset.seq, jws: mine.keysetJws, stored_at: NOW });
    expect(await syncKeys(t.ctx)).toBe("current");
    expect((await t.call("GET", "/readyz")).status).toBe(200);
  });
});

describe("key rotation across instances (two control planes on one PostgreSQL)", () => {
  const start = useTestCp();
  const groups = (ctx: Parameters<typeof keysGroup>[0]) => [keysGroup(ctx), healthGroup(ctx)];

  it("an instance on the same key directory picks the rotation up; one on an old copy stops being ready", async () => {
    const a = await start({ backend: "postgres", groups });
    const copy = mkdtempSync(join(tmpdir(), "agentd-keys-copy-"));
    try {
      cpSync(a.keysDir, copy, { recursive: true });
      const shared = await start({ groups, databaseUrl: a.databaseUrl, keysDir: a.keysDir });
      const stale = await start({ groups, databaseUrl: a.databaseUrl, keysDir: copy });
      for (const t of [shared, stale]) expect(await syncKeys(t.ctx)).toBe("current");

      const rotated = await a.call("POST", "/v1/admin/keys/rotate", { apiKey: a.adminKey });
      expect(rotated.status).toBe(200);
      const seqOf = (jws: string) => verifyKeySet(jws, { rootKid: a.ctx.keys().root.kid }).seq;
      expect(seqOf(await currentKeySet(a))).toBe(2);
      // Not yet: the other instances still sign with set 1 until they look.
      expect(seqOf(await currentKeySet(shared))).toBe(1);

      expect(await syncKeys(shared.ctx)).toBe("reloaded");
      expect(await currentKeySet(shared)).toBe(await currentKeySet(a));
      expect(shared.ctx.keys().signing.publication.kid).toBe(a.ctx.keys().signing.publication.kid);
      expect((await shared.call("GET", "/readyz")).status).toBe(200);

      expect(await syncKeys(stale.ctx)).toBe("stale");
      expect(seqOf(await currentKeySet(stale))).toBe(1);
      const notReady = await stale.call("GET", "/readyz");
      expect([notReady.status, notReady.json.status]).toEqual([503, "not_ready"]);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
  it("a rotation made on two instances at once: the one the database did not record is a conflict", async () => {
    const a = await start({ backend: "postgres", groups });
    const copy = mkdtempSync(join(tmpdir(), "agentd-keys-copy-"));
    try {
      // b has its own copy of the key directory (not shared with a).
      cpSync(a.keysDir, copy, { recursive: true });
      const b = await start({ groups, databaseUrl: a.databaseUrl, keysDir: copy });
      const seqOf = (jws: string) => verifyKeySet(jws, { rootKid: a.ctx.keys().root.kid }).seq;
      // Both rotate to seq 2; the database records a's, b's record is refused.
      expect((await a.call("POST", "/v1/admin/keys/rotate", { apiKey: a.adminKey })).status).toBe(
        200,
      );
      const late = await b.call("POST", "/v1/admin/keys/rotate", { apiKey: b.adminKey });
      expect([late.status, late.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
      // b signs with its own seq-2 set now: the same seq as the database's, other keys.
      expect(seqOf(await currentKeySet(b))).toBe(2);
      expect(await currentKeySet(b)).not.toBe(await currentKeySet(a));
      expect(await syncKeys(a.ctx)).toBe("current");
      expect(await syncKeys(b.ctx)).toBe("conflict");
      const notReady = await b.call("GET", "/readyz");
      expect([notReady.status, notReady.json.status]).toEqual([503, "not_ready"]);
      expect((await a.call("GET", "/readyz")).status).toBe(200);
      // Fixed by copying a's directory over b's: b then loads the database's set.
      rmSync(copy, { recursive: true, force: true });
      cpSync(a.keysDir, copy, { recursive: true });
      expect(await syncKeys(b.ctx)).toBe("reloaded");
      expect(await currentKeySet(b)).toBe(await currentKeySet(a));
      expect((await b.call("GET", "/readyz")).status).toBe(200);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
});
