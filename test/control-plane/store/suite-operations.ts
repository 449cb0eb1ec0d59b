import { describe, expect, it } from "vitest";
import type { StreamEvent } from "../../../control-plane/store/store.ts";
import { consentIn, expectCode, type StoreFixture, seed, T0, WORKER } from "./harness.ts";

/** Resolves with the first `n` events a subscription delivers. */
export function collect(n: number): {
  onEvent: (e: StreamEvent) => void;
  events: StreamEvent[];
  done: Promise<StreamEvent[]>;
} {
  const events: StreamEvent[] = [];
  let resolve: (e: StreamEvent[]) => void = () => {};
  const done = new Promise<StreamEvent[]>((r) => {
    resolve = r;
  });
  return {
    events,
    done,
    onEvent: (e) => {
      events.push(e);
      if (events.length === n) resolve(events);
    },
  };
}

export function operationsSuite(f: StoreFixture): void {
  describe("push stream", () => {
    it("event ids are per worker, gapless, and readable after any id", async () => {
      const s = f.store();
      await seed(s, ["a", "b"]);
      const e1 = await s.appendStreamEvent({ worker_id: "a", kind: "command", ref: "x", at: T0 });
      const e2 = await s.appendStreamEvent({
        worker_id: "b",
        kind: "revocation",
        ref: "1",
        at: T0,
      });
      const e3 = await s.appendStreamEvent({
        worker_id: "a",
        kind: "publication",
        ref: "9",
        at: T0 + 1,
      });
      expect([e1.id, e2.id, e3.id]).toEqual([1, 1, 2]);
      expect(await s.streamEventsSince("a", 0)).toEqual([e1, e3]);
      expect(await s.streamEventsSince("a", 1)).toEqual([e3]);
      expect(await s.streamEventsSince("a", 2)).toEqual([]);
      expect(await s.streamEventsSince("a", 0, 1)).toEqual([e1]);
      expect((await s.getWorker("a"))?.last_event_id).toBe(2);
      await expectCode(
        s.appendStreamEvent({ worker_id: "nope", kind: "command", ref: "x", at: T0 }),
        "AGENTD_E_CP_NOT_FOUND",
      );
    });

    it("subscribers get committed events only, until they unsubscribe", async () => {
      const s = f.store();
      await seed(s);
      const c = collect(2);
      const stop = await s.subscribe({ onEvent: c.onEvent });
      const first = await s.appendStreamEvent({
        worker_id: WORKER,
        kind: "command",
        ref: "1",
        at: T0,
      });
      // Rolled back (unknown worker): never delivered.
      await expectCode(
        s.appendStreamEvent({ worker_id: "nope", kind: "command", ref: "x", at: T0 }),
        "AGENTD_E_CP_NOT_FOUND",
      );
      const second = await s.appendStreamEvent({
        worker_id: WORKER,
        kind: "command",
        ref: "2",
        at: T0,
      });
      expect(await c.done).toEqual([first, second]);
      await stop();
      // After unsubscribing: a marker subscriber proves delivery happened, the old one saw nothing.
      const marker = collect(1);
      await s.subscribe({ onEvent: marker.onEvent });
      await s.appendStreamEvent({ worker_id: WORKER, kind: "command", ref: "3", at: T0 });
      await marker.done;
      expect(c.events).toHaveLength(2);
    });

    if (f.backend.name === "postgres") {
      it("an event written through one Store reaches subscribers of another (LISTEN/NOTIFY)", async () => {
        const s = f.store();
        await seed(s);
        const consent = await consentIn(s);
        const other = await f.open();
        const c = collect(1);
        await other.subscribe({ onEvent: c.onEvent });
        const { event } = await s.issueCommand(
          {
            cmd_id: "c1",
            worker_id: WORKER,
            action: "mining.pause",
            args: {},
            iat: T0,
            exp: T0 + 60,
            now_ms: 1,
            consent_identity: consent,
          },
          (seq) => `jws-${seq}`,
        );
        expect(await c.done).toEqual([event]);
      });

      it("a lost LISTEN connection is re-opened and subscribers are told to resync", async () => {
        const s = f.store();
        await seed(s);
        let resynced: () => void = () => {};
        const resync = new Promise<void>((r) => {
          resynced = r;
        });
        const c = collect(1);
        await s.subscribe({ onEvent: c.onEvent, onResync: () => resynced() });
        await f.backend.raw(
          f.url(),
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
           WHERE datname = current_database() AND query = 'LISTEN agentd_stream'`,
        );
        await resync;
        const e = await s.appendStreamEvent({
          worker_id: WORKER,
          kind: "command",
          ref: "1",
          at: T0,
        });
        expect(await c.done).toEqual([e]);
      });
    }
  });

  describe("emergency stop", () => {
    it("needs distinct approvers, each once, and executes once", async () => {
      const s = f.store();
      const created = await s.createEmergencyStop({
        id: "e1",
        scope: { cohort: "canary" },
        requested_by: "op1",
        at: T0,
      });
      expect(created).toEqual({
        id: "e1",
        scope: { cohort: "canary" },
        requested_by: "op1",
        at: T0,
        approvals: [],
        executed_at: null,
        completed_at: null,
        claim: null,
      });
      await expectCode(
        s.createEmergencyStop({ id: "e1", scope: { all: true }, requested_by: "op1", at: T0 }),
        "AGENTD_E_CP_CONFLICT",
      );
      expect((await s.approveEmergencyStop("e1", "op1", T0 + 1)).approvals).toHaveLength(1);
      await expectCode(s.approveEmergencyStop("e1", "op1", T0 + 2), "AGENTD_E_CP_CONFLICT");
      const two = await s.approveEmergencyStop("e1", "op2", T0 + 3);
      expect(two.approvals).toEqual([
        { approver_key_id: "op1", at: T0 + 1 },
        { approver_key_id: "op2", at: T0 + 3 },
      ]);
      expect((await s.markEmergencyStopExecuted("e1", T0 + 4)).executed_at).toBe(T0 + 4);
      await expectCode(s.markEmergencyStopExecuted("e1", T0 + 5), "AGENTD_E_CP_CONFLICT");
      await expectCode(s.approveEmergencyStop("e1", "op3", T0 + 6), "AGENTD_E_CP_CONFLICT");
      await expectCode(s.approveEmergencyStop("e9", "op1", T0), "AGENTD_E_CP_NOT_FOUND");
      await expectCode(s.markEmergencyStopExecuted("e9", T0), "AGENTD_E_CP_NOT_FOUND");
      expect(await s.getEmergencyStop("e9")).toBeNull();
      await s.createEmergencyStop({ id: "e2", scope: { all: true }, requested_by: "op1", at: T0 });
      expect((await s.getEmergencyStop("e2"))?.scope).toEqual({ all: true });
      expect((await s.getEmergencyStop("e1"))?.executed_at).toBe(T0 + 4);
    });
  });

  describe("emergency stop claims", () => {
    const executed = async (id: string, claim?: { by: string; until: number }) => {
      const s = f.store();
      await s.createEmergencyStop({ id, scope: { all: true }, requested_by: "op1", at: T0 });
      await s.approveEmergencyStop(id, "op1", T0);
      await s.approveEmergencyStop(id, "op2", T0);
      return s.markEmergencyStopExecuted(id, T0 + 1, claim === undefined ? {} : { claim });
    };
    const reasonOf = async (p: Promise<unknown>) => {
      const e = await p.then(
        () => null,
        (err: unknown) => err,
      );
      return (e as { context?: { reason?: unknown } } | null)?.context?.reason;
    };

    it("one claimant at a time, taken over once its lease has run out, completed once", async () => {
      const s = f.store();
      const e1 = await executed("e1", { by: "a", until: T0 + 300 });
      expect([e1.claim, e1.completed_at]).toEqual([{ by: "a", until: T0 + 300 }, null]);
      expect((await s.listUnfinishedEmergencyStops()).map((x) => x.id)).toEqual(["e1"]);
      // Held by a: b gets nothing; a renews.
      expect(await s.claimEmergencyStop("e1", { by: "b", until: T0 + 310 }, T0 + 10)).toBeNull();
      expect(
        (await s.claimEmergencyStop("e1", { by: "a", until: T0 + 400 }, T0 + 100))?.claim,
      ).toEqual({ by: "a", until: T0 + 400 });
      expect(await s.claimEmergencyStop("e1", { by: "b", until: T0 + 700 }, T0 + 399)).toBeNull();
      // a went silent: b takes over when the lease ends; a may neither renew nor complete.
      expect(
        (await s.claimEmergencyStop("e1", { by: "b", until: T0 + 700 }, T0 + 400))?.claim,
      ).toEqual({ by: "b", until: T0 + 700 });
      expect(await s.claimEmergencyStop("e1", { by: "a", until: T0 + 800 }, T0 + 401)).toBeNull();
      const audit = { actor: "system", type: "emergency_stop.completed", object: "e1", data: {} };
      expect(await reasonOf(s.completeEmergencyStop("e1", "a", T0 + 402, { audit }))).toBe(
        "not_claimed",
      );
      const done = await s.completeEmergencyStop("e1", "b", T0 + 403, { audit });
      expect([done.completed_at, done.claim]).toEqual([T0 + 403, null]);
      expect(await reasonOf(s.completeEmergencyStop("e1", "b", T0 + 404, { audit }))).toBe(
        "completed",
      );
      expect((await s.listAudit({ type: "emergency_stop.completed" })).length).toBe(1);
      expect(await s.listUnfinishedEmergencyStops()).toEqual([]);
      expect(await s.claimEmergencyStop("e1", { by: "c", until: T0 + 999 }, T0 + 999)).toBeNull();
      // Not executed: nothing to claim; unknown: not found.
      await s.createEmergencyStop({ id: "e2", scope: { all: true }, requested_by: "op1", at: T0 });
      expect(await s.claimEmergencyStop("e2", { by: "c", until: T0 + 9 }, T0)).toBeNull();
      await expectCode(
        s.claimEmergencyStop("e9", { by: "c", until: T0 }, T0),
        "AGENTD_E_CP_NOT_FOUND",
      );
      await expectCode(s.completeEmergencyStop("e9", "c", T0), "AGENTD_E_CP_NOT_FOUND");
      // Executed without a claim (what a crash of a version without claims leaves): free.
      await executed("e3");
      expect(
        (await s.claimEmergencyStop("e3", { by: "d", until: T0 + 300 }, T0 + 2))?.claim,
      ).toEqual({ by: "d", until: T0 + 300 });
    });
  });

  describe("key sets", () => {
    it("stores strictly increasing seqs and returns the current one", async () => {
      const s = f.store();
      expect(await s.currentKeySet()).toBeNull();
      await s.storeKeySet({ seq: 1, jws: "ks1", stored_at: T0 });
      await s.storeKeySet({ seq: 4, jws: "ks4", stored_at: T0 + 1 });
      await expectCode(
        s.storeKeySet({ seq: 4, jws: "again", stored_at: T0 }),
        "AGENTD_E_CP_CONFLICT",
      );
      await expectCode(
        s.storeKeySet({ seq: 2, jws: "older", stored_at: T0 }),
        "AGENTD_E_CP_CONFLICT",
      );
      expect(await s.currentKeySet()).toEqual({ seq: 4, jws: "ks4", stored_at: T0 + 1 });
    });
  });
}
