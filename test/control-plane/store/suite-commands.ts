import { describe, expect, it } from "vitest";
import type { CommandInput } from "../../../control-plane/store/store.ts";
import { expectCode, type StoreFixture, seed, T0, WORKER } from "./harness.ts";

const command = (cmd_id: string, seq: number, exp = T0 + 600): CommandInput => ({
  cmd_id,
  worker_id: WORKER,
  action: "service.restart",
  args: { service: "bitcoind" },
  jws: `cmd-${cmd_id}`,
  iat: T0,
  exp,
  seq,
});

export function commandsSuite(f: StoreFixture): void {
  describe("commands", () => {
    it("issueCommand allocates a time-based seq, signs it and queues it with its event", async () => {
      const s = f.store();
      await seed(s);
      const input = {
        cmd_id: "c1",
        worker_id: WORKER,
        action: "mining.pause",
        args: {},
        iat: T0,
        exp: T0 + 60,
        now_ms: 5000,
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
        result: null,
      });
      expect(b.command.seq).toBe(5001);
      expect(a.event).toEqual({ worker_id: WORKER, id: 1, kind: "command", ref: "c1", at: T0 });
      expect(b.event.id).toBe(2);
      expect(await s.nextCommandSeq(WORKER, 0)).toBe(5002);
      expect(await s.getCommand("c2")).toEqual(b.command);
      expect(await s.getCommand("c9")).toBeNull();
      await expectCode(s.nextCommandSeq("nope", 0), "AGENTD_E_CP_NOT_FOUND");
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
      // A seq given by the caller raises the allocator.
      expect(await s.nextCommandSeq(WORKER, 0)).toBe(8);
      // Refused commands appended no stream event.
      expect((await s.streamEventsSince(WORKER, 0)).map((e) => e.ref)).toEqual(["c1"]);
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
