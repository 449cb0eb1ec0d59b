import { describe, expect, it } from "vitest";
import { allGroups } from "../../../control-plane/api/index.ts";
import type { WsRoute } from "../../../control-plane/http/ws.ts";
import { verifyAssignment } from "../../../control-plane/protocol/documents/assignment.ts";
import { verifyCommand } from "../../../control-plane/protocol/documents/command.ts";
import { resolverFor } from "../../../control-plane/protocol/keyset.ts";
import type { WorkerEvent } from "../../../control-plane/protocol/schemas/api-worker.ts";
import { generateEd25519KeyPair, jwkThumbprint } from "../../../lib/crypto/ed25519.ts";
import { decodeJwsUnverified, documentIdentity } from "../../../lib/crypto/jws.ts";
import type { AgentdError } from "../../../lib/errors.ts";
import { parseConsentPayload } from "../../../policy-guard/documents.ts";
import { signRevocation } from "../../../policy-guard/sign.ts";
import { EMPTY_COUNTERS, verifyDocuments } from "../../../policy-guard/verify.ts";
import {
  consentFor,
  type EnrolledMachine,
  enrolledMachine,
  FACTS,
  heartbeatBody,
  rejection,
  type ServedCp,
  until,
  useServedCp,
} from "./client-fixture.ts";

async function operatorOf(cp: ServedCp) {
  const k = await cp.api(cp.adminKey).createApiKey({ role: "operator" });
  return cp.api(k.api_key);
}

function publicationKeys(m: EnrolledMachine) {
  return Object.values(m.enrollment.keyset.keys.publication);
}

