import { describe, expect, it } from "vitest";
import { expectCode, hex, OWNER, type StoreFixture, seed, T0, WORKER } from "./harness.ts";

export function workersSuite(f: StoreFixture): void {
  describe("workers", () => {
    it("registers and gets a worker with its facts and the default cohort", async () => {
      const s = f.store();
      await seed(s);
      const w = await s.getWorker(WORKER);
      expect(w).toEqual({
        worker_id: WORKER,
        owner_id: OWNER,
        jwk: { kty: "OKP", crv: "Ed25519", x: WORKER },
        facts: { os: "linux", cores: 4 },
        cohort: "default",
        registered_at: T0,
        quarantine: null,
        machine_id_sha256: null,
        attestation: null,
        last_counter: 0,
        last_seen: null,
        consent_seq: null,
        publication_version: null,
        last_event_id: 0,
        decommissioned_at: null,
      });
      expect(await s.getWorker("nope")).toBeNull();
    });

    it("refuses a second registration and an unknown owner", async () => {
      const s = f.store();
      await seed(s);
      const w = { worker_id: WORKER, owner_id: OWNER, jwk: {}, facts: {}, registered_at: T0 };
      await expectCode(s.registerWorker(w), "AGENTD_E_CP_CONFLICT");
      await expectCode(
        s.registerWorker({ ...w, worker_id: "x", owner_id: "nobody" }),
        "AGENTD_E_CP_NOT_FOUND",
      );
    });

    it("lists by owner and/or cohort, in id order, with a cursor", async () => {
      const s = f.store();
      await seed(s, ["w3", "w1"]);
      await s.createOwner({ id: "other", jwk: {}, created_at: T0 });
      const base = { jwk: {}, facts: {}, registered_at: T0 };
      await s.registerWorker({ ...base, worker_id: "w2", owner_id: OWNER, cohort: "canary" });
      await s.registerWorker({ ...base, worker_id: "w4", owner_id: "other", cohort: "canary" });
      const ids = async (q: Parameters<typeof s.listWorkers>[0]) =>
        (await s.listWorkers(q)).map((w) => w.worker_id);
      expect(await ids({})).toEqual(["w1", "w2", "w3", "w4"]);
      expect(await ids({ owner_id: OWNER })).toEqual(["w1", "w2", "w3"]);
      expect(await ids({ cohort: "canary" })).toEqual(["w2", "w4"]);
      expect(await ids({ owner_id: OWNER, cohort: "canary" })).toEqual(["w2"]);
      expect(await ids({ limit: 2 })).toEqual(["w1", "w2"]);
      expect(await ids({ after: "w2", limit: 2 })).toEqual(["w3", "w4"]);
    });

    it("sets and lifts a quarantine", async () => {
      const s = f.store();
      await seed(s);
      const q = await s.setQuarantine(WORKER, { reason: "clone", at: T0 + 5 });
      expect(q.quarantine).toEqual({ reason: "clone", at: T0 + 5 });
      expect((await s.getWorker(WORKER))?.quarantine).toEqual({ reason: "clone", at: T0 + 5 });
      expect((await s.setQuarantine(WORKER, null)).quarantine).toBeNull();
      await expectCode(s.setQuarantine("nope", null), "AGENTD_E_CP_NOT_FOUND");
    });

    it("liftQuarantine lifts only a quarantine there is, and never a decommissioned worker's", async () => {
      const s = f.store();
      await seed(s, [WORKER, "w2"]);
      const reason = async (p: Promise<unknown>) => {
        const e = await p.then(
          () => null,
          (err: unknown) => err,
        );
        return (e as { context?: { reason?: unknown } } | null)?.context?.reason;
      };
      expect(await reason(s.liftQuarantine(WORKER))).toBe("not_quarantined");
      await s.setQuarantine(WORKER, { reason: "clone", at: T0 + 5 });
      const lifted = await s.liftQuarantine(WORKER, {
        audit: (r) => ({
          actor: "apikey:op",
          type: "worker.quarantine_lifted",
          object: `worker:${r.worker.worker_id}`,
          data: { reason: r.lifted.reason },
        }),
      });
      expect(lifted.lifted).toEqual({ reason: "clone", at: T0 + 5 });
      expect(lifted.worker.quarantine).toBeNull();
      expect((await s.getWorker(WORKER))?.quarantine).toBeNull();
      expect((await s.listAudit({ type: "worker.quarantine_lifted" })).map((e) => e.data)).toEqual([
        { reason: "clone" },
      ]);
      expect(await reason(s.liftQuarantine(WORKER))).toBe("not_quarantined");
      await expectCode(s.liftQuarantine("nope"), "AGENTD_E_CP_NOT_FOUND");
      await s.setQuarantine("w2", { reason: "x", at: T0 });
      await s.storeRevocation({
        worker_id: "w2",
        kind: "decommission",
        through_seq: null,
        jws: "d",
        at: T0,
      });
      expect(await reason(s.liftQuarantine("w2"))).toBe("decommissioned");
      expect((await s.getWorker("w2"))?.quarantine).toEqual({ reason: "x", at: T0 });
    });

    it("keeps the first machine id and reports a different later one as a clone", async () => {
      const s = f.store();
      await seed(s);
      const a = { worker_id: WORKER, machine_id_sha256: hex("1"), binary_sha256: hex("b") };
      const first = await s.recordAttestation({ ...a, binary_allowed: true, at: T0 });
      expect(first).toEqual({
        ...a,
        verdict: "ok",
        at: T0,
        expected_machine_id_sha256: hex("1"),
      });
      const unknownBinary = await s.recordAttestation({ ...a, binary_allowed: false, at: T0 + 1 });
      expect(unknownBinary.verdict).toBe("unknown_binary");
      const clone = await s.recordAttestation({
        ...a,
        machine_id_sha256: hex("2"),
        binary_allowed: true,
        at: T0 + 2,
      });
      expect(clone.verdict).toBe("clone");
      expect(clone.expected_machine_id_sha256).toBe(hex("1"));
      const w = await s.getWorker(WORKER);
      expect(w?.machine_id_sha256).toBe(hex("1"));
      expect(w?.attestation).toEqual({
        machine_id_sha256: hex("2"),
        binary_sha256: hex("b"),
        verdict: "clone",
        at: T0 + 2,
      });
      await expectCode(
        s.recordAttestation({ ...a, worker_id: "nope", binary_allowed: true, at: T0 }),
        "AGENTD_E_CP_NOT_FOUND",
      );
    });
  });

  describe("machine authentication", () => {
    it("attestation challenges are single use and bound to their worker", async () => {
      const s = f.store();
      await seed(s);
      await s.createAttestationChallenge({ nonce: "n1", worker_id: WORKER, expires_at: T0 + 60 });
      await s.createAttestationChallenge({ nonce: "n2", worker_id: null, expires_at: T0 + 60 });
      await s.createAttestationChallenge({ nonce: "n3", worker_id: WORKER, expires_at: T0 + 60 });
      await expectCode(
        s.createAttestationChallenge({ nonce: "n1", worker_id: null, expires_at: T0 }),
        "AGENTD_E_CP_CONFLICT",
      );
      expect(await s.consumeAttestationChallenge("n1", "other", T0)).toEqual({
        ok: false,
        reason: "mismatch",
      });
      expect(await s.consumeAttestationChallenge("n1", WORKER, T0)).toEqual({ ok: true });
      expect(await s.consumeAttestationChallenge("n1", WORKER, T0)).toEqual({
        ok: false,
        reason: "used",
      });
      expect(await s.consumeAttestationChallenge("n2", "anyone", T0)).toEqual({ ok: true });
      expect(await s.consumeAttestationChallenge("n3", WORKER, T0 + 60)).toEqual({
        ok: false,
        reason: "expired",
      });
      expect(await s.consumeAttestationChallenge("n9", WORKER, T0)).toEqual({
        ok: false,
        reason: "unknown",
      });
    });

    it("access tokens are found while valid and deleted per worker", async () => {
      const s = f.store();
      await seed(s);
      const t = { token_sha256: hex("t"), worker_id: WORKER, expires_at: T0 + 300 };
      await s.createAccessToken(t);
      await s.createAccessToken({ ...t, token_sha256: hex("u") });
      await expectCode(s.createAccessToken(t), "AGENTD_E_CP_CONFLICT");
      await expectCode(
        s.createAccessToken({ ...t, token_sha256: hex("v"), worker_id: "nope" }),
        "AGENTD_E_CP_NOT_FOUND",
      );
      expect(await s.findAccessToken(hex("t"), T0 + 299)).toEqual(t);
      expect(await s.findAccessToken(hex("t"), T0 + 300)).toBeNull();
      expect(await s.findAccessToken(hex("x"), T0)).toBeNull();
      expect(await s.deleteAccessTokens(WORKER)).toBe(2);
      expect(await s.findAccessToken(hex("u"), T0)).toBeNull();
    });

    it("an access token and its worker are found in one call, under the same rules", async () => {
      const s = f.store();
      await seed(s);
      const t = { token_sha256: hex("t"), worker_id: WORKER, expires_at: T0 + 300 };
      await s.createAccessToken(t);
      const found = await s.findAccessTokenWorker(hex("t"), T0 + 299);
      expect(found?.token).toEqual(t);
      expect(found?.worker).toEqual(await s.getWorker(WORKER));
      expect(await s.findAccessTokenWorker(hex("t"), T0 + 300)).toBeNull();
      expect(await s.findAccessTokenWorker(hex("x"), T0)).toBeNull();
    });

    it("jtis submitted together commit together, each answered as if alone", async () => {
      const s = f.store();
      await seed(s);
      expect(await s.useJti("old", WORKER, T0 + 120, T0)).toBe(true);
      // Submitted in one turn of the event loop: one group commit, duplicates inside it.
      const answers = await Promise.all(
        ["a", "b", "a", "old", "c", "b"].map((j) => s.useJti(j, WORKER, T0 + 120, T0)),
      );
      expect(answers).toEqual([true, true, false, false, true, false]);
      expect(await s.useJti("c", WORKER, T0 + 120, T0)).toBe(false);
    });

    it("a request-proof jti is accepted once; expired entries are purged", async () => {
      const s = f.store();
      await seed(s);
      expect(await s.useJti("j1", WORKER, T0 + 120, T0)).toBe(true);
      expect(await s.useJti("j1", WORKER, T0 + 120, T0)).toBe(false);
      expect(await s.useJti("j1", "other", T0 + 500, T0 + 1)).toBe(false);
      expect(await s.useJti("j2", WORKER, T0 + 240, T0)).toBe(true);
      await s.createAttestationChallenge({ nonce: "n", worker_id: null, expires_at: T0 + 1 });
      await s.createAccessToken({ token_sha256: hex("t"), worker_id: WORKER, expires_at: T0 + 1 });
      expect(await s.purgeExpired(T0 + 120)).toEqual({ jtis: 1, challenges: 1, access_tokens: 1 });
      // j1 is gone (its proof's iat is long outside the accepted skew), j2 is still known.
      expect(await s.useJti("j1", WORKER, T0 + 240, T0 + 120)).toBe(true);
      expect(await s.useJti("j2", WORKER, T0 + 240, T0 + 120)).toBe(false);
    });

    it("useJti purges expired entries by itself now and then", async () => {
      const s = f.store();
      await seed(s);
      await s.useJti("old", WORKER, T0 + 1, T0);
      // 256 calls include at least one purge at T0 + 10.
      for (let i = 0; i < 256; i++) await s.useJti(`j${i}`, WORKER, T0 + 500, T0 + 10);
      expect((await s.purgeExpired(T0 + 10)).jtis).toBe(0);
    });
  });
}
