import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  COMMAND_LEDGER_FILE,
  type CommandAuditRecord,
  type CommandExecutorOptions,
  createCommandExecutor,
} from "../../agent/command-executor.ts";
import { signCommand } from "../../control-plane/protocol/documents/command.ts";
import type { CommandAction } from "../../policy-guard/documents.ts";
import {
  consentFor,
  enrolledMachine,
  type ServedCp,
  useServedCp,
} from "../control-plane/protocol/client-fixture.ts";

/**
 * The command executor with real commands: sent by an operator through the control plane's API,
 * signed by its `command` key, fetched by the machine's poll, verified under the key set pinned
 * at enrollment; results signed by the machine key and posted back. Every refusal is audited.
 */

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function setup(cp: ServedCp, allowed: CommandAction[] | null) {
  const m = await enrolledMachine(cp);
  await m.owner.postConsent(consentFor(m, cp.clock, 1, ["mining.pause", "mining.resume"]));
  const operatorKey = await cp.api(cp.adminKey).createApiKey({ role: "operator" });
  const operator = cp.api(operatorKey.api_key);
  const dir = mkdtempSync(join(tmpdir(), "agentd-cmd-"));
  dirs.push(dir);
  const audit: CommandAuditRecord[] = [];
  const ran: string[] = [];
  const options: CommandExecutorOptions = {
    workerId: m.client.workerId,
    keyset: () => m.enrollment.keyset,
    allowed: () => allowed,
    handlers: {
      "mining.pause": async (_args, c) => {
        ran.push(`pause ${c.seq}`);
        return { status: "done", reason: "" };
      },
      "mining.resume": async () => {
        throw new Error("boom");
      },
    },
    clock: cp.clock,
    ledgerPath: join(dir, COMMAND_LEDGER_FILE),
    audit: (r) => audit.push(r),
    postResult: (r) => m.client.postCommandResult(r),
  };
  const send = async (action: "mining.pause" | "mining.resume") =>
    operator.createCommand({ worker: m.client.workerId, action, args: {} });
  const poll = async () =>
    (await m.client.pollCommands({ after: 0 })).events
      .filter((e) => e.kind === "command")
      .map((e) => e.jws);
  return { m, options, audit, ran, send, poll, dir };
}

/** The result the control plane recorded for each command id. */
async function results(cp: ServedCp, ids: readonly string[]) {
  const out: Record<string, string | null> = {};
  for (const id of ids) out[id] = (await cp.serving.store.getCommand(id))?.result?.status ?? null;
  return out;
}

describe("command executor", () => {
  const serve = useServedCp();

  it("runs a verified, allowed command once, in seq order, and posts a signed result", async () => {
    const cp = await serve();
    const s = await setup(cp, ["mining.pause", "mining.resume"]);
    const a = await s.send("mining.pause");
    const b = await s.send("mining.resume");
    const exec = createCommandExecutor(s.options);
    // given newest first: executed in seq order all the same
    const outcomes = await exec.executeAll((await s.poll()).reverse());
    expect(outcomes).toEqual([
      { cmdId: a.cmd_id, status: "done", reason: "" },
      { cmdId: b.cmd_id, status: "failed", reason: "handler error" },
    ]);
    expect(s.ran).toEqual([`pause ${a.seq}`]);
    expect(await results(cp, [a.cmd_id, b.cmd_id])).toEqual({
      [a.cmd_id]: "done",
      [b.cmd_id]: "failed",
    });
    // the same commands again (a reconnecting stream replays them): nothing runs twice —
    // also in a new process, from the ledger on disk — and no second result is posted
    let posted = 0;
    const again = await createCommandExecutor({
      ...s.options,
      postResult: async (r) => {
        posted++;
        return s.options.postResult(r);
      },
    }).executeAll(await s.poll());
    expect(posted).toBe(0);
    expect(again.map((o) => [o.status, o.reason])).toEqual([
      ["refused", "command.replayed"],
      ["refused", "command.replayed"],
    ]);
    expect(s.ran).toHaveLength(1);
    expect(s.audit.map((r) => [r.type, r.status])).toEqual([
      ["command.executed", "done"],
      ["command.executed", "failed"],
      ["command.refused", "refused"],
      ["command.refused", "refused"],
    ]);
  });

  it("refuses what the consent does not allow, what it cannot verify, and what it cannot do", async () => {
    const cp = await serve();
    const s = await setup(cp, ["mining.resume"]);
    const pause = await s.send("mining.pause");
    const exec = createCommandExecutor({ ...s.options, handlers: {} });
    const [notAllowed] = await exec.executeAll(await s.poll());
    expect(notAllowed).toEqual({
      cmdId: pause.cmd_id,
      status: "refused",
      reason: "command.not_allowed",
      refusal: { code: "command.not_allowed" },
    });
    expect(await results(cp, [pause.cmd_id])).toEqual({ [pause.cmd_id]: "refused" });

    // allowed, but no handler in this build: refused, saying so
    const resume = await s.send("mining.resume");
    const [unsupported] = await exec.executeAll((await s.poll()).slice(-1));
    expect(unsupported?.cmdId).toBe(resume.cmd_id);
    expect(unsupported?.reason).toMatch(/^command\.unsupported: mining\.resume/);

    // signed by a key that is not a `command` key of the pinned set (the machine's own)
    const forged = signCommand({
      privateKey: s.m.machineKey,
      worker: s.m.client.workerId,
      seq: Number.MAX_SAFE_INTEGER - 1,
      clock: cp.clock,
      action: "mining.pause",
      args: {},
    }).jws;
    expect(await exec.execute(forged)).toEqual({
      cmdId: null,
      status: "refused",
      reason: "command.invalid: AGENTD_E_JWS_UNKNOWN_KEY",
      refusal: { code: "command.invalid", error: "AGENTD_E_JWS_UNKNOWN_KEY" },
    });
    // expired
    await s.send("mining.resume");
    const jws = (await s.poll()).at(-1) as string;
    cp.clock.advance(3600 * 1000); // past its 600 s
    expect((await exec.execute(jws)).reason).toBe("command.invalid: AGENTD_E_JWS_EXPIRED");
    expect(s.audit.filter((r) => r.type === "command.refused")).toHaveLength(4);
    // nothing but the refusals was ever recorded as run
    expect(s.audit.some((r) => r.type === "command.executed")).toBe(false);
  });

  it("runs nothing without a consent", async () => {
    const cp = await serve();
    const s = await setup(cp, null);
    await s.send("mining.pause");
    const [o] = await createCommandExecutor(s.options).executeAll(await s.poll());
    expect([o?.status, o?.reason]).toEqual(["refused", "command.not_allowed"]);
    expect(s.ran).toEqual([]);
  });
});
