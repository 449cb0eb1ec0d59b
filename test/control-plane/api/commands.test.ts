import { describe, expect, it } from "vitest";
import { commandsGroup } from "../../../control-plane/api/commands.ts";
import { streamGroup } from "../../../control-plane/api/stream.ts";
import { verifyCommand } from "../../../control-plane/protocol/documents/command.ts";
import { signCommandResult } from "../../../control-plane/protocol/documents/command-result.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import { unixSeconds } from "../../../lib/clock.ts";
import { publicKeyOf } from "../../../lib/crypto/ed25519.ts";
import { documentIdentity } from "../../../lib/crypto/jws.ts";
import { signConsent, signRevocation } from "../../../policy-guard/sign.ts";
import { type TestCp, type TestMachine, type TestOwner, useTestCp } from "./harness.ts";

const groups = (ctx: Parameters<typeof commandsGroup>[0]) => [commandsGroup(ctx), streamGroup(ctx)];

/** The owner's consent for `m`, allowing `commands`, accepted by the store directly. */
async function consent(t: TestCp, o: TestOwner, m: TestMachine, commands: string[], seq = 1) {
  const now = unixSeconds(t.clock);
  const jws = signConsent({
    ownerKey: o.privateKey,
    worker: m.workerId,
    rules: { commands },
    seq,
    policyId: "p1",
    iat: now,
    exp: now + 30 * 86_400,
  });
  await t.store.acceptConsent({
    identity: documentIdentity(jws),
    worker_id: m.workerId,
    owner_id: o.ownerId,
    seq,
    jws,
    exp: now + 30 * 86_400,
    accepted_at: now,
  });
}

