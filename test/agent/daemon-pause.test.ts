import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { RunningAgent } from "../../agent/daemon.ts";
import { localApiRequest } from "../../agent/local-api.ts";
import { miningAnswerText } from "../../cli/commands/local-views.ts";
import { type StatusDoc, statusText } from "../../cli/commands/status.ts";
import { until, useServedCp } from "../control-plane/protocol/client-fixture.ts";
import { enrolledMachine } from "./daemon-fixture.ts";

/**
 * Issue 15, point 3, on the real agent against the real control plane: a hold set on the
 * machine (`agentd mining pause`, the local API) is lifted only on the machine; a remote
 * `mining.pause` is its own hold, lifted by `mining.resume`; both survive a restart, and
 * status says who paused and since when.
 */

interface Pause {
  readonly by: string;
  readonly since: number;
}
interface Status {
  state: string;
  decision: { mining: boolean; reasons: string[] };
  holds: string[];
  pause: { local: Pause | null; remote: Pause | null };
}
const statusOf = (a: RunningAgent) => a.status() as unknown as Status;

describe("agentd run, pauses", () => {
  const serve = useServedCp();

  it("a remote resume never lifts the local pause; a local resume never lifts the remote one; both survive a restart", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    let agent = await m.start();
    const op = await cp.api(cp.adminKey).createApiKey({ role: "operator" });
    const command = async (action: "mining.pause" | "mining.resume") => {
      const sent = await cp
        .api(op.api_key)
        .createCommand({ worker: m.enrolled.worker_id, action, args: {} });
      await until(
        async () => (await cp.serving.store.getCommand(sent.cmd_id))?.result != null,
        `the result of ${action}`,
      );
      const c = await cp.serving.store.getCommand(sent.cmd_id);
      const payload = JSON.parse(
        Buffer.from(c?.result?.jws.split(".")[1] ?? "", "base64url").toString(),
      ) as { status: string; reason: string };
      return { cmdId: sent.cmd_id, ...payload };
    };
    try {
      await m.ownerApi.postConsent(m.consent(1, ["mining.pause", "mining.resume"]));
      await until(() => statusOf(agent).decision.mining, "mining");

      // paused on the machine
      const paused = await localApiRequest(agent.apiSocket, "POST", "/v1/mining/pause", {});
      expect(paused.status).toBe(200);
      expect(statusOf(agent).pause.local).toMatchObject({ by: "local API" });
      expect(statusOf(agent).pause.remote).toBeNull();
      const text = statusText(agent.status() as unknown as StatusDoc, cp.clock.now());
      expect(text).toContain("paused locally since");

      // a remote resume: done, but it says the local pause stays — and it does
      const resumed = await command("mining.resume");
      expect(resumed.status).toBe("done");
      expect(resumed.reason).toContain("still paused locally");
      expect(statusOf(agent).holds).toContain("agent.paused");
      expect(statusOf(agent).decision.mining).toBe(false);

      // a remote pause on top; a restart keeps both
      const remote = await command("mining.pause");
      expect(remote.status).toBe("done");
      expect(statusOf(agent).holds).toEqual(
        expect.arrayContaining(["agent.paused", "agent.paused_remotely"]),
      );
      await agent.close();
      agent = await m.start();
      expect(statusOf(agent).holds).toEqual(
        expect.arrayContaining(["agent.paused", "agent.paused_remotely"]),
      );
      expect(statusOf(agent).pause.remote).toMatchObject({ by: `command ${remote.cmdId}` });
      expect(statusText(agent.status() as unknown as StatusDoc, cp.clock.now())).toContain(
        `paused remotely by command ${remote.cmdId} since`,
      );

      // `agentd mining resume` lifts the local pause and says the remote one remains
      const local = await localApiRequest(agent.apiSocket, "POST", "/v1/mining/resume", {});
      expect(local.status).toBe(200);
      expect(statusOf(agent).holds).not.toContain("agent.paused");
      expect(statusOf(agent).holds).toContain("agent.paused_remotely");
      expect(miningAnswerText(local.json, cp.clock.now())).toContain("still paused remotely");

      // the remote resume lifts the remote pause: mining again
      expect((await command("mining.resume")).status).toBe("done");
      await until(() => statusOf(agent).decision.mining, "mining again");
      const audit = readFileSync(join(m.stateDir, "audit.jsonl"), "utf8");
      expect(audit).toContain('"hold":"agent.paused_remotely"');
    } finally {
      await agent.close();
    }
  });
});
