import { describe, expect, it } from "vitest";
import type { RunningAgent } from "../../agent/daemon.ts";
import { type StatusDoc, statusText } from "../../cli/commands/status.ts";
import { until, useServedCp } from "../control-plane/protocol/client-fixture.ts";
import { ensureDriverUser } from "../support/driver-user.ts";
import { enrolledMachine } from "./daemon-fixture.ts";

/**
 * Issue 16, on the real agent: whether the ASIC drivers can run is checked at start and said
 * in status; where the drivers' user does not exist they do not run (fail closed) and the
 * Stratum data path mines all the same.
 */

interface Drivers {
  state: string;
  user: string | null;
  isolated: boolean;
  code: string | null;
  reason: string | null;
  starts: number;
}
const driversOf = (a: RunningAgent) => (a.status() as { drivers: Drivers }).drivers;

describe("agentd run, the ASIC drivers' host", () => {
  const serve = useServedCp();

  it("without the drivers' user: drivers do not run, status says why, and mining goes on", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp, { config: { "drivers.user": "agentd-no-such-user" } });
    const agent = await m.start();
    try {
      const d = driversOf(agent);
      expect(d).toMatchObject({
        state: "refused",
        user: "agentd-no-such-user",
        isolated: true,
        code: "AGENTD_E_DRIVER_USER_MISSING",
        starts: 0,
      });
      expect(d.reason).toContain("useradd");
      const text = statusText(agent.status() as unknown as StatusDoc, cp.clock.now());
      expect(text).toMatch(
        /ASIC drivers\s+do not run: the drivers' OS user "agentd-no-such-user" does not exist/,
      );
      await m.ownerApi.postConsent(m.consent(1));
      await until(
        () => (agent.status() as { decision: { mining: boolean } }).decision.mining,
        "mining",
      );
    } finally {
      await agent.close();
    }
  });

  it("with it: ready and isolated, no process until the first miner; as the invoking user only when asked, and said", async () => {
    ensureDriverUser();
    const cp = await serve();
    const m = await enrolledMachine(cp);
    let agent = await m.start();
    try {
      expect(driversOf(agent)).toMatchObject({
        state: "idle",
        user: "agentd-drivers",
        isolated: true,
        code: null,
        starts: 0,
      });
      expect(statusText(agent.status() as unknown as StatusDoc, cp.clock.now())).toContain(
        "ready as agentd-drivers (the host starts with the first miner)",
      );
      await agent.close();
      agent = await m.start(undefined, { driversAsInvokingUser: true });
      expect(driversOf(agent)).toMatchObject({ state: "idle", user: null, isolated: false });
      expect(statusText(agent.status() as unknown as StatusDoc, cp.clock.now())).toContain(
        "not isolated",
      );
    } finally {
      await agent.close();
    }
  });
});
