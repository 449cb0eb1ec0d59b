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
