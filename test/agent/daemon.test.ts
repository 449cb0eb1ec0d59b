import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readEnrollment } from "../../agent/enrollment.ts";
import { initMachineIdentity } from "../../agent/identity.ts";
import { localApiRequest } from "../../agent/local-api.ts";
import { allGroups } from "../../control-plane/api/index.ts";
import { AgentdError } from "../../lib/errors.ts";
import { verifyChainLog } from "../../lib/fs/chain-log.ts";
import { signConsent, signDecommission, signRevocation } from "../../policy-guard/sign.ts";
import { FACTS, until, useServedCp } from "../control-plane/protocol/client-fixture.ts";
import { enrolledMachine } from "./daemon-fixture.ts";

/**
 * `agentd run` in-process (startAgent) against a real control plane over TLS: a cloned
 * identity, one agent per state directory, a key rotation, the control plane unreachable at
 * start, a decommission. (test/e2e/agent-run.test.ts runs it as a process.)
 */

async function refusal(p: Promise<unknown>): Promise<AgentdError> {
  try {
    await p;
  } catch (err) {
    return err as AgentdError;
  }
  throw new Error("started");
}

const statusOf = (a: { status(): Record<string, unknown> }) =>
  a.status() as {
    decision: { mining: boolean; reasons: string[] };
    policy: { version: number | null };
    keyset_seq: number;
    holds: string[];
  };

