import { describe, expect, it } from "vitest";
import { AgentdError } from "../../lib/errors.ts";
import { fakeTime } from "../../lib/timers.ts";
import { confirm } from "../../plugins/read-back.ts";

const opts = (ft: ReturnType<typeof fakeTime>) => ({
  clock: ft.clock,
  timers: ft.timers,
  deadlineMs: 10_000,
  intervalMs: 1_000,
});

/** Advances fake time one interval at a time until `p` settles. */
async function run<T>(ft: ReturnType<typeof fakeTime>, p: Promise<T>): Promise<T> {
  let done = false;
  const settled = p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  while (!done) {
    await Promise.race([settled, new Promise((r) => setImmediate(r))]);
    if (!done && ft.pending() > 0) await ft.runNext();
  }
  return p;
}

describe("confirm: an action holds only once a read shows it", () => {
  it("holds at the first read: one read, no waiting", async () => {
    const ft = fakeTime(1_000);
    const c = await confirm(
      "sleep",
      async () => 1,
      (v) => v === 1,
      opts(ft),
    );
    expect(c).toEqual({ action: "sleep", confirmedAt: 1_000, reads: 1 });
    expect(ft.pending()).toBe(0);
  });

  it("holds on the fourth read, 3 intervals later", async () => {
    const ft = fakeTime(0);
    let n = 0;
    const c = await run(
      ft,
      confirm(
        "setPools",
        async () => ++n,
        (v) => v >= 4,
        opts(ft),
      ),
    );
    expect(c).toEqual({ action: "setPools", confirmedAt: 3_000, reads: 4 });
  });

  it("never holds: AGENTD_E_MINER_NOT_CONFIRMED once the deadline has passed", async () => {
    const ft = fakeTime(0);
    const err = await run(
      ft,
      confirm(
        "wake",
        async () => 0,
        () => false,
        opts(ft),
      ),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(AgentdError);
    expect(err).toMatchObject({
      code: "AGENTD_E_MINER_NOT_CONFIRMED",
      context: { action: "wake", reads: 11, last_error: null },
    });
    expect(ft.clock.now()).toBe(10_000);
  });

  it("a miner unreachable while it applies is read again; its last error is reported", async () => {
    const ft = fakeTime(0);
    let n = 0;
    const read = async () => {
      n++;
      if (n < 3) throw new AgentdError("AGENTD_E_MINER_UNREACHABLE", "rebooting");
      return n;
    };
    expect(
      (
        await run(
          ft,
          confirm("reboot", read, (v) => v === 3, opts(ft)),
        )
      ).reads,
    ).toBe(3);
    const never = async () => {
      throw new AgentdError("AGENTD_E_MINER_TIMEOUT", "x");
    };
    const err = await run(
      ft,
      confirm("reboot", never, () => true, opts(ft)),
    ).catch((e) => e);
    expect(err).toMatchObject({
      code: "AGENTD_E_MINER_NOT_CONFIRMED",
      context: { last_error: "AGENTD_E_MINER_TIMEOUT" },
    });
  });

  it("a bug (not an AgentdError) is not swallowed", async () => {
    const ft = fakeTime(0);
    await expect(
      confirm(
        "sleep",
        async () => {
          throw new TypeError("boom");
        },
        () => true,
        opts(ft),
      ),
    ).rejects.toThrow(TypeError);
  });
});
