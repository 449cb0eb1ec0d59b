import { describe, expect, it } from "vitest";
import { actOnService } from "../../agent/service-outcome.ts";
import { fail } from "../../lib/errors.ts";
import { fakeTime } from "../../lib/timers.ts";
import type { ServiceStatus } from "../../supervisor/reconciler.ts";

/**
 * What an action on a service reports (agent/service-outcome.ts), against a supervisor status
 * the test moves, on fake time: what happened, never what was asked.
 */

function rig(initial: Partial<ServiceStatus> = {}) {
  const t = fakeTime(1_000_000);
  let status: ServiceStatus = {
    kind: "bitcoind",
    allowed: true,
    image: null,
    state: "stopped",
    healthy: false,
    hold: null,
    restarts: 0,
    lastExitCode: null,
    ...initial,
  };
  const listeners = new Set<() => void>();
  const ran: string[] = [];
  const set = (s: Partial<ServiceStatus>, event = true) => {
    status = { ...status, ...s };
    if (event) for (const l of listeners) l();
  };
  const act = (
    action: "start" | "stop" | "restart",
    run: () => Promise<void> = async () => {
      ran.push(action);
    },
  ) =>
    actOnService({
      kind: "bitcoind",
      action,
      status: () => status,
      refused: () => undefined,
      run,
      onEvent: (l) => {
        listeners.add(l);
        return () => listeners.delete(l);
      },
      timers: t.timers,
      waitMs: 10_000,
      pollMs: 500,
    });
  /** Until the action is waiting (it subscribed): the wait's timers are armed. */
  const waiting = async () => {
    while (listeners.size === 0) await new Promise((r) => setImmediate(r));
  };
  return { t, set, act, ran, listeners, waiting };
}

describe("the outcome of a service action", () => {
  it("a kind that may not run is not_allowed and nothing is done", async () => {
    const r = rig({ allowed: false, state: "absent" });
    const out = await r.act("restart");
    expect(out.status).toBe("failed");
    expect(out.reason).toMatch(/^not_allowed: bitcoind is not in the consent's services/);
    expect(r.ran).toEqual([]);
  });

  it("done once the supervisor says running (an event), with the state seen", async () => {
    const r = rig();
    const pending = r.act("restart");
    await r.t.advance(1_000);
    r.set({ state: "running", healthy: true });
    const out = await pending;
    expect(out).toMatchObject({ status: "done", reason: "bitcoind restarted: running" });
    expect(r.ran).toEqual(["restart"]);
    expect(r.listeners.size).toBe(0);
  });

  it("health has no event: a look every pollMs finds it", async () => {
    const r = rig();
    const pending = r.act("start");
    await r.waiting();
    r.set({ state: "running" }, false);
    await r.t.advance(500);
    expect((await pending).status).toBe("done");
  });

  it("not_running when it is not running at the end of the wait, with its hold", async () => {
    const r = rig();
    const pending = r.act("start");
    await r.waiting();
    r.set({ state: "unhealthy", hold: "crashloop" });
    await r.t.advance(9_999);
    let settled = false;
    void pending.then(() => {
      settled = true;
    });
    await r.t.advance(0);
    expect(settled).toBe(false);
    await r.t.advance(1);
    const out = await pending;
    expect(out.status).toBe("failed");
    expect(out.reason).toBe(
      "not_running: bitcoind is unhealthy, held: crashloop 10 s after the start",
    );
  });

  it("still_running when a stop did not stop it; failed with the error's code when it throws", async () => {
    const r = rig({ state: "running" });
    const pending = r.act("stop");
    await r.waiting();
    await r.t.advance(10_000);
    expect((await pending).reason).toMatch(/^still_running: bitcoind is running/);
    const thrown = await r.act("restart", async () => {
      throw fail("AGENTD_E_IO", "the driver is gone");
    });
    expect(thrown).toMatchObject({ status: "failed", reason: "failed: AGENTD_E_IO" });
  });
});
