import { describe, expect, it } from "vitest";
import { expectCode, hex, OWNER, type StoreFixture, seed, T0 } from "./harness.ts";

export function identitySuite(f: StoreFixture): void {
  describe("API keys", () => {
    it("creates, finds by hash and counts by role; refuses duplicates", async () => {
      const s = f.store();
      await seed(s, []);
      expect(await s.countApiKeys()).toBe(0);
      const admin = {
        id: "k1",
        role: "admin" as const,
        owner_id: null,
        key_sha256: hex("a"),
        created_at: T0,
        created_by: null,
      };
      expect(await s.createApiKey(admin)).toEqual(admin);
      const owner = {
        ...admin,
        id: "k2",
        role: "owner" as const,
        owner_id: OWNER,
        key_sha256: hex("b"),
        created_by: "k1",
      };
      await s.createApiKey(owner);
      expect(await s.findApiKeyBySha256(hex("b"))).toEqual(owner);
      expect(await s.findApiKeyBySha256(hex("c"))).toBeNull();
      expect(await s.countApiKeys()).toBe(2);
      expect(await s.countApiKeys("admin")).toBe(1);
      expect(await s.countApiKeys("operator")).toBe(0);
      await expectCode(s.createApiKey({ ...admin, key_sha256: hex("d") }), "AGENTD_E_CP_CONFLICT");
      await expectCode(s.createApiKey({ ...admin, id: "k3" }), "AGENTD_E_CP_CONFLICT");
      await expectCode(
        s.createApiKey({ ...owner, id: "k4", key_sha256: hex("e"), owner_id: "nobody" }),
        "AGENTD_E_CP_NOT_FOUND",
      );
      await expectCode(
        s.createApiKey({ ...admin, id: "k5", key_sha256: hex("f"), role: "owner" }),
        "AGENTD_E_INTERNAL",
      );
      expect(await s.countApiKeys()).toBe(2);
    });
  });

  describe("API key revocation", () => {
    const key = (id: string, role: "admin" | "operator", sha: string) => ({
      id,
      role,
      owner_id: null,
      key_sha256: hex(sha),
      created_at: T0,
      created_by: null,
    });

    it("revokes for good: never found again, never re-created, never the last admin", async () => {
      const s = f.store();
      await s.createApiKey(key("a1", "admin", "a"));
      await s.createApiKey(key("a2", "admin", "b"));
      await s.createApiKey(key("op", "operator", "c"));
      const revoked = await s.revokeApiKey("op", "a1", T0 + 5, {
        audit: (k) => ({ actor: "apikey:a1", type: "apikey.revoked", object: k.id, data: {} }),
      });
      expect(revoked).toEqual({
        ...key("op", "operator", "c"),
        revoked_at: T0 + 5,
        revoked_by: "a1",
      });
      expect(await s.findApiKeyBySha256(hex("c"))).toBeNull();
      expect(await s.countApiKeys("operator")).toBe(0);
      expect((await s.listAudit({ type: "apikey.revoked" })).map((e) => e.object)).toEqual(["op"]);
      // Revoked once; its id and its hash stay taken.
      await expectCode(s.revokeApiKey("op", "a1", T0 + 6), "AGENTD_E_CP_CONFLICT");
      await expectCode(s.createApiKey(key("op", "operator", "d")), "AGENTD_E_CP_CONFLICT");
      await expectCode(s.createApiKey(key("op2", "operator", "c")), "AGENTD_E_CP_CONFLICT");
      expect(await s.findApiKeyBySha256(hex("c"))).toBeNull();
      await expectCode(s.revokeApiKey("nope", "a1", T0), "AGENTD_E_CP_NOT_FOUND");
      // Admins: one may go, the last may not.
      await s.revokeApiKey("a2", "a1", T0 + 7);
      let last: unknown;
      try {
        await s.revokeApiKey("a1", "a1", T0 + 8, {
          audit: { actor: "x", type: "never", object: "a1", data: {} },
        });
      } catch (err) {
        last = err;
      }
      expect(last).toMatchObject({
        code: "AGENTD_E_CP_CONFLICT",
        context: { reason: "last_admin" },
      });
      expect(await s.findApiKeyBySha256(hex("a"))).toMatchObject({ id: "a1" });
      expect(await s.countApiKeys("admin")).toBe(1);
      expect(await s.listAudit({ type: "never" })).toEqual([]);
    });
  });

  describe("owners", () => {
    it("creates and gets; a second registration of the same key is a conflict", async () => {
      const s = f.store();
      const owner = { id: "o", jwk: { kty: "OKP", crv: "Ed25519", x: "abc" }, created_at: T0 };
      expect(await s.createOwner(owner)).toEqual(owner);
      expect(await s.getOwner("o")).toEqual(owner);
      expect(await s.getOwner("p")).toBeNull();
      await expectCode(s.createOwner({ ...owner, created_at: T0 + 1 }), "AGENTD_E_CP_CONFLICT");
      expect(await s.getOwner("o")).toEqual(owner);
    });
  });

  describe("enrollment tokens", () => {
    const token = {
      id: "tok",
      owner_id: OWNER,
      secret_sha256: hex("5"),
      created_at: T0,
      expires_at: T0 + 3600,
    };

    it("refuses an unknown owner and a duplicate id", async () => {
      const s = f.store();
      await expectCode(s.createEnrollmentToken(token), "AGENTD_E_CP_NOT_FOUND");
      await seed(s, []);
      await s.createEnrollmentToken(token);
      await expectCode(s.createEnrollmentToken(token), "AGENTD_E_CP_CONFLICT");
    });

    it("is consumed once; names unknown, mismatch, used and expired", async () => {
      const s = f.store();
      await seed(s, []);
      await s.createEnrollmentToken(token);
      await s.createEnrollmentToken({ ...token, id: "old", expires_at: T0 + 10 });
      expect(await s.consumeEnrollmentToken("nope", hex("5"), T0)).toEqual({
        ok: false,
        reason: "unknown",
      });
      expect(await s.consumeEnrollmentToken("tok", hex("6"), T0)).toEqual({
        ok: false,
        reason: "mismatch",
      });
      // A wrong secret does not burn the token.
      expect(await s.consumeEnrollmentToken("tok", hex("5"), T0)).toEqual({
        ok: true,
        owner_id: OWNER,
      });
      expect(await s.consumeEnrollmentToken("tok", hex("5"), T0)).toEqual({
        ok: false,
        reason: "used",
      });
      expect(await s.consumeEnrollmentToken("old", hex("5"), T0 + 10)).toEqual({
        ok: false,
        reason: "expired",
      });
      expect(await s.consumeEnrollmentToken("old", hex("5"), T0 + 9)).toEqual({
        ok: true,
        owner_id: OWNER,
      });
    });

    it("enrollWorker consumes the token and registers the worker in one transaction", async () => {
      const s = f.store();
      await seed(s, ["existing"]);
      await s.createEnrollmentToken(token);
      const worker = { worker_id: "existing", jwk: { x: "1" }, facts: {}, registered_at: T0 };
      const enroll = { token_id: "tok", secret_sha256: hex("5"), now: T0, worker };
      // The worker exists: nothing happens, the token stays usable.
      await expectCode(s.enrollWorker(enroll), "AGENTD_E_CP_CONFLICT");
      const ok = await s.enrollWorker({
        ...enroll,
        worker: { ...worker, worker_id: "new", cohort: "c" },
      });
      expect(ok.ok).toBe(true);
      if (ok.ok) {
        expect(ok.worker.owner_id).toBe(OWNER);
        expect(ok.worker.cohort).toBe("c");
      }
      const again = await s.enrollWorker({ ...enroll, worker: { ...worker, worker_id: "newer" } });
      expect(again).toEqual({ ok: false, reason: "used" });
      expect(await s.getWorker("newer")).toBeNull();
    });
  });
}
