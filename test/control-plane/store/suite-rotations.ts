import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { OwnerRotationInput } from "../../../control-plane/store/store.ts";
import { expectCode, hex, OWNER, type StoreFixture, seed, T0, WORKER } from "./harness.ts";

/** A rotation of WORKER's owner key `from` → `to`, dated `iat` (its identity: of its text). */
export function rotation(from: string, to: string, iat: number): OwnerRotationInput {
  const jws = `rotation-${from}-${to}-${iat}`;
  return {
    worker_id: WORKER,
    identity: createHash("sha256").update(jws).digest("hex"),
    from_owner: from,
    to_owner: to,
    new_owner_jwk: { kty: "OKP", crv: "Ed25519", x: to },
    iat,
    jws,
    at: iat,
  };
}

const reasonOf = async (p: Promise<unknown>) => {
  const e = (await p.then(
    () => null,
    (err: unknown) => err,
  )) as { code?: unknown; context?: { reason?: unknown } } | null;
  return [e?.code, e?.context?.reason];
};

export function rotationsSuite(f: StoreFixture): void {
  describe("owner-key rotations", () => {
    it("stores a chain from the owner's key on, in order, each with its stream event", async () => {
      const s = f.store();
      await seed(s);
      const a = await s.storeOwnerRotation(
        { ...rotation(OWNER, "b", T0), identity: hex("a") },
        {
          audit: ({ rotation: r, event }) => ({
            actor: "apikey:o",
            type: "owner_rotation.accepted",
            object: `worker:${r.worker_id}`,
            data: { id: r.id, event_id: event.id },
          }),
        },
      );
      const b = await s.storeOwnerRotation({ ...rotation("b", OWNER, T0 + 1), identity: hex("b") });
      expect(b.rotation.id).toBeGreaterThan(a.rotation.id);
      expect(a.event).toMatchObject({ kind: "owner_rotation", ref: String(a.rotation.id) });
      expect(b.event).toMatchObject({ id: a.event.id + 1, kind: "owner_rotation" });
      expect(await s.listOwnerRotations(WORKER)).toEqual([a.rotation, b.rotation]);
      expect(await s.listOwnerRotations("other")).toEqual([]);
      expect(await s.streamEventsSince(WORKER, 0)).toHaveLength(2);
      expect(await s.listAudit({ type: "owner_rotation.accepted" })).toMatchObject([
        { data: { id: a.rotation.id, event_id: a.event.id } },
      ]);
    });

    it("refuses a rotation not signed by the key in force, an older one, one stored before", async () => {
      const s = f.store();
      await seed(s);
      // Before any rotation the key in force is the owner's own.
      expect(await reasonOf(s.storeOwnerRotation(rotation("b", "c", T0)))).toEqual([
        "AGENTD_E_CP_CONFLICT",
        "owner_changed",
      ]);
      const first = { ...rotation(OWNER, "b", T0 + 10), identity: hex("1") };
      await s.storeOwnerRotation(first);
      // The retired key cannot rotate again, even with a later iat.
      expect(
        await reasonOf(
          s.storeOwnerRotation({ ...rotation(OWNER, "c", T0 + 20), identity: hex("2") }),
        ),
      ).toEqual(["AGENTD_E_CP_CONFLICT", "owner_changed"]);
      for (const iat of [T0 + 10, T0 + 5]) {
        expect(
          await reasonOf(s.storeOwnerRotation({ ...rotation("b", "c", iat), identity: hex("3") })),
        ).toEqual(["AGENTD_E_CP_CONFLICT", "stale"]);
      }
      expect(await reasonOf(s.storeOwnerRotation(first))).toEqual([
        "AGENTD_E_CP_CONFLICT",
        "duplicate",
      ]);
      await expectCode(
        s.storeOwnerRotation({ ...rotation(OWNER, "b", T0), worker_id: "nope" }),
        "AGENTD_E_CP_NOT_FOUND",
      );
      expect(await s.listOwnerRotations(WORKER)).toEqual([{ ...first, id: expect.any(Number) }]);
      expect(await s.streamEventsSince(WORKER, 0)).toHaveLength(1);
    });

    it("refuses a decommissioned worker", async () => {
      const s = f.store();
      await seed(s);
      await s.storeRevocation({
        worker_id: WORKER,
        kind: "decommission",
        through_seq: null,
        jws: "d",
        at: T0,
      });
      await expectCode(s.storeOwnerRotation(rotation(OWNER, "b", T0)), "AGENTD_E_CP_FORBIDDEN");
      expect(await s.listOwnerRotations(WORKER)).toEqual([]);
    });

    it("of two rotations by the same key racing, exactly one is stored", async () => {
      const s = f.store();
      await seed(s);
      const racing = ["b", "c", "d", "e"].map((to, i) =>
        s.storeOwnerRotation({ ...rotation(OWNER, to, T0 + 1), identity: hex(String(i)) }),
      );
      const results = await Promise.allSettled(racing);
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      for (const r of results) {
        if (r.status === "rejected") {
          expect(r.reason).toMatchObject({
            code: "AGENTD_E_CP_CONFLICT",
            context: { reason: "owner_changed" },
          });
        }
      }
      expect(await s.listOwnerRotations(WORKER)).toHaveLength(1);
    });
  });
}
