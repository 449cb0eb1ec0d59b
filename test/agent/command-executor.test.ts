import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  COMMAND_LEDGER_FILE,
  COMMAND_REFUSAL_CODES,
  type CommandAuditRecord,
  type CommandExecutorOptions,
  createCommandExecutor,
} from "../../agent/command-executor.ts";
import { loadControlPlaneKeys } from "../../control-plane/keys/load.ts";
import { signCommand } from "../../control-plane/protocol/documents/command.ts";
import { layoutOf } from "../../control-plane/serve.ts";
import { writeStateFile } from "../../lib/fs/state-file.ts";
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

const MAX = Number.MAX_SAFE_INTEGER;

async function setup(cp: ServedCp, allowed: CommandAction[] | null) {
  const m = await enrolledMachine(cp);
  const first = await m.owner.postConsent(
    consentFor(m, cp.clock, 1, ["mining.pause", "mining.resume"]),
  );
  /** The identity of the consent the machine enforces (null: none in force). */
  const inForce: { consent: string | null } = {
    consent: allowed === null ? null : first.consent_sha256,
  };
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
    consent: () => inForce.consent,
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
  /** The control plane's `command` key, as a thief who copied its key directory has it. */
  const stolen = (seq: number, consent: string, action: "mining.pause" | "mining.resume") =>
    signCommand({
      privateKey: loadControlPlaneKeys(layoutOf(cp.dir).keys).signing.command.privateKey,
      worker: m.client.workerId,
      seq,
      consentSha256: consent,
      clock: cp.clock,
      action,
      args: {},
    });
  return { m, options, audit, ran, send, poll, dir, first, inForce, stolen };
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
      consentSha256: s.first.consent_sha256,
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

  it("a seq of 2^53 − 1 under a stolen key blocks nothing under the owner's next consent; replays stay refused", async () => {
    const cp = await serve();
    const s = await setup(cp, ["mining.pause", "mining.resume"]);
    const c1 = s.first.consent_sha256;
    const exec = createCommandExecutor(s.options);
    // The thief's command, under the consent in force, with the last seq there is.
    const captured = s.stolen(MAX, c1, "mining.pause");
    expect(await exec.execute(captured.jws)).toEqual({
      cmdId: captured.payload.cmd_id,
      status: "done",
      reason: "",
    });

    // The owner signs consent 2: the control plane's next command is issued under it.
    const c2 = (
      await s.m.owner.postConsent(consentFor(s.m, cp.clock, 2, ["mining.pause", "mining.resume"]))
    ).consent_sha256;
    s.inForce.consent = c2;
    const sent = await s.send("mining.pause");
    expect(sent.consent_sha256).toBe(c2);
    expect(sent.seq).toBeLessThan(MAX);
    const jws2 = sent.command;
    expect(await exec.execute(jws2)).toEqual({ cmdId: sent.cmd_id, status: "done", reason: "" });
    expect(s.ran).toEqual([`pause ${MAX}`, `pause ${sent.seq}`]);

    // The captured command of consent 1, replayed under consent 2: never runs again. It was
    // answered when it ran, so no second result is posted.
    let posted = 0;
    const counting = {
      ...s.options,
      postResult: async (r: Parameters<CommandExecutorOptions["postResult"]>[0]) => {
        posted++;
        return s.options.postResult(r);
      },
    };
    const mismatch = {
      cmdId: captured.payload.cmd_id,
      status: "refused",
      reason: "command.consent_mismatch",
      refusal: { code: "command.consent_mismatch" },
    };
    const replayed = {
      cmdId: sent.cmd_id,
      status: "refused",
      reason: "command.replayed",
      refusal: { code: "command.replayed" },
    };
    // ... in this process, and in the next one (the ledger on disk).
    for (const e of [exec, createCommandExecutor(counting)]) {
      expect(await e.execute(captured.jws)).toEqual(mismatch);
      expect(await e.execute(jws2)).toEqual(replayed);
      expect(e.lastSeq(c1)).toBe(MAX);
      expect(e.lastSeq(c2)).toBe(sent.seq);
    }
    expect(posted).toBe(0);
    expect(s.ran).toHaveLength(2);
    expect(s.audit.filter((r) => r.reason === "command.consent_mismatch")).toEqual([
      {
        type: "command.refused",
        cmd_id: captured.payload.cmd_id,
        action: "mining.pause",
        command_seq: MAX,
        status: "refused",
        reason: "command.consent_mismatch",
      },
      expect.objectContaining({ cmd_id: captured.payload.cmd_id }),
    ]);
  });

  it("refuses a command issued under another consent than the one in force, and answers it once", async () => {
    const cp = await serve();
    const s = await setup(cp, ["mining.pause", "mining.resume"]);
    // The control plane has consent 2 already; this machine still enforces consent 1.
    const c2 = (
      await s.m.owner.postConsent(consentFor(s.m, cp.clock, 2, ["mining.pause", "mining.resume"]))
    ).consent_sha256;
    const sent = await s.send("mining.pause");
    let posted = 0;
    const exec = createCommandExecutor({
      ...s.options,
      postResult: async (r) => {
        posted++;
        return s.options.postResult(r);
      },
    });
    for (let i = 0; i < 2; i++) {
      expect(await exec.execute(sent.command)).toMatchObject({
        cmdId: sent.cmd_id,
        status: "refused",
        reason: "command.consent_mismatch",
      });
    }
    expect(posted).toBe(1);
    expect(await results(cp, [sent.cmd_id])).toEqual({ [sent.cmd_id]: "refused" });
    // Its seq counts for nothing: consent 2's space is untouched.
    expect(exec.lastSeq(c2)).toBe(0);
    expect(s.ran).toEqual([]);
  });

  it("loads a ledger of format 1: its last_seq counts for the consent in force, its ids stay", async () => {
    const cp = await serve();
    const s = await setup(cp, ["mining.pause", "mining.resume"]);
    const c1 = s.first.consent_sha256;
    const exp = Math.floor(cp.clock.now() / 1000) + 600;
    writeStateFile(s.options.ledgerPath, 1, { last_seq: 5000, ids: { "old-id": exp } });
    const exec = createCommandExecutor(s.options);
    expect(exec.lastSeq(c1)).toBe(5000);
    expect(exec.has("old-id")).toBe(true);
    const below = s.stolen(4999, c1, "mining.pause");
    expect((await exec.execute(below.jws)).reason).toBe("command.replayed");
    const above = s.stolen(5001, c1, "mining.pause");
    expect((await exec.execute(above.jws)).status).toBe("done");
    const file = JSON.parse(readFileSync(s.options.ledgerPath, "utf8"));
    expect(file).toEqual({
      format: 2,
      data: { consents: [{ consent: c1, last_seq: 5001 }], ids: expect.any(Object) },
    });
    // The replayed one is not recorded: it ran nothing.
    expect(Object.keys(file.data.ids).sort()).toEqual([above.payload.cmd_id, "old-id"].sort());
  });

  it("a ledger of format 1 read with no consent in force keeps its ids and drops its seq", async () => {
    const cp = await serve();
    const s = await setup(cp, null);
    writeStateFile(s.options.ledgerPath, 1, { last_seq: MAX, ids: {} });
    const exec = createCommandExecutor(s.options);
    // No command of format 1 can verify any more (consent_sha256 is required), and every
    // later one names its consent: the old seq guards nothing.
    s.inForce.consent = s.first.consent_sha256;
    expect(exec.lastSeq(s.first.consent_sha256)).toBe(0);
    const c = s.stolen(1, s.first.consent_sha256, "mining.pause");
    // Allowed by the consent now in force? This executor was set up with no allowlist.
    expect((await exec.execute(c.jws)).reason).toBe("command.not_allowed");
    expect(exec.lastSeq(s.first.consent_sha256)).toBe(1);
  });

  it("keeps the seqs of the last four consents only; the one in force is never dropped", async () => {
    const cp = await serve();
    const s = await setup(cp, ["mining.pause", "mining.resume"]);
    const exec = createCommandExecutor(s.options);
    const consents = ["1", "2", "3", "4", "5", "6"].map((d) => d.repeat(64));
    for (const [i, c] of consents.entries()) {
      s.inForce.consent = c;
      expect((await exec.execute(s.stolen(100 + i, c, "mining.pause").jws)).status).toBe("done");
    }
    const file = JSON.parse(readFileSync(s.options.ledgerPath, "utf8"));
    expect(file.data.consents).toEqual(
      consents.slice(2).map((consent, i) => ({ consent, last_seq: 102 + i })),
    );
    expect(exec.lastSeq(consents[5] as string)).toBe(105);
    expect(exec.lastSeq(consents[0] as string)).toBe(0);
  });
});

describe("command refusal codes", () => {
  it("docs/protocol.md lists exactly the executor's refusal codes", () => {
    const doc = readFileSync(new URL("../../docs/protocol.md", import.meta.url), "utf8");
    const listed = [...doc.matchAll(/^\s*\|\s*`(command\.[a-z_]+)`\s*\|/gm)].map((m) => m[1]);
    expect(listed.sort()).toEqual([...COMMAND_REFUSAL_CODES].sort());
  });
});