describe("agentd run", () => {
  const serve = useServedCp();

  it("a cloned identity stops, recorded, until the machine is enrolled again", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const elsewhere = await refusal(m.start({ ...FACTS, machine_id_sha256: "c".repeat(64) }));
    expect(elsewhere).toBeInstanceOf(AgentdError);
    expect(elsewhere.code).toBe("AGENTD_E_IDENTITY_CLONED");
    const audit = readFileSync(join(m.stateDir, "audit.jsonl"), "utf8").trim().split("\n");
    expect(JSON.parse(audit.at(-1) as string)).toMatchObject({
      type: "state.transition",
      to: "QUARANTINED",
    });
    // on the original machine too, now: the identity is quarantined until enrolled again
    expect((await refusal(m.start())).code).toBe("AGENTD_E_IDENTITY_CLONED");
    // enrolled again as the machine it is: a key of its own, then a new registration
    initMachineIdentity(m.stateDir, { force: true });
    await m.enroll(true);
    const agent = await m.start();
    try {
      await until(() => agent.state() === "ATTESTED", "ATTESTED");
    } finally {
      await agent.close();
    }
  });

  it("a machine enrolled again under a new key starts the policy over; the same key keeps it", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const first = await m.start();
    const published = await m.ownerApi.postConsent(m.consent(5));
    await until(() => statusOf(first).policy.version === published.version, "consent 5");
    await first.close();
    // a new key: a new worker, whose first consent is seq 1
    initMachineIdentity(m.stateDir, { force: true });
    const again = await m.enroll(true);
    expect(again.worker_id).not.toBe(m.enrolled.worker_id);
    const second = await m.start();
    try {
      const iat = Math.floor(cp.clock.now() / 1000);
      const fresh = await m.ownerApi.postConsent(
        signConsent({
          ownerKey: m.owner.privateKey,
          worker: again.worker_id,
          policyId: "daemon",
          seq: 1,
          iat,
          exp: iat + 86_400,
          rules: { upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "o.rig" }] },
        }),
      );
      await until(
        () => statusOf(second).policy.version === fresh.version,
        "the new worker's consent",
      );
      // mining once the new worker's assignment is in
      await until(() => statusOf(second).decision.mining, "mining");
      expect(second.state()).toBe("ASSIGNED");
    } finally {
      await second.close();
    }
  });

  it("refuses a second agent on the same state directory while the first runs", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const first = await m.start();
    let second: unknown;
    try {
      await m.start();
    } catch (err) {
      second = err;
    } finally {
      await first.close();
    }
    expect(second).toBeInstanceOf(AgentdError);
    expect((second as AgentdError).message).toContain(`pid ${process.pid}`);
    // released on close: the next one starts
    await (await m.start()).close();
  });

  it("fetches a rotated key set, verified under the pinned root, and keeps following the policy", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const agent = await m.start();
    try {
      const first = await m.ownerApi.postConsent(m.consent(1, ["mining.pause"]));
      await until(() => statusOf(agent).policy.version === first.version, "the first publication");
      // a rotation that drops the old keys at once: only the new set verifies from now on
      await cp.api(cp.adminKey).rotateKeys({ keep_previous: false });
      const second = await m.ownerApi.postConsent(m.consent(2, ["mining.pause"]));
      await until(
        () => statusOf(agent).policy.version === second.version,
        "a new key's publication",
      );
      // the assignment, signed by the new assignment key, is in too
      await until(() => statusOf(agent).decision.mining, "mining under the new keys");
      expect(statusOf(agent).keyset_seq).toBe(2);
      expect(readEnrollment(m.stateDir)?.keyset.seq).toBe(2);
      // a command signed by the new command key is verified and run (mining.pause: the
      // remote pause, held and persisted), with a signed result and an audit record
      const op = await cp.api(cp.adminKey).createApiKey({ role: "operator" });
      const sent = await cp
        .api(op.api_key)
        .createCommand({ worker: m.enrolled.worker_id, action: "mining.pause", args: {} });
      let result: string | null = null;
      void (async () => {
        for (;;) {
          const c = await cp.serving.store.getCommand(sent.cmd_id);
          if (c?.result !== null && c?.result !== undefined) {
            result = c.result.status;
            return;
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      await until(() => result !== null, "the command's result");
      expect(result).toBe("done");
      const audit = readFileSync(join(m.stateDir, "audit.jsonl"), "utf8");
      expect(audit).toContain('"type":"keys.updated"');
      expect(audit).toMatch(/"command_seq":\d+/);
      expect(audit).toContain(`"by":"command ${sent.cmd_id}"`);
      expect(statusOf(agent).holds).toEqual(["agent.paused_remotely"]);
      expect(statusOf(agent).decision).toEqual({
        mining: false,
        reasons: ["agent.paused_remotely"],
      });
    } finally {
      await agent.close();
    }
  });

  it("starts on the stored policy when the control plane is unreachable", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const online = await m.start();
    const published = await m.ownerApi.postConsent(m.consent(1));
    await until(() => statusOf(online).policy.version === published.version, "the publication");
    await until(() => statusOf(online).decision.mining, "mining (the assignment in)");
    await online.close();
    await cp.serving.close(); // the control plane goes away
    const offline = await m.start();
    try {
      // the stored policy, and the kept assignment (verified again; none can be fetched)
      expect(statusOf(offline).policy.version).toBe(published.version);
      expect(statusOf(offline).decision).toEqual({ mining: true, reasons: [] });
      expect(offline.state()).toBe("ASSIGNED");
    } finally {
      await offline.close();
    }
  });

  it("a decommission ends in TERMINATED with the credentials wiped, and says it is over", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const agent = await m.start();
    try {
      let over = false;
      void agent.terminated.then(() => {
        over = true;
      });
      // (pushed to a running session; a machine decommissioned while it cannot attest learns
      // it only from the owner, through its local API)
      await until(() => agent.state() === "ATTESTED", "a session");
      await m.ownerApi.postRevocation(
        m.enrolled.worker_id,
        signDecommission({
          ownerKey: m.owner.privateKey,
          worker: m.enrolled.worker_id,
          iat: Math.floor(cp.clock.now() / 1000),
        }),
      );
      await until(() => over, "the end");
      expect(agent.state()).toBe("TERMINATED");
      expect(existsSync(join(m.stateDir, "machine.key.pem"))).toBe(false);
      expect(existsSync(join(m.stateDir, "enrollment.json"))).toBe(false);
      expect(readFileSync(join(m.stateDir, "audit.jsonl"), "utf8")).toContain("credentials.wiped");
    } finally {
      await agent.close();
    }
  });

  it("a revocation of an older consent leaves the one in force: not REVOKED, still mining", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const agent = await m.start();
    const audit = () => readFileSync(join(m.stateDir, "audit.jsonl"), "utf8");
    try {
      await m.ownerApi.postConsent(m.consent(1));
      const second = await m.ownerApi.postConsent(m.consent(2));
      await until(() => statusOf(agent).policy.version === second.version, "consent 2");
      await until(() => statusOf(agent).decision.mining, "mining under consent 2");
      const iat = Math.floor(cp.clock.now() / 1000);
      const revoke = (throughSeq: number) =>
        m.ownerApi.postRevocation(
          m.enrolled.worker_id,
          signRevocation({
            ownerKey: m.owner.privateKey,
            worker: m.enrolled.worker_id,
            throughSeq,
            iat,
          }),
        );
      await revoke(1);
      await until(() => audit().includes('"through_seq":1'), "the revocation of seq 1");
      expect(agent.state()).not.toBe("REVOKED");
      expect(statusOf(agent).decision.mining).toBe(true);
      // the one in force, revoked: REVOKED at once
      await revoke(2);
      await until(() => agent.state() === "REVOKED", "REVOKED");
      expect(statusOf(agent).decision).toMatchObject({ mining: false });
    } finally {
      await agent.close();
    }
  });

  it("commands run only under a consent in force; a restart resumes the stream where it was", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    let agent = await m.start();
    const audit = () => readFileSync(join(m.stateDir, "audit.jsonl"), "utf8");
    const op = await cp.api(cp.adminKey).createApiKey({ role: "operator" });
    const send = () =>
      cp
        .api(op.api_key)
        .createCommand({ worker: m.enrolled.worker_id, action: "mining.pause", args: {} });
    const resultOf = async (id: string) => (await cp.serving.store.getCommand(id))?.result ?? null;
    try {
      const published = await m.ownerApi.postConsent(m.consent(1, ["mining.pause"]));
      await until(() => statusOf(agent).policy.version === published.version, "consent 1");
      // revoked on the machine itself: the control plane does not know, and still sends
      const local = await localApiRequest(agent.apiSocket, "POST", "/v1/revocations", {
        document: signRevocation({
          ownerKey: m.owner.privateKey,
          worker: m.enrolled.worker_id,
          throughSeq: 1,
          iat: Math.floor(cp.clock.now() / 1000),
        }),
      });
      expect(local.status).toBe(200);
      await until(() => agent.state() === "REVOKED", "REVOKED");
      const sent = await send();
      await until(async () => (await resultOf(sent.cmd_id)) !== null, "the command's result");
      expect(await resultOf(sent.cmd_id)).toMatchObject({ status: "refused" });
      expect(statusOf(agent).holds).not.toContain("agent.paused_remotely"); // it did not run
      const events = (audit().match(/"type":"revocation.accepted"/g) ?? []).length;
      expect(events).toBe(1);
      await agent.close();
      // restarted: the stream resumes after the last event handled — nothing is handled twice
      const position = () =>
        (
          JSON.parse(readFileSync(join(m.stateDir, "stream.json"), "utf8")) as {
            data: { after: number };
          }
        ).data.after;
      const before = position();
      const refused = () => (audit().match(/"type":"document.refused"/g) ?? []).length;
      const refusedBefore = refused();
      agent = await m.start();
      await m.ownerApi.postConsent(m.consent(2, ["mining.pause"]));
      await until(() => position() > before, "a new event through the resumed stream");
      expect((audit().match(/"type":"revocation.accepted"/g) ?? []).length).toBe(1);
      // (the revoked consent's publication, had the stream started over, would be refused again)
      expect(refused()).toBe(refusedBefore);
      expect((audit().match(new RegExp(`"cmd_id":"${sent.cmd_id}"`, "g")) ?? []).length).toBe(1);
    } finally {
      await agent.close();
    }
  });

  it("once stopped, it sends nothing more to the control plane", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const agent = await m.start(FACTS, { heartbeatIntervalS: 1, attestIntervalMs: 200 });
    await until(() => cp.seen.filter((r) => r.includes("attest")).length >= 2, "re-attestation");
    await agent.close();
    const after = cp.seen.length;
    await new Promise((r) => setTimeout(r, 1_500));
    expect(cp.seen.slice(after)).toEqual([]);
    expect(existsSync(join(m.stateDir, "agentd.lock"))).toBe(false);
    expect(existsSync(join(m.stateDir, "agentd.sock"))).toBe(false);
  });

  it("without the push stream, commands arrive by polling when heartbeats say some are pending", async () => {
    const noStream = (ctx: Parameters<typeof allGroups>[0]) =>
      allGroups(ctx).map((g) => ({ ...g, wsRoutes: [] }));
    const cp = await serve({ groups: noStream });
    const m = await enrolledMachine(cp);
    const agent = await m.start(FACTS, { heartbeatIntervalS: 1 });
    try {
      const published = await m.ownerApi.postConsent(m.consent(1, ["mining.pause"]));
      await until(
        () => statusOf(agent).policy.version === published.version,
        "the publication (poll)",
      );
      const op = await cp.api(cp.adminKey).createApiKey({ role: "operator" });
      const sent = await cp
        .api(op.api_key)
        .createCommand({ worker: m.enrolled.worker_id, action: "mining.pause", args: {} });
      await until(
        () => statusOf(agent).holds.includes("agent.paused_remotely"),
        "the pause, polled",
      );
      await until(
        async () => (await cp.serving.store.getCommand(sent.cmd_id))?.result?.status === "done",
        "its result",
      );
      // once, however many heartbeats listed it
      await new Promise((r) => setTimeout(r, 1_500));
      const audit = readFileSync(join(m.stateDir, "audit.jsonl"), "utf8");
      expect((audit.match(new RegExp(`"cmd_id":"${sent.cmd_id}"`, "g")) ?? []).length).toBe(1);
    } finally {
      await agent.close();
    }
  });

  it("a torn audit tail (a write cut by a power loss) is cut on start and recorded in the chain", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    await (await m.start()).close();
    const path = join(m.stateDir, "audit.jsonl");
    appendFileSync(path, '{"type":"half a rec');
    const agent = await m.start();
    await agent.close();
    const text = readFileSync(path, "utf8");
    expect(text).not.toContain("half a rec");
    expect(text).toMatch(/"torn_bytes":19,"type":"audit.tail_repaired"/);
    expect(verifyChainLog(path).ok).toBe(true);
  });
});
