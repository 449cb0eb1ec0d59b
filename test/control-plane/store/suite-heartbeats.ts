import { describe, expect, it } from "vitest";
import type { HeartbeatInput } from "../../../control-plane/store/store.ts";
import { type StoreFixture, seed, T0, WORKER } from "./harness.ts";

export const hb = (counter: number, worker_id = WORKER, flags: string[] = []): HeartbeatInput => ({
  worker_id,
  counter,
  iat: T0 + counter,
  received_at: T0 + counter + 1,
  jws: `hb-${worker_id}-${counter}`,
  flags,
});

export function heartbeatsSuite(f: StoreFixture): void {
  describe("heartbeats", () => {
    it("a batch is applied in order: each counter must beat the last stored one", async () => {
      const s = f.store();
      await seed(s, [WORKER, "w2"]);
      const results = await s.recordHeartbeats([
        hb(5),
        hb(5),
        hb(3),
        hb(9, WORKER, ["gap"]),
        hb(1, "w2"),
        hb(2, "nope"),
      ]);
      expect(results).toEqual([
        { status: "accepted", previous_counter: null },
        { status: "replay", last_counter: 5 },
        { status: "replay", last_counter: 5 },
        { status: "accepted", previous_counter: 5 },
        { status: "accepted", previous_counter: null },
        { status: "unknown_worker" },
      ]);
      const w = await s.getWorker(WORKER);
      expect(w?.last_counter).toBe(9);
      expect(w?.last_seen).toBe(T0 + 10);
      expect(await s.listHeartbeats(WORKER)).toEqual([hb(9, WORKER, ["gap"]), hb(5)]);
      expect(await s.listHeartbeats(WORKER, { before_counter: 9 })).toEqual([hb(5)]);
      expect(await s.listHeartbeats(WORKER, { limit: 1 })).toEqual([hb(9, WORKER, ["gap"])]);
      // Later batches see the stored counter.
      expect(await s.recordHeartbeats([hb(9), hb(10)])).toEqual([
        { status: "replay", last_counter: 9 },
        { status: "accepted", previous_counter: 9 },
      ]);
    });

    it("prunes old heartbeats page by page, never a worker's latest", async () => {
      const s = f.store();
      await seed(s, [WORKER, "w2"]);
      // WORKER: counters 1..6 received at T0+2..T0+7; w2: one old heartbeat, its latest.
      await s.recordHeartbeats([1, 2, 3, 4, 5, 6].map((c) => hb(c)));
      await s.recordHeartbeats([hb(1, "w2")]);
      // Received before T0+6: counters 1..4 of WORKER, and w2's only (kept: its latest).
      expect(await s.pruneHeartbeats(T0 + 6, 3)).toBe(3);
      expect(await s.pruneHeartbeats(T0 + 6, 3)).toBe(1);
      expect(await s.pruneHeartbeats(T0 + 6, 3)).toBe(0);
      expect((await s.listHeartbeats(WORKER)).map((h) => h.counter)).toEqual([6, 5]);
      expect((await s.listHeartbeats("w2")).map((h) => h.counter)).toEqual([1]);
      // Far in the future: everything old, still each worker's latest stays.
      expect(await s.pruneHeartbeats(T0 + 1_000_000)).toBe(1);
      expect((await s.listHeartbeats(WORKER)).map((h) => h.counter)).toEqual([6]);
      expect((await s.listHeartbeats("w2")).map((h) => h.counter)).toEqual([1]);
    });

    it("an empty batch is a no-op; batches larger than one statement work", async () => {
      const s = f.store();
      const ids = Array.from({ length: 700 }, (_, i) => `w${String(i).padStart(4, "0")}`);
      await seed(s, ids);
      expect(await s.recordHeartbeats([])).toEqual([]);
      const batch = ids.flatMap((w) => [hb(1, w), hb(2, w)]);
      const results = await s.recordHeartbeats(batch);
      expect(results.every((r) => r.status === "accepted")).toBe(true);
      expect(results[1]).toEqual({ status: "accepted", previous_counter: 1 });
      expect((await s.getWorker("w0699"))?.last_counter).toBe(2);
    });

    it("recordHeartbeat: concurrent single calls are group-committed with per-item results", async () => {
      const s = f.store();
      await seed(s, ["a", "b"]);
      const results = await Promise.all([
        s.recordHeartbeat(hb(1, "a")),
        s.recordHeartbeat(hb(1, "b")),
        s.recordHeartbeat(hb(2, "a")),
        s.recordHeartbeat(hb(2, "a")),
        s.recordHeartbeat(hb(1, "c")),
      ]);
      expect(results).toEqual([
        { status: "accepted", previous_counter: null },
        { status: "accepted", previous_counter: null },
        { status: "accepted", previous_counter: 1 },
        { status: "replay", last_counter: 2 },
        { status: "unknown_worker" },
      ]);
    });

    it("audits per item inside the batch's transaction", async () => {
      const s = f.store();
      await seed(s);
      await Promise.all([
        s.recordHeartbeat(hb(1), {
          audit: (r) =>
            r.status === "replay"
              ? null
              : { actor: `worker:${WORKER}`, type: "heartbeat.accepted", object: "c1", data: {} },
        }),
        s.recordHeartbeat(hb(1), {
          audit: (r) => ({ actor: "a", type: `heartbeat.${r.status}`, object: "c1", data: {} }),
        }),
      ]);
      const events = await s.listAudit();
      expect(events.map((e) => e.type).sort()).toEqual(["heartbeat.accepted", "heartbeat.replay"]);
    });

    it("purges stored heartbeats by received time, keeping the worker's counter", async () => {
      const s = f.store();
      await seed(s);
      await s.recordHeartbeats([hb(1), hb(2), hb(3)]);
      expect(await s.purgeHeartbeats(T0 + 4)).toBe(2);
      expect((await s.listHeartbeats(WORKER)).map((h) => h.counter)).toEqual([3]);
      expect(await s.recordHeartbeats([hb(2)])).toEqual([{ status: "replay", last_counter: 3 }]);
    });
  });
}
