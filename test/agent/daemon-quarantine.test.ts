import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { RunningAgent } from "../../agent/daemon.ts";
import { FACTS, until, useServedCp } from "../control-plane/protocol/client-fixture.ts";
import { enrolledMachine } from "./daemon-fixture.ts";

/**
 * Issue 15, point 2, on the real agent against the real control plane: a quarantine from the
 * control plane counts only when it is signed (the `worker.quarantine` command the owner's
 * consent allows); the attestation reply's `quarantined` is an unsigned answer and is ignored
 * (recorded). A signed quarantine holds mining across a restart without refusing to start,
 * and the owner's next consent clears it; the agent's own clone detection is never cleared so.
 */

interface Status {
  state: string;
  decision: { mining: boolean; reasons: string[] };
  holds: string[];
  policy: { version: number | null };
}
const statusOf = (a: RunningAgent) => a.status() as unknown as Status;

function auditOf(stateDir: string): Record<string, unknown>[] {
  return readFileSync(join(stateDir, "audit.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("agentd run, quarantine", () => {
  const serve = useServedCp();

  it("ignores the control plane's unsigned quarantine (recorded); the control plane's refusal stops mining without bricking it", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    let agent = await m.start(FACTS, { attestIntervalMs: 300 });
    try {
      await m.ownerApi.postConsent(m.consent(1));
      await until(() => statusOf(agent).decision.mining, "mining");
      await cp.api(cp.adminKey).quarantine(m.enrolled.worker_id, "looks odd");
      await until(
        () => auditOf(m.stateDir).some((r) => r.type === "attestation.quarantine_ignored"),
        "the unsigned quarantine, recorded",
      );
      expect(agent.state()).not.toBe("QUARANTINED");
      expect(auditOf(m.stateDir).some((r) => r.to === "QUARANTINED")).toBe(false);
      // the control plane refuses the assignment to a worker it quarantined: mining stops
      // (an assignment is fetched at most every 10 s)
      await until(() => statusOf(agent).holds.includes("agent.unassigned"), "unassigned", 30_000);
      expect(statusOf(agent).decision.mining).toBe(false);
      // a restart is not refused
      await agent.close();
      agent = await m.start(FACTS, { attestIntervalMs: 300 });
      expect(agent.state()).not.toBe("QUARANTINED");
      // lifted, and the owner consents again: mining again
      const op = await cp.api(cp.adminKey).createApiKey({ role: "operator" });
      await cp.api(op.api_key).liftQuarantine(m.enrolled.worker_id);
      // (a consent of the stop's own second does not lift it: the tie goes to the stop)
      cp.clock.advance(2_000);
      const next = await m.ownerApi.postConsent(m.consent(2));
      await until(() => statusOf(agent).policy.version === next.version, "consent 2");
      await until(() => statusOf(agent).decision.mining, "mining again");
    } finally {
      await agent.close();
    }
  }, 60_000);

  it("a signed worker.quarantine holds across a restart without refusing to start; the owner's newer consent clears it", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    let agent = await m.start();
    try {
      await m.ownerApi.postConsent(m.consent(1, ["worker.quarantine"]));
      await until(() => statusOf(agent).decision.mining, "mining");
      const op = await cp.api(cp.adminKey).createApiKey({ role: "operator" });
      const sent = await cp.api(op.api_key).createCommand({
        worker: m.enrolled.worker_id,
        action: "worker.quarantine",
        args: { reason: "suspicious shares" },
      });
      await until(() => agent.state() === "QUARANTINED", "QUARANTINED by the signed command");
      await until(
        async () => (await cp.serving.store.getCommand(sent.cmd_id))?.result?.status === "done",
        "its result",
      );
      const entered = auditOf(m.stateDir).find((r) => r.to === "QUARANTINED");
      expect(entered).toMatchObject({ quarantine: { origin: "control_plane", consent_seq: 1 } });
      await agent.close();

      // restarted: runs, held, waiting for the owner
      agent = await m.start();
      expect(agent.state()).toBe("QUARANTINED");
      expect(statusOf(agent).holds).toContain("agent.quarantined");
      expect(statusOf(agent).decision.mining).toBe(false);

      // the owner's newer consent clears it, recorded, and mining resumes
      await m.ownerApi.postConsent(m.consent(2, ["worker.quarantine"]));
      await until(() => statusOf(agent).decision.mining, "mining again", 20_000);
      expect(statusOf(agent).holds).not.toContain("agent.quarantined");
      const cleared = auditOf(m.stateDir).find((r) => r.event === "quarantine_cleared");
      expect(cleared).toMatchObject({ from: "QUARANTINED", to: "POLICY_SYNCED" });
      expect(String(cleared?.reason)).toContain("seq 2");
    } finally {
      await agent.close();
    }
  });

  it("a clone quarantine is not cleared by the owner's newer consent, and the next start still refuses", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    let calls = 0;
    const cloned = { ...FACTS, machine_id_sha256: "c".repeat(64) };
    // the first attestations see the enrolled machine, the periodic ones another machine
    const agent = await m.start(() => (calls++ < 2 ? FACTS : cloned), { attestIntervalMs: 300 });
    try {
      await m.ownerApi.postConsent(m.consent(1));
      await until(() => agent.state() === "QUARANTINED", "QUARANTINED (clone)");
      expect(auditOf(m.stateDir).find((r) => r.to === "QUARANTINED")).toMatchObject({
        quarantine: { origin: "clone" },
      });
      const next = await m.ownerApi.postConsent(m.consent(2));
      await until(() => statusOf(agent).policy.version === next.version, "consent 2 accepted");
      expect(agent.state()).toBe("QUARANTINED");
      expect(statusOf(agent).holds).toContain("agent.quarantined");
      expect(auditOf(m.stateDir).some((r) => r.event === "quarantine_cleared")).toBe(false);
    } finally {
      await agent.close();
    }
    await expect(m.start()).rejects.toMatchObject({ code: "AGENTD_E_IDENTITY_CLONED" });
  });
});
