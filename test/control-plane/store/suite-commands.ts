import { describe, expect, it } from "vitest";
import type { CommandInput } from "../../../control-plane/store/store.ts";
import { consentIn, expectCode, hex, type StoreFixture, seed, T0, WORKER } from "./harness.ts";

const command = (cmd_id: string, seq: number, exp = T0 + 600): CommandInput => ({
  cmd_id,
  worker_id: WORKER,
  action: "service.restart",
  args: { service: "bitcoind" },
  jws: `cmd-${cmd_id}`,
  iat: T0,
  exp,
  seq,
  consent_identity: hex("c"),
});

const MAX = Number.MAX_SAFE_INTEGER;

export function commandsSuite(f: StoreFixture): void {
  describe("commands", () => {
    it("issueCommand allocates a time-based seq, signs it and queues it with its event", async () => {
      const s = f.store();
      await seed(s);
      const consent = await consentIn(s);
      const input = {
        cmd_id: "c1",
        worker_id: WORKER,
        action: "mining.pause",
        args: {},
        iat: T0,
        exp: T0 + 60,
        now_ms: 5000,
        consent_identity: consent,
      };
      const a = await s.issueCommand(input, (seq) => `signed-${seq}`);
      const b = await s.issueCommand({ ...input, cmd_id: "c2" }, (seq) => `signed-${seq}`);
      expect(a.command).toEqual({
        cmd_id: "c1",
        worker_id: WORKER,
        action: "mining.pause",
        args: {},
        jws: "signed-5000",
        iat: T0,
        exp: T0 + 60,
        seq: 5000,
        consent_identity: consent,
        result: null,
      });
      expect(b.command.seq).toBe(5001);
      expect(a.event).toEqual({ worker_id: WORKER, id: 1, kind: "command", ref: "c1", at: T0 });
      expect(b.event.id).toBe(2);
      expect(await s.nextCommandSeq(WORKER, consent, 0)).toBe(5002);
      expect(await s.getCommand("c2")).toEqual(b.command);
      expect(await s.getCommand("c9")).toBeNull();
      await expectCode(s.nextCommandSeq("nope", consent, 0), "AGENTD_E_CP_NOT_FOUND");
    });

    it("createCommand refuses a duplicate cmd_id or seq and an unknown worker", async () => {
      const s = f.store();
      await seed(s);
      await s.createCommand(command("c1", 7));
      await expectCode(s.createCommand(command("c1", 8)), "AGENTD_E_CP_CONFLICT");
      await expectCode(s.createCommand(command("c2", 7)), "AGENTD_E_CP_CONFLICT");
      await expectCode(
        s.createCommand({ ...command("c3", 9), worker_id: "nope" }),
        "AGENTD_E_CP_NOT_FOUND",
      );
      // A seq given by the caller raises the allocator (of its consent).
      expect(await s.nextCommandSeq(WORKER, hex("c"), 0)).toBe(8);
      // Refused commands appended no stream event.
      expect((await s.streamEventsSince(WORKER, 0)).map((e) => e.ref)).toEqual(["c1"]);
    });

    it("seqs are per consent: 2^53 − 1 spent under one consent locks out nothing under the next", async () => {
      const s = f.store();
      await seed(s);
      const c1 = await consentIn(s, "1", 1);
      const input = (cmd_id: string, consent_identity: string, now_ms: number) => ({
        cmd_id,
        worker_id: WORKER,
        action: "mining.pause",
        args: {},
        iat: T0,
        exp: T0 + 60,
        now_ms,
        consent_identity,
      });
      await s.issueCommand(input("a", c1, 5000), String);
      // A stolen command key's command stored (or the database edited): the counter is spent.
      await s.createCommand({ ...command("stolen", MAX), consent_identity: c1 });
      const spent = await s.issueCommand(input("b", c1, 6000), String).then(
        () => null,
        (e: unknown) => e,
      );
      expect(spent).toMatchObject({
        code: "AGENTD_E_CP_CONFLICT",
        context: { reason: "counter_exhausted", counter: "last_command_seq" },
      });
      expect(await s.getCommand("b")).toBeNull();
      // The owner's next consent: a fresh seq space, time-based again.
      const c2 = await consentIn(s, "2", 2);
      const fresh = await s.issueCommand(input("c", c2, 7000), String);
      expect([fresh.command.seq, fresh.command.consent_identity]).toEqual([7000, c2]);
      expect((await s.issueCommand(input("d", c2, 10), String)).command.seq).toBe(7001);
      // A command planned under the superseded consent is refused, nothing stored.
      const stale = await s.issueCommand(input("e", c1, 8000), String).then(
        () => null,
        (e: unknown) => e,
      );
      expect(stale).toMatchObject({
        code: "AGENTD_E_CP_CONFLICT",
        context: { reason: "stale_consent" },
      });
      expect(await s.getCommand("e")).toBeNull();
      expect((await s.issueCommand(input("f", c2, 10), String)).command.seq).toBe(7002);
    });

    it("lists pending commands (no result, not expired) in seq order", async () => {
      const s = f.store();
      await seed(s);
      await s.createCommand(command("late", 3));
      await s.createCommand(command("early", 1));
      await s.createCommand(command("expired", 2, T0 + 5));
      await s.createCommand(command("done", 4));
      await s.recordCommandResult({
        cmd_id: "done",
        worker_id: WORKER,
        status: "done",
        jws: "r",
        at: T0 + 1,
      });
      const pending = await s.listPendingCommands(WORKER, T0 + 5);
      expect(pending.map((c) => c.cmd_id)).toEqual(["early", "late"]);
      expect(await s.listPendingCommands("other", T0)).toEqual([]);
    });

    it("records a result once; a second is a replay; another worker's is not found", async () => {
      const s = f.store();
      await seed(s, [WORKER, "w2"]);
      await s.createCommand(command("c1", 1));
      const result = {
        cmd_id: "c1",
        worker_id: WORKER,
        status: "refused" as const,
        jws: "r1",
        at: T0 + 2,
      };
      await expectCode(
        s.recordCommandResult({ ...result, worker_id: "w2" }),
        "AGENTD_E_CP_NOT_FOUND",
      );
      await expectCode(s.recordCommandResult({ ...result, cmd_id: "c9" }), "AGENTD_E_CP_NOT_FOUND");
      const done = await s.recordCommandResult(result);
      expect(done.result).toEqual({ status: "refused", jws: "r1", at: T0 + 2 });
      await expectCode(
        s.recordCommandResult({ ...result, status: "done", jws: "r2" }),
        "AGENTD_E_CP_REPLAY",
      );
      expect((await s.getCommand("c1"))?.result).toEqual({
        status: "refused",
        jws: "r1",
        at: T0 + 2,
      });
    });
  });
}
