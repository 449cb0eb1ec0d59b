import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadControlPlaneKeys } from "../../control-plane/keys/load.ts";
import { signCommand } from "../../control-plane/protocol/documents/command.ts";
import { layoutOf } from "../../control-plane/serve.ts";
import { signPublication } from "../../policy-guard/sign.ts";
import { until, useServedCp } from "../control-plane/protocol/client-fixture.ts";
import { enrolledMachine } from "./daemon-fixture.ts";

/**
 * Issue 15 through the real control plane and a running agent: stolen `publication` and
 * `command` keys (copied from the control plane's key directory) spend the publication
 * version and the command seq of consent 1 — 2^53 − 1 each, stored in the control plane's
 * database as a compromised control plane would, and pushed to the machine. The owner's
 * consent 2, published by the (again honest) control plane, recovers both: the control
 * plane's counters and the agent's restart for it; the machine mines and runs a command of
 * consent 2; the captured command of consent 1 and the command of consent 2, pushed again,
 * run nothing.
 */

const MAX = Number.MAX_SAFE_INTEGER;

const statusOf = (a: { status(): Record<string, unknown> }) =>
  a.status() as { decision: { mining: boolean }; policy: { version: number | null } };

function auditRecords(stateDir: string): Record<string, unknown>[] {
  return readFileSync(join(stateDir, "audit.jsonl"), "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("counters spent by stolen keys (issue 15)", () => {
  const serve = useServedCp();

  it("the owner's next consent recovers the publication version and the command seq", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const worker = m.enrolled.worker_id;
    const store = cp.serving.store;
    const stolen = loadControlPlaneKeys(layoutOf(cp.dir).keys).signing;
    const commandsRan = (cmdId: string, type: string, reason?: string) =>
      auditRecords(m.stateDir).some(
        (r) =>
          r.cmd_id === cmdId && r.type === type && (reason === undefined || r.reason === reason),
      );
    const agent = await m.start();
    try {
      const consent1 = m.consent(1, ["mining.pause", "mining.resume"]);
      const p1 = await m.ownerApi.postConsent(consent1);
      await until(() => statusOf(agent).policy.version === p1.version, "consent 1");

      // The stolen publication key countersigns consent 1 with the last version there is.
      const now = Math.floor(cp.clock.now() / 1000);
      await store.storePublication({
        worker_id: worker,
        version: MAX,
        consent_identity: p1.consent_sha256,
        jws: signPublication({
          cpKey: stolen.publication.privateKey,
          consent: consent1,
          worker,
          version: MAX,
          iat: now,
          ttlS: 3600,
        }),
        iat: now,
        exp: now + 3600,
        stop: false,
      });
      await until(() => statusOf(agent).policy.version === MAX, "the stolen publication");

      // The stolen command key sends a command of consent 1 with the last seq there is.
      const captured = signCommand({
        privateKey: stolen.command.privateKey,
        worker,
        seq: MAX,
        consentSha256: p1.consent_sha256,
        clock: cp.clock,
        action: "mining.resume",
        args: {},
      });
      await store.createCommand({
        cmd_id: captured.payload.cmd_id,
        worker_id: worker,
        action: "mining.resume",
        args: {},
        jws: captured.jws,
        iat: captured.payload.iat,
        exp: captured.payload.exp,
        seq: MAX,
        consent_identity: p1.consent_sha256,
      });
      await until(
        () => commandsRan(captured.payload.cmd_id, "command.executed"),
        "the stolen command",
      );

      // The owner signs consent 2; the control plane publishes it with a fresh version.
      const p2 = await m.ownerApi.postConsent(m.consent(2, ["mining.pause", "mining.resume"]));
      expect(p2.version).toBeLessThan(MAX);
      await until(() => statusOf(agent).policy.version === p2.version, "consent 2");
      await until(() => statusOf(agent).decision.mining, "mining under consent 2");

      // A command of consent 2, with a fresh seq, runs.
      const op = await cp.api(cp.adminKey).createApiKey({ role: "operator" });
      const sent = await cp
        .api(op.api_key)
        .createCommand({ worker, action: "mining.resume", args: {} });
      expect(sent.consent_sha256).toBe(p2.consent_sha256);
      expect(sent.seq).toBeLessThan(MAX);
      await until(() => commandsRan(sent.cmd_id, "command.executed"), "consent 2's command");

      // Both pushed again: the captured one is of another consent, the other ran already.
      const at = Math.floor(cp.clock.now() / 1000);
      for (const ref of [captured.payload.cmd_id, sent.cmd_id]) {
        await store.appendStreamEvent({ worker_id: worker, kind: "command", ref, at });
      }
      await until(
        () =>
          commandsRan(captured.payload.cmd_id, "command.refused", "command.consent_mismatch") &&
          commandsRan(sent.cmd_id, "command.refused", "command.replayed"),
        "both replays refused",
      );
      const runs = auditRecords(m.stateDir).filter((r) => r.type === "command.executed");
      expect(runs.map((r) => r.cmd_id)).toEqual([captured.payload.cmd_id, sent.cmd_id]);
      expect(statusOf(agent).decision.mining).toBe(true);
    } finally {
      await agent.close();
    }
  });
});