describe.each(["sqlite", "postgres"] as const)("commands API (%s)", (backend) => {
  const start = useTestCp();

  async function setup() {
    const t = await start({ groups, backend });
    const o = await t.owner();
    const m = await t.machine(o);
    await consent(t, o, m, ["service.restart", "mining.pause"]);
    const operator = await t.apiKey("operator");
    const send = (body: unknown, apiKey = operator) =>
      t.call("POST", "/v1/commands", { apiKey, body });
    return { t, o, m, operator, send };
  }

  it("signs and queues a command; the poll serves it; one result is recorded, a second is a replay", async () => {
    const { t, m, send } = await setup();
    const sent = await send({
      worker: m.workerId,
      action: "service.restart",
      args: { service: "bitcoind" },
    });
    expect(sent.status).toBe(200);
    const reply = validate("command-create-response", sent.json);
    const cmd = verifyCommand(reply.command, {
      key: publicKeyOf(t.ctx.keys().signing.command.privateKey),
      worker: m.workerId,
      clock: t.clock,
    }).payload;
    expect(cmd).toMatchObject({
      cmd_id: reply.cmd_id,
      action: "service.restart",
      args: { service: "bitcoind" },
      seq: reply.seq,
      exp: reply.exp,
    });
    expect(cmd.exp - cmd.iat).toBe(t.ctx.settings.commandTtlS);
    // time-based seq: at least the clock in milliseconds, and increasing per worker
    expect(reply.seq).toBeGreaterThanOrEqual(t.clock.now());
    const second = validate(
      "command-create-response",
      (await send({ worker: m.workerId, action: "mining.pause", args: {}, ttl_s: 60 })).json,
    );
    expect(second.seq).toBeGreaterThan(reply.seq);
    expect(second.exp).toBe(unixSeconds(t.clock) + 60);
    expect(second.event_id).toBe(reply.event_id + 1);

    const poll = await t.call("GET", `/v1/workers/${m.workerId}/commands`, { machine: m });
    expect(poll.status).toBe(200);
    const events = validate("worker-commands-response", poll.json);
    expect(events.events).toEqual([
      { id: reply.event_id, kind: "command", jws: reply.command },
      { id: second.event_id, kind: "command", jws: second.command },
    ]);
    expect(events.last_event_id).toBe(second.event_id);
    const later = await t.call(
      "GET",
      `/v1/workers/${m.workerId}/commands?after=${reply.event_id}`,
      {
        machine: m,
      },
    );
    expect(later.json.events.map((e: { id: number }) => e.id)).toEqual([second.event_id]);
    const none = await t.call(
      "GET",
      `/v1/workers/${m.workerId}/commands?after=${second.event_id}`,
      { machine: m },
    );
    expect(none.json).toEqual({ events: [], last_event_id: second.event_id });

    const result = signCommandResult({
      privateKey: m.privateKey,
      cmdId: reply.cmd_id,
      status: "done",
      reason: "",
      clock: t.clock,
    });
    const path = `/v1/commands/${reply.cmd_id}/result`;
    const ok = await t.call("POST", path, { machine: m, body: { result: result } });
    expect(ok.status).toBe(200);
    expect(validate("command-result-response", ok.json)).toEqual({
      cmd_id: reply.cmd_id,
      status: "done",
    });
    expect((await t.store.getCommand(reply.cmd_id))?.result).toMatchObject({
      status: "done",
      jws: result,
    });
    expect((await t.store.listPendingCommands(m.workerId, unixSeconds(t.clock))).length).toBe(1);

    const failed = signCommandResult({
      privateKey: m.privateKey,
      cmdId: reply.cmd_id,
      status: "failed",
      reason: "late",
      clock: t.clock,
    });
    const replay = await t.call("POST", path, { machine: m, body: { result: failed } });
    expect(replay.status).toBe(409);
    expect(replay.json.error.code).toBe("AGENTD_E_CP_REPLAY");
    expect((await t.store.getCommand(reply.cmd_id))?.result?.status).toBe("done");

    const audit = await t.store.listAudit({ object: `command:${reply.cmd_id}` });
    expect(audit.map((e) => e.type)).toEqual([
      "command.issued",
      "command.result",
      "command.result_replay",
    ]);
    expect(audit[0]?.actor).toMatch(/^apikey:/);
    expect(audit[1]?.actor).toBe(`worker:${m.workerId}`);
  });

  it("refuses commands the worker could not execute, with free-form arguments, or from the wrong role", async () => {
    const { t, o, m, send } = await setup();
    const before = (await t.store.getWorker(m.workerId))?.last_event_id;
    // not in the consent's rules.commands: never signed, audited
    const notAllowed = await send({ worker: m.workerId, action: "agent.rotate_key", args: {} });
    expect(notAllowed.status).toBe(403);
    expect(notAllowed.json.error.code).toBe("AGENTD_E_CP_FORBIDDEN");
    expect((await t.store.listAudit({ type: "command.refused" })).length).toBe(1);
    // typed args only: no images, environment, paths
    for (const args of [
      { service: "bitcoind", image: "evil/image:latest" },
      { service: "/usr/bin/bitcoind" },
      { service: "bitcoind", env: { X: "1" } },
      {},
    ]) {
      const r = await send({ worker: m.workerId, action: "service.restart", args });
      expect(r.status).toBe(400);
      expect(r.json.error.code).toBe("AGENTD_E_SCHEMA");
    }
    const badTtl = await send({ worker: m.workerId, action: "mining.pause", args: {}, ttl_s: 5 });
    expect(badTtl.status).toBe(400);
    const unknown = await send({ worker: "A".repeat(43), action: "mining.pause", args: {} });
    expect(unknown.status).toBe(404);
    expect((await t.store.getWorker(m.workerId))?.last_event_id).toBe(before);
    // roles: only operators send commands; authentication before the body
    const admin = await send({ worker: m.workerId, action: "mining.pause", args: {} }, t.adminKey);
    expect(admin.status).toBe(403);
    const anonymous = await t.call("POST", "/v1/commands", { body: { nonsense: true } });
    expect(anonymous.status).toBe(401);
    // a revoked consent allows nothing any more
    await t.store.storeRevocation({
      worker_id: m.workerId,
      kind: "revocation",
      through_seq: 1,
      jws: signRevocation({
        ownerKey: o.privateKey,
        worker: m.workerId,
        iat: unixSeconds(t.clock),
        throughSeq: 1,
      }),
      at: unixSeconds(t.clock),
    });
    const revoked = await send({ worker: m.workerId, action: "mining.pause", args: {} });
    expect(revoked.status).toBe(403);
    // a quarantined worker is refused (it could fetch nothing)
    const q = await t.machine(o);
    await consent(t, o, q, ["mining.pause"]);
    await t.store.setQuarantine(q.workerId, { reason: "test", at: unixSeconds(t.clock) });
    const quarantined = await send({ worker: q.workerId, action: "mining.pause", args: {} });
    expect(quarantined.status).toBe(403);
    expect(quarantined.json.error.code).toBe("AGENTD_E_CP_QUARANTINED");
    const qpoll = await t.call("GET", `/v1/workers/${q.workerId}/commands`, { machine: q });
    expect(qpoll.status).toBe(403);
    expect(qpoll.json.error.code).toBe("AGENTD_E_CP_QUARANTINED");
  });

  it("serves a worker's commands and takes its results only from that worker", async () => {
    const { t, m, send } = await setup();
    const other = await t.machine(await t.owner());
    const reply = validate(
      "command-create-response",
      (await send({ worker: m.workerId, action: "mining.pause", args: {} })).json,
    );
    // another machine may not poll this worker's path
    const poll = await t.call("GET", `/v1/workers/${m.workerId}/commands`, { machine: other });
    expect(poll.status).toBe(403);
    // nor answer its command, even with a result it signed itself
    const path = `/v1/commands/${reply.cmd_id}/result`;
    const foreign = signCommandResult({
      privateKey: other.privateKey,
      cmdId: reply.cmd_id,
      status: "done",
      reason: "",
      clock: t.clock,
    });
    const r1 = await t.call("POST", path, { machine: other, body: { result: foreign } });
    expect(r1.status).toBe(403);
    expect(r1.json.error.code).toBe("AGENTD_E_CP_FORBIDDEN");
    // the right machine sending a result signed by another key: not its signature
    const r2 = await t.call("POST", path, { machine: m, body: { result: foreign } });
    expect(r2.status).toBe(400);
    // a result naming another command than the path's
    const wrongId = signCommandResult({
      privateKey: m.privateKey,
      cmdId: "00000000-0000-4000-8000-000000000000",
      status: "done",
      reason: "",
      clock: t.clock,
    });
    const r3 = await t.call("POST", path, { machine: m, body: { result: wrongId } });
    expect(r3.status).toBe(400);
    expect(r3.json.error.code).toBe("AGENTD_E_JWS_PAYLOAD");
    const r4 = await t.call("POST", "/v1/commands/00000000-0000-4000-8000-000000000000/result", {
      machine: m,
      body: { result: wrongId },
    });
    expect(r4.status).toBe(404);
    expect((await t.store.getCommand(reply.cmd_id))?.result).toBeNull();
    // bad query: unknown key, not a decimal
    for (const q of ["?since=1", "?after=-1", "?after=1&after=2"]) {
      const r = await t.call("GET", `/v1/workers/${m.workerId}/commands${q}`, { machine: m });
      expect(r.status).toBe(400);
    }
  });
});