describe("protocol client: a machine's calls", () => {
  const serve = useServedCp();

  it("attests, then signs heartbeats; a replayed one is refused with the server's code", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp, { attest: false });
    // No token yet: refused here, before anything is sent.
    expect((await rejection(m.client.heartbeat(heartbeatBody(1)))).code).toBe(
      "AGENTD_E_CP_UNAUTHENTICATED",
    );
    const a = await m.client.attest(FACTS);
    expect(a).toMatchObject({ verdict: "ok", quarantined: false, token_type: "AgentD" });
    expect(m.client.session()?.accessToken).toBe(a.access_token);
    const first = await m.client.heartbeat(heartbeatBody(1));
    expect(first).toMatchObject({ accepted: true, counter: 1, pending_commands: [] });
    const second = await m.client.heartbeat(heartbeatBody(2));
    expect(second.counter).toBe(2);
    // the same signed heartbeat again, and an older counter: both replays
    const stored = await cp.serving.store.listHeartbeats(m.client.workerId);
    const replay = await rejection(m.client.sendHeartbeat(stored[0]?.jws ?? ""));
    expect(replay.code).toBe("AGENTD_E_CP_REPLAY");
    expect(replay.context.status).toBe(409);
    expect((await rejection(m.client.heartbeat(heartbeatBody(2)))).code).toBe("AGENTD_E_CP_REPLAY");
  });

  it("fetches the policy bundle with its ETag, 304 for that ETag, and long-polls for the next", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    expect((await rejection(m.client.getPolicy())).code).toBe("AGENTD_E_CP_NOT_FOUND");
    await m.owner.postConsent(consentFor(m, cp.clock, 1));
    const got = await m.client.getPolicy();
    if (!got.changed) throw new Error("expected a bundle");
    // The agent's own verification: owner key, pinned publication keys, binding.
    const v = verifyDocuments({
      bundle: got.bundle,
      trust: { owner: m.ownerPub, publication: publicationKeys(m) },
      worker: m.client.workerId,
      counters: EMPTY_COUNTERS,
    });
    expect([...v.consentReasons, ...v.publicationReasons]).toEqual([]);
    expect(await m.client.getPolicy({ etag: got.etag })).toEqual({
      changed: false,
      etag: got.etag,
    });
    // A long poll held until the owner's next consent is published.
    const waiting = m.client.getPolicy({ etag: got.etag, waitS: 30 });
    await until(() => cp.seen.filter((s) => s.endsWith("/policy")).length === 3, "the long poll");
    await m.owner.postConsent(consentFor(m, cp.clock, 2));
    const next = await waiting;
    if (!next.changed) throw new Error("expected the new bundle");
    expect(next.etag).not.toBe(got.etag);
    const seqOf = (jws: string) =>
      parseConsentPayload(decodeJwsUnverified(jws).payload as Record<string, unknown>).seq;
    expect(seqOf(next.bundle.consent)).toBe(2);
    expect(v.publication?.payload.version).toBeLessThan(
      (decodeJwsUnverified(next.bundle.publication).payload as { version: number }).version,
    );
  });

  it("polls commands, posts a signed result once, and gets its assignment", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    // Nothing published yet: the control plane's "none", not an error or a status.
    expect(await m.client.getAssignment()).toEqual({ none: "not_found" });
    const consent = consentFor(m, cp.clock, 1);
    await m.owner.postConsent(consent);
    const sent = await (await operatorOf(cp)).createCommand({
      worker: m.client.workerId,
      action: "mining.pause",
      args: {},
    });
    const hb = await m.client.heartbeat(heartbeatBody(1));
    expect(hb.pending_commands).toEqual([sent.cmd_id]);
    const polled = await m.client.pollCommands({ after: 0 });
    const cmd = polled.events.find((e) => e.kind === "command");
    if (cmd === undefined) throw new Error("no command event");
    const verified = verifyCommand(cmd.jws, {
      key: resolverFor(m.enrollment.keyset, "command"),
      worker: m.client.workerId,
      clock: cp.clock,
    });
    expect(verified.payload).toMatchObject({ cmd_id: sent.cmd_id, action: "mining.pause" });
    expect(polled.last_event_id).toBeGreaterThanOrEqual(cmd.id);
    expect((await m.client.pollCommands({ after: polled.last_event_id })).events).toEqual([]);

    const result = await m.client.postCommandResult({
      cmdId: sent.cmd_id,
      status: "done",
      reason: "",
    });
    expect(result).toEqual({ cmd_id: sent.cmd_id, status: "done" });
    const again = await rejection(
      m.client.postCommandResult({ cmdId: sent.cmd_id, status: "done", reason: "" }),
    );
    expect(again.code).toBe("AGENTD_E_CP_REPLAY");
    expect((await m.client.heartbeat(heartbeatBody(2))).pending_commands).toEqual([]);

    const answer = await m.client.getAssignment();
    if (!("assignment" in answer)) throw new Error(`no assignment: ${answer.none}`);
    const { assignment } = answer;
    const a = verifyAssignment(assignment, {
      key: resolverFor(m.enrollment.keyset, "assignment"),
      worker: m.client.workerId,
      consent: {
        identity: documentIdentity(consent),
        payload: parseConsentPayload(
          decodeJwsUnverified(consent).payload as Record<string, unknown>,
        ),
      },
      clock: cp.clock,
    });
    expect(a.payload.upstream).toEqual({
      url: "stratum+tcp://pool.example:3333",
      user: "owner1.rig",
    });
  });
});

