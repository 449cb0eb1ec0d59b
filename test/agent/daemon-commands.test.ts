import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningAgent } from "../../agent/daemon.ts";
import type { ApiContext } from "../../control-plane/api/context.ts";
import { allGroups } from "../../control-plane/api/index.ts";
import { signCommand } from "../../control-plane/protocol/documents/command.ts";
import { generateEd25519KeyPair } from "../../lib/crypto/ed25519.ts";
import { FACTS, until, useServedCp } from "../control-plane/protocol/client-fixture.ts";
import { enrolledMachine } from "./daemon-fixture.ts";

/**
 * Issue 15, points 4 and 7, on the real agent against the real control plane: a command's
 * result and audit record say what happened (a service the consent does not allow is
 * `not_allowed`, nothing ran); a push-stream event that fails the schema is skipped, recorded,
 * and the stream goes on; commands refused before verification are remembered across a
 * restart instead of being fetched and refused again at every heartbeat.
 */

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function auditOf(stateDir: string): Record<string, unknown>[] {
  return readFileSync(join(stateDir, "audit.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const versionOf = (a: RunningAgent) =>
  (a.status() as { policy: { version: number | null } }).policy.version;

describe("agentd run, commands and the stream", () => {
  const serve = useServedCp();

  it("a service.restart of a kind the consent does not allow is not_allowed, audited so, and nothing runs", async () => {
    const cp = await serve();
    const data = mkdtempSync(join(tmpdir(), "agentd-notallowed-"));
    cleanups.push(() => rmSync(data, { recursive: true, force: true }));
    const m = await enrolledMachine(cp, {
      config: { "supervisor.driver": "process", "supervisor.data_dir": data },
    });
    const agent = await m.start();
    try {
      // service.restart is allowed as a command; no service is allowed to run
      const p = await m.ownerApi.postConsent(m.consent(1, ["service.restart"]));
      await until(() => versionOf(agent) === p.version, "consent 1");
      const op = await cp.api(cp.adminKey).createApiKey({ role: "operator" });
      const sent = await cp.api(op.api_key).createCommand({
        worker: m.enrolled.worker_id,
        action: "service.restart",
        args: { service: "bitcoind" },
      });
      await until(
        async () => (await cp.serving.store.getCommand(sent.cmd_id))?.result != null,
        "the result",
      );
      const result = (await cp.serving.store.getCommand(sent.cmd_id))?.result;
      const payload = JSON.parse(
        Buffer.from(result?.jws.split(".")[1] ?? "", "base64url").toString(),
      ) as { status: string; reason: string };
      expect(payload.status).toBe("failed");
      expect(payload.reason).toMatch(/^not_allowed: /);
      const record = auditOf(m.stateDir).find((r) => r.cmd_id === sent.cmd_id);
      expect(record).toMatchObject({ status: "failed" });
      expect(String(record?.reason)).toMatch(/^not_allowed: /);
      expect(String(record?.reason)).not.toContain("restarted");
      expect(auditOf(m.stateDir).some((r) => r.type === "service.started")).toBe(false);
      // the local API tells the same truth
      const local = await import("../../agent/local-api.ts").then((l) =>
        l.localApiRequest(agent.apiSocket, "POST", "/v1/services/bitcoind/start", {}),
      );
      expect(local.json).toMatchObject({ result: { status: "failed" } });
      expect(String((local.json.result as { reason: string }).reason)).toMatch(/^not_allowed: /);
    } finally {
      await agent.close();
    }
  });

  it("skips a push-stream event that fails the schema, records it, and applies the next one on the same stream", async () => {
    let opened = 0;
    const counting = (ctx: ApiContext) =>
      allGroups(ctx).map((g) => ({
        ...g,
        ...(g.wsRoutes === undefined
          ? {}
          : {
              wsRoutes: g.wsRoutes.map((r) => ({
                ...r,
                onOpen: (c: Parameters<typeof r.onOpen>[0]) => {
                  opened++;
                  r.onOpen(c);
                },
              })),
            }),
      }));
    const cp = await serve({ groups: counting });
    const m = await enrolledMachine(cp);
    const agent = await m.start();
    try {
      const first = await m.ownerApi.postConsent(m.consent(1));
      await until(() => versionOf(agent) === first.version, "consent 1");
      await until(() => opened === 1, "the stream open");
      // an event whose document is not even a JWS
      const now = Math.floor(cp.clock.now() / 1000);
      const { event } = await cp.serving.store.createCommand({
        cmd_id: randomUUID(),
        worker_id: m.enrolled.worker_id,
        action: "mining.pause",
        args: {},
        jws: "not a jws",
        iat: now,
        exp: now + 600,
        seq: cp.clock.now() * 10,
        consent_identity: first.consent_sha256,
      });
      await until(
        () => auditOf(m.stateDir).some((r) => r.type === "stream.event_refused"),
        "the refusal, recorded",
      );
      expect(auditOf(m.stateDir).find((r) => r.type === "stream.event_refused")).toMatchObject({
        event_id: event.id,
      });
      const second = await m.ownerApi.postConsent(m.consent(2));
      await until(() => versionOf(agent) === second.version, "consent 2 on the same stream");
      expect(opened).toBe(1);
      const position = JSON.parse(readFileSync(join(m.stateDir, "stream.json"), "utf8")) as {
        data: { after: number };
      };
      expect(position.data.after).toBeGreaterThan(event.id);
    } finally {
      await agent.close();
    }
  });

  it("remembers commands refused before verification across a restart: not fetched nor refused again", async () => {
    const noStream = (ctx: ApiContext) => allGroups(ctx).map((g) => ({ ...g, wsRoutes: [] }));
    const cp = await serve({ groups: noStream });
    const m = await enrolledMachine(cp);
    let agent = await m.start(FACTS, { heartbeatIntervalS: 1 });
    const refusals = () =>
      auditOf(m.stateDir).filter((r) => r.type === "command.refused" && r.cmd_id === null).length;
    const polls = () => cp.seen.filter((s) => s === "GET /v1/workers/{id}/commands").length;
    const heartbeats = async () =>
      (await cp.serving.store.listHeartbeats(m.enrolled.worker_id)).length;
    try {
      const p = await m.ownerApi.postConsent(m.consent(1, ["mining.pause"]));
      await until(() => versionOf(agent) === p.version, "consent 1 (polled)");
      // a command signed by a key the control plane's key set does not hold
      const forged = signCommand({
        privateKey: generateEd25519KeyPair().privateKey,
        worker: m.enrolled.worker_id,
        action: "mining.pause",
        args: {},
        seq: cp.clock.now() * 10,
        consentSha256: p.consent_sha256,
        clock: cp.clock,
      });
      await cp.serving.store.createCommand({
        cmd_id: forged.payload.cmd_id,
        worker_id: m.enrolled.worker_id,
        action: "mining.pause",
        args: {},
        jws: forged.jws,
        iat: forged.payload.iat,
        exp: forged.payload.exp,
        seq: forged.payload.seq,
        consent_identity: p.consent_sha256,
      });
      await until(() => refusals() === 1, "refused once");
      await agent.close();

      agent = await m.start(FACTS, { heartbeatIntervalS: 1 });
      const pollsBefore = polls();
      const beats = await heartbeats();
      // heartbeats keep listing it as pending; the agent does not fetch it again
      await until(async () => (await heartbeats()) >= beats + 3, "three more heartbeats");
      expect(refusals()).toBe(1);
      expect(polls()).toBe(pollsBefore);
    } finally {
      await agent.close();
    }
  });
});
