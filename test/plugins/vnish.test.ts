/**
 * The VNish driver against the simulated VNish (sim/asic/vnish-rest.ts): detection, every
 * read field, every action read back (VNish answers success on failure), the unlock token
 * (refreshed when refused, never in an error), and the faults.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { detectFamily } from "../../plugins/registry.ts";
import { VnishDriver } from "../../plugins/vnish/vnish.ts";
import { context, drive, rejection, type SteppedTime, steppedTime } from "./antminer-sim.ts";
import { useVnishSims } from "./vnish-sim.ts";

let time: SteppedTime;
beforeEach(() => {
  time = steppedTime();
});
const start = useVnishSims(() => time);

describe("VNish: detection and reads", () => {
  it("detectFamily finds vnish by name in the 4028 reply; detect reads /api/v1/info", async () => {
    const { endpoint } = await start();
    expect(await detectFamily(endpoint, context(time))).toBe("vnish");
    const id = await new VnishDriver(endpoint, context(time)).detect();
    expect(id).toMatchObject({
      family: "vnish",
      model: "Antminer S19 Pro",
      firmware: "Vnish 1.3.4",
      mac: "02:a0:5e:00:00:42",
      serial: "VNSIM0000000042",
      verifiedOnHardware: false,
      capabilities: { pools: "yes", sleep: "yes", power: "estimated", powerTarget: null },
    });
  });

  it("reads hashrate and uptime (4028), boards, fans, estimated power, pools, mode (REST)", async () => {
    const { endpoint } = await start();
    const d = new VnishDriver(endpoint, context(time));
    const r = await d.read();
    expect(r.hashrateGhs).toBeGreaterThanOrEqual(110_000);
    expect(r.uptimeS).toBe(7200);
    expect(r.boards.map((b) => b.index)).toEqual([1, 2, 3]);
    expect(r.boards[0]).toMatchObject({ pcbTempC: [48, 61], chipTempC: [63, 76] });
    expect(r.boards[0]?.hashrateGhs).toBeGreaterThan(36_000);
    expect(r.fans.map((f) => f.rpm)).toEqual([4800, 4830, 4860, 4890]);
    // power_consumption, not power_usage (29: the efficiency alias)
    expect(r.power).toMatchObject({ provenance: "estimated", source: "firmware" });
    expect(r.power?.watts).toBeGreaterThanOrEqual(3240);
    expect(r.mode).toBe("normal");
    expect(r.pools).toEqual([
      {
        index: 0,
        url: "stratum+tcp://stratum.owner-pool.example:3333",
        user: "owner.rig7",
        status: "alive",
        active: true,
      },
    ]);
    expect(r.errors).toEqual([]);
    const r2 = await d.read();
    expect(r2.power?.watts).not.toBe(r.power?.watts);
  });
});

describe("VNish: actions with the unlock token, each read back", () => {
  it("setPools through REST settings, read back; the token unlocked once with the password", async () => {
    const { sim, endpoint } = await start({ password: "n0t-default" });
    const d = new VnishDriver(
      endpoint,
      context(time, { username: "admin", password: "n0t-default" }),
    );
    const target = [
      { url: "stratum+tcp://pool.consent.example:3333", user: "farm.w1", password: "p" },
      { url: "stratum+tcp://backup.consent.example:3333", user: "farm.w1", password: "q" },
    ];
    await drive(time, () => d.setPools(target));
    expect(sim.pools.map((p) => [p.url, p.user, p.pass])).toEqual([
      ["pool.consent.example:3333", "farm.w1", "p"],
      ["backup.consent.example:3333", "farm.w1", "q"],
      ["", "", ""],
    ]);
    expect(sim.requests.filter((r) => r === "POST /api/v1/unlock")).toHaveLength(1);
    expect(sim.requests).toContain("POST /api/v1/settings bearer");
  });

  it("pause and resume, read back through miner_state", async () => {
    const { sim, endpoint } = await start();
    const d = new VnishDriver(endpoint, context(time));
    await drive(time, () => d.sleep());
    expect(sim.state).toBe("stopped");
    expect((await d.read()).mode).toBe("sleep");
    await drive(time, () => d.wake());
    expect(sim.state).toBe("mining");
  });

  it("reboot, confirmed by uptime from zero; the token it ended is renewed on the next write", async () => {
    const { sim, endpoint } = await start();
    const d = new VnishDriver(endpoint, context(time));
    const c = await drive(time, () => d.reboot());
    expect(c.action).toBe("reboot");
    await drive(time, () => d.sleep());
    expect(sim.state).toBe("stopped");
    expect(sim.requests.filter((r) => r === "POST /api/v1/unlock")).toHaveLength(2);
  });

  it("an expired token is refreshed once; a wrong password is AUTH; no token or password in errors", async () => {
    const { sim, endpoint } = await start();
    const d = new VnishDriver(endpoint, context(time));
    await drive(time, () => d.sleep());
    sim.expireTokens();
    await drive(time, () => d.wake());
    expect(sim.state).toBe("mining");
    expect(sim.tokensIssued).toHaveLength(2);
    const bad = new VnishDriver(
      endpoint,
      context(time, { username: "admin", password: "wrong-pw" }),
    );
    const err = await rejection(bad.sleep());
    expect(err.code).toBe("AGENTD_E_MINER_AUTH");
    const text = JSON.stringify({ m: err.message, c: err.context });
    expect(text).not.toContain("wrong-pw");
    for (const t of sim.tokensIssued) expect(text).not.toContain(t);
  });

  it("setPowerTarget and setPowerMode are unsupported, said so", async () => {
    const { endpoint } = await start();
    const d = new VnishDriver(endpoint, context(time));
    expect((await rejection(d.setPowerTarget(3000))).code).toBe("AGENTD_E_MINER_UNSUPPORTED");
    expect((await rejection(d.setPowerMode("low"))).code).toBe("AGENTD_E_MINER_UNSUPPORTED");
  });
});

describe("VNish faults", () => {
  it("success answered but nothing applied: NOT_CONFIRMED for pools and for pause", async () => {
    const { sim, endpoint } = await start({ fault: "ignore-writes" });
    const d = new VnishDriver(endpoint, context(time));
    const e1 = await rejection(
      drive(time, () =>
        d.setPools([{ url: "stratum+tcp://p.example:1", user: "u", password: "x" }]),
      ),
    );
    expect(e1.code).toBe("AGENTD_E_MINER_NOT_CONFIRMED");
    const e2 = await rejection(drive(time, () => d.sleep()));
    expect(e2.code).toBe("AGENTD_E_MINER_NOT_CONFIRMED");
    expect(sim.state).toBe("mining");
  });

  it("malformed JSON is REPLY_INVALID, a 10 MB reply TOO_LARGE; the healthy miner beside reads", async () => {
    const bad = await start({ fault: "malformed" });
    const huge = await start({ fault: "huge" });
    const good = await start();
    const ctx = context(time);
    const [e1, e2, ok] = await Promise.all([
      rejection(new VnishDriver(bad.endpoint, ctx).read()),
      rejection(new VnishDriver(huge.endpoint, ctx).read()),
      new VnishDriver(good.endpoint, ctx).read(),
    ]);
    expect(e1.code).toBe("AGENTD_E_MINER_REPLY_INVALID");
    expect(e2.code).toBe("AGENTD_E_MINER_REPLY_TOO_LARGE");
    expect(ok.boards).toHaveLength(3);
  });
});