describe("protocol client: the push stream", () => {
  const serve = useServedCp();

  it("pushes events in order and resumes after a restart from the last one processed", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    await m.owner.postConsent(consentFor(m, cp.clock, 1));
    const operator = await operatorOf(cp);
    const events: WorkerEvent[] = [];
    let readies = 0;
    const stream = m.client.openStream({
      after: 0,
      onEvent: (e) => {
        events.push(e);
      },
      onReady: () => {
        readies += 1;
      },
      reconnectMinMs: 20,
      reconnectMaxMs: 100,
    });
    cp.onCleanup(() => stream.close());
    await until(() => readies === 1, "the first ready");
    expect(events.map((e) => e.kind)).toEqual(["publication"]);
    const a = await operator.createCommand({
      worker: m.client.workerId,
      action: "mining.pause",
      args: {},
    });
    await until(() => events.length === 2, "the pushed command");
    expect(events[1]).toMatchObject({ kind: "command", id: a.event_id });

    await cp.restart();
    const b = await cp
      .api((await cp.api(cp.adminKey).createApiKey({ role: "operator" })).api_key)
      .createCommand({ worker: m.client.workerId, action: "mining.resume", args: {} });
    await until(() => events.length === 3, "the command after the restart");
    expect(readies).toBe(2);
    expect(events[2]).toMatchObject({ kind: "command", id: b.event_id });
    const ids = events.map((e) => e.id);
    expect(ids).toEqual([...new Set(ids)].sort((x, y) => x - y));
    expect(stream.lastEventId()).toBe(b.event_id);
    await stream.close();
    expect(stream.ready()).toBe(false);
  });

  it("reports a refused upgrade with the server's code and keeps trying", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    await (await operatorOf(cp)).quarantine(m.client.workerId, "test");
    // Quarantine ends the session; a fresh one may heartbeat, not stream.
    const again = await m.client.attest(FACTS);
    expect(again.quarantined).toBe(true);
    const errors: AgentdError[] = [];
    const stream = m.client.openStream({
      after: 0,
      onEvent: () => {},
      onError: (e) => errors.push(e),
      reconnectMinMs: 20,
      reconnectMaxMs: 40,
    });
    cp.onCleanup(() => stream.close());
    await until(() => errors.length >= 2, "two refusals");
    expect(errors[0]?.code).toBe("AGENTD_E_CP_QUARANTINED");
    expect(errors[0]?.context.status).toBe(403);
    expect(errors.every((e) => e.code === "AGENTD_E_CP_QUARANTINED")).toBe(true);
    await stream.close();
  });

  it("follows a control plane restored from a backup, and replaces a silent stream", async () => {
    // A stream endpoint that plays a restored control plane: whatever `after` the agent sends
    // first, its history ends at id 2 and its next event is 3; after that, every stream is
    // ready at 3 and then falls silent (no event, no ping).
    const hellos: number[] = [];
    const revocation = signRevocation({
      ownerKey: generateEd25519KeyPair().privateKey,
      worker: jwkThumbprint(generateEd25519KeyPair().publicKey),
      iat: 1_790_000_000,
      throughSeq: 1,
    });
    const stub: WsRoute = {
      path: "/v1/workers/{id}/stream",
      auth: ["machine"],
      machineParam: "id",
      onOpen({ ws }) {
        ws.once("message", (data) => {
          hellos.push((JSON.parse(String(data)) as { after: number }).after);
          const first = hellos.length === 1;
          ws.send(JSON.stringify({ type: "ready", last_event_id: first ? 2 : 3 }));
          if (first) {
            ws.send(JSON.stringify({ type: "event", id: 3, kind: "revocation", jws: revocation }));
          }
        });
      },
    };
    const cp = await serve({
      groups: (ctx) => [
        ...allGroups(ctx).map((g) => ({ ...g, wsRoutes: [] })),
        { routes: [], wsRoutes: [stub] },
      ],
    });
    const m = await enrolledMachine(cp);
    const events: WorkerEvent[] = [];
    const stream = m.client.openStream({
      after: 5,
      onEvent: (e) => {
        events.push(e);
      },
      idleTimeoutMs: 200,
      reconnectMinMs: 10,
      reconnectMaxMs: 20,
    });
    cp.onCleanup(() => stream.close());
    await until(() => hellos.length >= 3, "a replaced silent stream");
    await stream.close();
    // The first hello said 5; the server's history ends at 2, so event 3 was taken, once, and
    // every later hello resumed after it.
    expect(hellos[0]).toBe(5);
    expect(hellos.slice(1).every((h) => h === 3)).toBe(true);
    expect(events.map((e) => e.id)).toEqual([3]);
  });
});
