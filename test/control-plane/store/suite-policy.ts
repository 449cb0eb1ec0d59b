import { describe, expect, it } from "vitest";
import type { Consent } from "../../../control-plane/store/store.ts";
import { expectCode, hex, OWNER, type StoreFixture, seed, T0, WORKER } from "./harness.ts";

const consent = (seq: number): Consent => ({
  identity: hex(String(seq % 10)),
  worker_id: WORKER,
  owner_id: OWNER,
  seq,
  jws: `consent-${seq}`,
  exp: T0 + 86400,
  accepted_at: T0 + seq,
});

const MAX = Number.MAX_SAFE_INTEGER;

/** What acceptConsentAndPublish (and publish, with the worker and consent) is given. */
const publishAt = (now_ms: number, expect_version: number | null) => ({
  iat: T0,
  exp: T0 + 3600,
  stop: false,
  now_ms,
  expect_version,
});

export function policySuite(f: StoreFixture): void {
  describe("consents", () => {
    it("accepts strictly increasing seqs per worker", async () => {
      const s = f.store();
      await seed(s);
      expect(await s.latestConsent(WORKER)).toBeNull();
      await s.acceptConsent(consent(1));
      await s.acceptConsent(consent(3));
      await expectCode(s.acceptConsent(consent(3)), "AGENTD_E_CP_CONFLICT");
      await expectCode(
        s.acceptConsent({ ...consent(2), identity: hex("z") }),
        "AGENTD_E_CP_CONFLICT",
      );
      expect(await s.latestConsent(WORKER)).toEqual(consent(3));
      expect(await s.getConsent(hex("1"))).toEqual(consent(1));
      expect(await s.getConsent(hex("9"))).toBeNull();
      expect((await s.getWorker(WORKER))?.consent_seq).toBe(3);
    });

    it("refuses another owner's consent, an unknown worker and a stored identity", async () => {
      const s = f.store();
      await seed(s);
      await expectCode(s.acceptConsent({ ...consent(1), owner_id: "x" }), "AGENTD_E_CP_FORBIDDEN");
      await expectCode(s.acceptConsent({ ...consent(1), worker_id: "x" }), "AGENTD_E_CP_NOT_FOUND");
      await s.acceptConsent(consent(1));
      await expectCode(
        s.acceptConsent({ ...consent(2), identity: hex("1") }),
        "AGENTD_E_CP_CONFLICT",
      );
      expect((await s.getWorker(WORKER))?.consent_seq).toBe(1);
    });
  });

  describe("consent compare-and-set", () => {
    const reasonOf = async (p: Promise<unknown>) => {
      const e = await p.then(
        () => null,
        (err: unknown) => err,
      );
      const x = e as { code?: unknown; context?: { reason?: unknown } } | null;
      return [x?.code, x?.context?.reason];
    };
    const pub = (expect_version: number | null) => ({
      iat: T0,
      exp: T0 + 3600,
      stop: false,
      now_ms: 1000,
      expect_version,
    });

    it("acceptConsent decides revocation and decommission itself, under the worker's lock", async () => {
      const s = f.store();
      await seed(s, [WORKER, "w2"]);
      await s.acceptConsent(consent(1));
      await s.storeRevocation({
        worker_id: WORKER,
        kind: "revocation",
        through_seq: 3,
        jws: "r",
        at: T0,
      });
      // The API read no revocation; the store finds it: a covered seq is refused, not stored.
      expect(await reasonOf(s.acceptConsent(consent(2)))).toEqual([
        "AGENTD_E_CP_CONFLICT",
        "revoked",
      ]);
      expect(await reasonOf(s.acceptConsent(consent(3)))).toEqual([
        "AGENTD_E_CP_CONFLICT",
        "revoked",
      ]);
      expect(await reasonOf(s.acceptConsent(consent(1)))).toEqual(["AGENTD_E_CP_CONFLICT", "seq"]);
      await s.acceptConsent(consent(4));
      expect((await s.latestConsent(WORKER))?.seq).toBe(4);
      await s.storeRevocation({
        worker_id: "w2",
        kind: "decommission",
        through_seq: null,
        jws: "d",
        at: T0,
      });
      await expectCode(
        s.acceptConsent({ ...consent(1), worker_id: "w2", identity: hex("e") }),
        "AGENTD_E_CP_FORBIDDEN",
      );
      expect(await s.latestConsent("w2")).toBeNull();
    });

    it("acceptConsentAndPublish stores the consent only with its own publication", async () => {
      const s = f.store();
      await seed(s);
      const build = (v: number) => `pub-${v}`;
      const first = await s.acceptConsentAndPublish(consent(1), pub(null), build, {
        audit: (r) => ({
          actor: "a",
          type: "consent.accepted",
          object: r.consent.identity,
          data: { version: r.publication.version },
        }),
      });
      expect(first.publication).toMatchObject({
        consent_identity: consent(1).identity,
        jws: "pub-1000",
      });
      expect(first.event).toMatchObject({ kind: "publication", ref: "1000" });
      // A plan made before `first` was committed: refused, and the consent is not stored either.
      expect(await reasonOf(s.acceptConsentAndPublish(consent(2), pub(null), build))).toEqual([
        "AGENTD_E_CP_CONFLICT",
        "stale_plan",
      ]);
      expect((await s.latestConsent(WORKER))?.seq).toBe(1);
      expect((await s.getWorker(WORKER))?.consent_seq).toBe(1);
      // A seq not above the stored one: nothing published.
      expect(
        await reasonOf(
          s.acceptConsentAndPublish(consent(1), pub(first.publication.version), build),
        ),
      ).toEqual(["AGENTD_E_CP_CONFLICT", "seq"]);
      const second = await s.acceptConsentAndPublish(
        consent(2),
        pub(first.publication.version),
        build,
      );
      expect(second.publication.consent_identity).toBe(consent(2).identity);
      // Consent 2's versions start afresh, at now_ms — which consent 1's publication holds
      // (the same millisecond): the next free version is taken.
      expect(second.publication.version).toBe(1001);
      expect(await s.latestPublication(WORKER)).toEqual(second.publication);
      expect((await s.listAudit({ type: "consent.accepted" })).length).toBe(1);
    });

    it("publish with expect_latest_consent never countersigns a consent superseded since", async () => {
      const s = f.store();
      await seed(s);
      await s.acceptConsent(consent(1));
      const input = {
        worker_id: WORKER,
        consent_identity: consent(1).identity,
        iat: T0,
        exp: T0 + 3600,
        stop: true,
        now_ms: 1000,
        expect_version: null,
        expect_latest_consent: true,
      };
      // A plan that read consent 1, committed after consent 3 was accepted: stale.
      await s.acceptConsent(consent(3));
      expect(await reasonOf(s.publish(input, String))).toEqual([
        "AGENTD_E_CP_CONFLICT",
        "stale_plan",
      ]);
      expect(await s.latestPublication(WORKER)).toBeNull();
      const ok = await s.publish({ ...input, consent_identity: consent(3).identity }, String);
      expect(ok.publication.consent_identity).toBe(consent(3).identity);
    });
  });

  describe("publications", () => {
    const input = (now_ms: number) => ({
      worker_id: WORKER,
      consent_identity: hex("1"),
      iat: T0,
      exp: T0 + 3600,
      stop: false,
      now_ms,
    });

    it("publish with expect_version commits only over the version the plan saw", async () => {
      const s = f.store();
      await seed(s);
      const build = (v: number) => `pub-${v}`;
      // No publication yet: null matches, a number does not.
      await expectCode(
        s.publish({ ...input(1000), expect_version: 7 }, build),
        "AGENTD_E_CP_CONFLICT",
      );
      expect(await s.latestPublication(WORKER)).toBeNull();
      const first = (await s.publish({ ...input(1000), expect_version: null }, build)).publication;
      // A plan made before `first` is stale now: refused with its reason, nothing stored.
      let stale: unknown;
      try {
        await s.publish({ ...input(2000), stop: false, expect_version: null }, build);
      } catch (err) {
        stale = err;
      }
      expect(stale).toMatchObject({
        code: "AGENTD_E_CP_CONFLICT",
        context: { reason: "stale_plan", expected: "none", found: first.version },
      });
      expect((await s.latestPublication(WORKER))?.version).toBe(first.version);
      const second = (
        await s.publish({ ...input(2000), stop: true, expect_version: first.version }, build)
      ).publication;
      expect([second.version, second.stop]).toEqual([2000, true]);
      // Two plans from the same state, committed at once: exactly one wins.
      const racing = await Promise.allSettled(
        [false, true].map((stop) =>
          s.publish({ ...input(3000), stop, expect_version: second.version }, build),
        ),
      );
      expect(racing.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
      await expectCode(
        s.publish({ ...input(1), expect_version: 99 }, build),
        "AGENTD_E_CP_CONFLICT",
      );
    });

    it("versions are max(last + 1, now_ms): time-based and never down", async () => {
      const s = f.store();
      await seed(s);
      const built: number[] = [];
      const build = (v: number) => {
        built.push(v);
        return `pub-${v}`;
      };
      const versions: number[] = [];
      for (const now of [1000, 1000, 5000, 10]) {
        versions.push((await s.publish(input(now), build)).publication.version);
      }
      expect(versions).toEqual([1000, 1001, 5000, 5001]);
      expect(built).toEqual(versions);
      expect(await s.allocateVersion(WORKER, hex("1"), 20)).toBe(5002);
      const latest = await s.latestPublication(WORKER);
      expect(latest).toEqual({
        worker_id: WORKER,
        version: 5001,
        consent_identity: hex("1"),
        jws: "pub-5001",
        iat: T0,
        exp: T0 + 3600,
        stop: false,
      });
      expect((await s.getWorker(WORKER))?.publication_version).toBe(5001);
    });

    it("publish appends a publication stream event in the same transaction", async () => {
      const s = f.store();
      await seed(s);
      const { event } = await s.publish(input(7000), (v) => `pub-${v}`);
      expect(event).toEqual({ worker_id: WORKER, id: 1, kind: "publication", ref: "7000", at: T0 });
      expect(await s.streamEventsSince(WORKER, 0)).toEqual([event]);
    });

    it("storePublication: the latest pointer only moves up; a stored version is a conflict", async () => {
      const s = f.store();
      await seed(s);
      const v1 = await s.allocateVersion(WORKER, null, 100);
      const v2 = await s.allocateVersion(WORKER, null, 100);
      expect([v1, v2]).toEqual([100, 101]);
      const pub = (version: number, stop = false) => ({
        worker_id: WORKER,
        version,
        consent_identity: null,
        jws: `p${version}`,
        iat: T0,
        exp: T0 + 10,
        stop,
      });
      await s.storePublication(pub(v2, true));
      await s.storePublication(pub(v1));
      expect(await s.latestPublication(WORKER)).toEqual(pub(v2, true));
      await expectCode(s.storePublication(pub(v1)), "AGENTD_E_CP_CONFLICT");
      await expectCode(s.storePublication({ ...pub(5), worker_id: "x" }), "AGENTD_E_CP_NOT_FOUND");
      await expectCode(s.publish({ ...input(1), worker_id: "x" }, String), "AGENTD_E_CP_NOT_FOUND");
      // A version stored without allocation still raises the allocator.
      await s.storePublication(pub(900));
      expect(await s.allocateVersion(WORKER, null, 0)).toBe(901);
    });

    it("versions are per consent: 2^53 − 1 spent under one consent locks out nothing under the next", async () => {
      const s = f.store();
      await seed(s);
      const c1 = consent(1);
      const c2 = consent(2);
      const build = (v: number) => `pub-${v}`;
      const first = await s.acceptConsentAndPublish(c1, publishAt(5000, null), build);
      // A stolen key's publication stored, or the database edited: consent 1's versions are
      // spent and the latest pointer is at 2^53 − 1.
      await s.storePublication({
        worker_id: WORKER,
        version: MAX,
        consent_identity: c1.identity,
        jws: "stolen",
        iat: T0,
        exp: T0 + 3600,
        stop: false,
      });
      expect((await s.latestPublication(WORKER))?.version).toBe(MAX);
      const spent = await s
        .publish(
          { ...publishAt(6000, MAX), worker_id: WORKER, consent_identity: c1.identity },
          build,
        )
        .then(
          () => null,
          (e: unknown) => e,
        );
      expect(spent).toMatchObject({
        code: "AGENTD_E_CP_CONFLICT",
        context: { reason: "counter_exhausted", counter: "last_version" },
      });
      // The owner's consent 2 is published with a fresh, time-based version, which becomes
      // the latest although it is lower.
      const second = await s.acceptConsentAndPublish(c2, publishAt(7000, MAX), build);
      expect(second.publication).toMatchObject({ version: 7000, consent_identity: c2.identity });
      expect(await s.latestPublication(WORKER)).toEqual(second.publication);
      expect((await s.getWorker(WORKER))?.publication_version).toBe(7000);
      // Within consent 2 versions go up again; the pointer follows.
      const next = await s.publish(
        {
          ...publishAt(10, 7000),
          worker_id: WORKER,
          consent_identity: c2.identity,
          expect_latest_consent: true,
        },
        build,
      );
      expect(next.publication.version).toBe(7001);
      expect((await s.latestPublication(WORKER))?.version).toBe(7001);
      // A publication of the older consent stored behind the API's back moves nothing: not
      // the latest pointer, not consent 2's versions.
      await s.storePublication({
        worker_id: WORKER,
        version: MAX - 1,
        consent_identity: c1.identity,
        jws: "stolen-again",
        iat: T0,
        exp: T0 + 3600,
        stop: false,
      });
      expect((await s.latestPublication(WORKER))?.version).toBe(7001);
      expect(await s.allocateVersion(WORKER, c2.identity, 10)).toBe(7002);
      expect(first.publication.version).toBe(5000);
    });

    it("a database edited to 2^53 − 1 (counters and latest pointer) recovers with the owner's next consent", async () => {
      let s = f.store();
      await seed(s);
      const c1 = consent(1);
      const cmd = (cmd_id: string, consent_identity: string) => ({
        cmd_id,
        worker_id: WORKER,
        action: "mining.pause",
        args: {},
        iat: T0,
        exp: T0 + 60,
        now_ms: 6000,
        consent_identity,
      });
      await s.acceptConsentAndPublish(c1, publishAt(5000, null), String);
      await s.issueCommand(cmd("a0", c1.identity), String);
      await f.close(s);
      await f.backend.raw(
        f.url(),
        `UPDATE workers SET last_version = ${MAX}, last_command_seq = ${MAX}, pub_version = ${MAX}`,
      );
      s = await f.open();
      // The pointer names nothing stored: no latest publication, and a plan that saw none
      // commits — but consent 1's versions are spent.
      expect(await s.latestPublication(WORKER)).toBeNull();
      for (const attempt of [
        s.publish(
          { ...publishAt(6000, null), worker_id: WORKER, consent_identity: c1.identity },
          String,
        ),
        s.issueCommand(cmd("a", c1.identity), String),
      ]) {
        expect(
          await attempt.then(
            () => null,
            (e: unknown) => e,
          ),
        ).toMatchObject({
          code: "AGENTD_E_CP_CONFLICT",
          context: { reason: "counter_exhausted" },
        });
      }
      const c2 = consent(2);
      const second = await s.acceptConsentAndPublish(c2, publishAt(7000, null), String);
      expect(second.publication.version).toBe(7000);
      expect(await s.latestPublication(WORKER)).toEqual(second.publication);
      // 6000 is command a0's (consent 1): the next free seq.
      expect((await s.issueCommand(cmd("b", c2.identity), String)).command.seq).toBe(6001);
    });

    it("lists the latest publications expiring before a time, skipping decommissioned workers", async () => {
      const s = f.store();
      await seed(s, ["a", "b", "c", "d"]);
      const exp = { a: 50, b: 10, c: 500, d: 20 } as const;
      for (const [w, e] of Object.entries(exp)) {
        await s.publish({ ...input(1), worker_id: w, exp: T0 + e }, (v) => `${w}${v}`);
      }
      // A newer publication for "b" moves it out of the queue.
      await s.publish({ ...input(2), worker_id: "b", exp: T0 + 1000 }, (v) => `b${v}`);
      await s.storeRevocation({
        worker_id: "d",
        kind: "decommission",
        through_seq: null,
        jws: "x",
        at: T0,
      });
      const due = await s.listPublicationsExpiringBefore(T0 + 100);
      expect(due.map((p) => [p.worker_id, p.exp])).toEqual([["a", T0 + 50]]);
      expect(
        (await s.listPublicationsExpiringBefore(T0 + 10_000, 2)).map((p) => p.worker_id),
      ).toEqual(["a", "c"]);
      // Paging: strictly after (exp, worker id); ties on exp are ordered by worker id.
      await s.publish({ ...input(2), worker_id: "a", exp: T0 + 500 }, (v) => `a${v}`);
      const page = (after?: { exp: number; worker_id: string }) =>
        s
          .listPublicationsExpiringBefore(T0 + 10_000, 1, after)
          .then((ps) => ps.map((p) => [p.worker_id, p.exp - T0]));
      expect(await page()).toEqual([["a", 500]]);
      expect(await page({ exp: T0 + 500, worker_id: "a" })).toEqual([["c", 500]]);
      expect(await page({ exp: T0 + 500, worker_id: "c" })).toEqual([["b", 1000]]);
      expect(await page({ exp: T0 + 1000, worker_id: "b" })).toEqual([]);
    });
  });

  describe("revocations and decommissions", () => {
    it("stores them, appends their stream events and marks a decommission", async () => {
      const s = f.store();
      await seed(s);
      const r1 = await s.storeRevocation({
        worker_id: WORKER,
        kind: "revocation",
        through_seq: 3,
        jws: "rev",
        at: T0 + 1,
      });
      const r2 = await s.storeRevocation({
        worker_id: WORKER,
        kind: "decommission",
        through_seq: null,
        jws: "dec",
        at: T0 + 2,
      });
      expect(r2.revocation.id).toBeGreaterThan(r1.revocation.id);
      expect(r1.event).toMatchObject({ id: 1, kind: "revocation", ref: String(r1.revocation.id) });
      expect(r2.event).toMatchObject({
        id: 2,
        kind: "decommission",
        ref: String(r2.revocation.id),
      });
      expect(await s.listRevocations(WORKER)).toEqual([r1.revocation, r2.revocation]);
      expect(await s.listRevocations("other")).toEqual([]);
      expect((await s.getWorker(WORKER))?.decommissioned_at).toBe(T0 + 2);
      await expectCode(
        s.storeRevocation({ ...r1.revocation, worker_id: "nope" }),
        "AGENTD_E_CP_NOT_FOUND",
      );
    });

    it("stores one document once, also when copies race", async () => {
      const s = f.store();
      await seed(s);
      const doc = {
        worker_id: WORKER,
        kind: "revocation",
        through_seq: 1,
        jws: "r",
        at: T0,
      } as const;
      const results = await Promise.allSettled([1, 2, 3, 4].map(() => s.storeRevocation(doc)));
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      for (const r of results) {
        if (r.status === "rejected") {
          expect(r.reason).toMatchObject({
            code: "AGENTD_E_CP_CONFLICT",
            context: { reason: "duplicate" },
          });
        }
      }
      expect(await s.listRevocations(WORKER)).toHaveLength(1);
    });
  });
}
