import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { AUDIT_GENESIS } from "../../../control-plane/store/audit-hash.ts";
import { canonicalize } from "../../../lib/json/canonical.ts";
import { expectCode, OWNER, type StoreFixture, seed, T0 } from "./harness.ts";

const ev = (i: number, type = "t.x", object = "o", actor = "a") => ({
  actor,
  type,
  object,
  data: { i, nested: { list: [1, "two", null, true] } },
});

export function auditSuite(f: StoreFixture): void {
  describe("audit log", () => {
    it("chains events: sha256 of the canonical event without hash, genesis 64 zeros", async () => {
      const s = f.store();
      const a = await s.appendAudit(ev(1));
      f.clock.advance(5000);
      const b = await s.appendAudit(ev(2));
      expect(a).toMatchObject({ seq: 1, at: T0, prev_hash: AUDIT_GENESIS, ...ev(1) });
      expect(b).toMatchObject({ seq: 2, at: T0 + 5, prev_hash: a.hash });
      // Recomputed here independently of the store's own helper.
      const { hash, ...body } = b;
      const text = canonicalize(body);
      expect(text.startsWith('{"actor":"a","at":')).toBe(true);
      expect(createHash("sha256").update(text).digest("hex")).toBe(hash);
      expect(await s.verifyAudit()).toEqual({ ok: true, count: 2, head: { seq: 2, hash: b.hash } });
    });

    it("pages with a cursor and filters by type, object and actor", async () => {
      const s = f.store();
      for (let i = 1; i <= 10; i++) {
        await s.appendAudit(
          ev(i, i % 2 === 0 ? "even" : "odd", `o${i % 3}`, i <= 5 ? "alice" : "bob"),
        );
      }
      const seqs = async (q: Parameters<typeof s.listAudit>[0]) =>
        (await s.listAudit(q)).map((e) => e.seq);
      expect(await seqs({ limit: 3 })).toEqual([1, 2, 3]);
      expect(await seqs({ after_seq: 3, limit: 3 })).toEqual([4, 5, 6]);
      expect(await seqs({ after_seq: 9 })).toEqual([10]);
      expect(await seqs({ type: "even" })).toEqual([2, 4, 6, 8, 10]);
      expect(await seqs({ type: "even", after_seq: 4, limit: 2 })).toEqual([6, 8]);
      expect(await seqs({ object: "o0" })).toEqual([3, 6, 9]);
      expect(await seqs({ actor: "bob", type: "odd" })).toEqual([7, 9]);
      expect(await seqs({ limit: 0 })).toEqual([1]);
      expect((await s.listAudit())[0]).toMatchObject(ev(1, "odd", "o1", "alice"));
    });

    it("clamps a page to 1000 events", async () => {
      const s = f.store();
      await seed(s, ["w"]);
      // 1100 events in one transaction (the audit option takes a list).
      await s.setQuarantine("w", null, {
        audit: Array.from({ length: 1100 }, (_, i) => ev(i)),
      });
      expect(await s.listAudit({ limit: 5000 })).toHaveLength(1000);
      expect((await s.verifyAudit()).ok).toBe(true);
    });

    it("the audit option commits with the change; a thrown refusal writes neither", async () => {
      const s = f.store();
      const owner = { id: OWNER, jwk: {}, created_at: T0 };
      await s.createOwner(owner, {
        audit: (o) => ({
          actor: "apikey:k1",
          type: "owner.created",
          object: `owner:${o.id}`,
          data: {},
        }),
      });
      await expectCode(
        s.createOwner(owner, {
          audit: { actor: "x", type: "owner.created", object: "o", data: {} },
        }),
        "AGENTD_E_CP_CONFLICT",
      );
      // A returned refusal is audited: its reason is in the result.
      await s.consumeEnrollmentToken("nope", "s", T0, {
        audit: (r) => ({
          actor: "anon",
          type: "token.refused",
          object: "token:nope",
          data: r.ok ? {} : { reason: r.reason },
        }),
      });
      // An event that cannot be hashed rolls back the change it describes.
      await expectCode(
        s.createOwner(
          { ...owner, id: "o2" },
          { audit: { actor: "x", type: "t", object: "o", data: { bad: Number.NaN } } },
        ),
        "AGENTD_E_JSON_NOT_CANONICALIZABLE",
      );
      expect(await s.getOwner("o2")).toBeNull();
      // null: nothing appended.
      await s.createOwner({ ...owner, id: "o3" }, { audit: () => null });
      const events = await s.listAudit();
      expect(events.map((e) => [e.type, e.object, e.data])).toEqual([
        ["owner.created", `owner:${OWNER}`, {}],
        ["token.refused", "token:nope", { reason: "unknown" }],
      ]);
    });

    it("verify names the first event that was edited, relinked or removed", async () => {
      const s = f.store();
      for (let i = 1; i <= 5; i++) await s.appendAudit(ev(i));
      await f.close(s);
      const url = f.url();
      await f.backend.raw(url, `UPDATE audit_events SET data = '{"i":99}' WHERE seq = 3`);
      expect(await (await f.open(url)).verifyAudit()).toEqual({
        ok: false,
        count: 2,
        seq: 3,
        reason: "hash",
      });
      await f.backend.raw(
        url,
        `UPDATE audit_events SET prev_hash = '${"1".repeat(64)}' WHERE seq = 2`,
      );
      expect(await (await f.open(url)).verifyAudit()).toMatchObject({
        ok: false,
        seq: 2,
        reason: "prev_hash",
      });
      await f.backend.raw(url, "DELETE FROM audit_events WHERE seq = 1");
      expect(await (await f.open(url)).verifyAudit()).toEqual({
        ok: false,
        count: 0,
        seq: 1,
        reason: "seq_gap",
      });
    });

    it("an empty log verifies", async () => {
      expect(await f.store().verifyAudit()).toEqual({ ok: true, count: 0, head: null });
    });
  });
}
