/**
 * The LuxOS driver against the simulated LUXminer (sim/asic/luxos-api.ts, started from the
 * captured S19k Pro replies): detection, every read field, every action read back, and the
 * one-session-at-a-time rule.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { LuxosDriver } from "../../plugins/luxos/luxos.ts";
import { detectFamily } from "../../plugins/registry.ts";
import { context, drive, rejection, type SteppedTime, steppedTime } from "./antminer-sim.ts";
import { useLuxosSims } from "./luxos-sim.ts";

let time: SteppedTime;
beforeEach(() => {
  time = steppedTime();
});
const start = useLuxosSims(() => time);

describe("LuxOS: detection and reads", () => {
  it("detectFamily finds luxos by name in the version reply; detect says who it is", async () => {
    const { endpoint } = await start();
    expect(await detectFamily(endpoint, context(time))).toBe("luxos");
    const id = await new LuxosDriver(endpoint, context(time)).detect();
    expect(id).toMatchObject({
      family: "luxos",
      model: "Antminer S19k Pro",
      mac: "62:f7:5e:b7:10:46",
      serial: "JYZZB0UBDJABF06RB",
      verifiedOnHardware: false,
      capabilities: {
        pools: "yes",
        sleep: "yes",
        reboot: "yes",
        power: "estimated",
        powerModes: ["low", "normal", "high"],
      },
    });
    expect(id.firmware).toContain("LUXminer 2025.4.8.220305-57b389c7");
    expect(id.capabilities.powerTarget?.minW).toBe(784);
  });

  it("reads hashrate, boards, fans, power with provenance, mode, pools, uptime", async () => {
    const { sim, endpoint } = await start();
    const d = new LuxosDriver(endpoint, context(time));
    const r = await d.read();
    expect(r.hashrateGhs).toBeGreaterThan(59_000);
    expect(r.boards.map((b) => [b.index, b.chips, b.hashrateGhs])).toEqual([
      [1, 77, 18910.28],
      [2, 77, 18939.95],
      [3, 77, 19067.67],
    ]);
    expect(r.boards[0]?.pcbTempC).toEqual([47, 34, 34, 47]);
    expect(r.boards[1]?.chipTempC).toEqual([47, 33, 33, 47]);
    expect(r.fans.map((f) => f.rpm)).toEqual([1920, 1920, 2340, 2340]);
    // `power` says PSU: false and psuget is absent: the firmware's estimate
    expect(r.power).toMatchObject({ provenance: "estimated", source: "firmware" });
    expect(r.power?.watts).toBeGreaterThan(1000);
    expect(r.mode).toBe("normal");
    expect(r.pools).toHaveLength(sim.slots.length);
    expect(r.pools[0]).toMatchObject({
      url: "stratum+tcp://ca.stratum.braiins.com:3333",
      active: true,
      status: "alive",
    });
    expect(r.uptimeS).toBe(3453);
    expect(r.errors).toEqual([]);
    // every read is a new one: the simulator moves values on each read
    const r2 = await d.read();
    expect(r2.hashrateGhs).not.toBe(r.hashrateGhs);
  });
});

describe("LuxOS: power measured by the PSU", () => {
  it("psuget's input power, when the PSU reports it, is measured; N/A falls back to the estimate", async () => {
    const { sim, endpoint } = await start();
    const d = new LuxosDriver(endpoint, context(time));
    expect((await d.read()).power?.provenance).toBe("estimated");
    sim.psuInputWatts = 1234.5;
    expect((await d.read()).power).toEqual({
      watts: 1234.5,
      provenance: "measured",
      source: "psu",
    });
    expect((await d.detect()).capabilities.power).toBe("measured");
  });
});

describe("LuxOS: actions, each read back", () => {
  it("setPools: addpool, switchpool, removepool, read back through pools; no session needed", async () => {
    const { sim, endpoint } = await start();
    const d = new LuxosDriver(endpoint, context(time));
    const target = [
      { url: "stratum+tcp://pool.consent.example:3333", user: "farm.w1", password: "a,b" },
      { url: "stratum+tcp://backup.consent.example:3333", user: "farm.w1", password: "x" },
    ];
    const c = await drive(time, () => d.setPools(target));
    expect(c.action).toBe("setPools");
    expect(sim.slots.map((s) => [s.url, s.user, s.pass])).toEqual([
      [target[0]?.url, "farm.w1", "a,b"],
      [target[1]?.url, "farm.w1", "x"],
    ]);
    expect(sim.active).toBe(0);
    expect(sim.received.some((q) => q.command === "logon")).toBe(false);
  });

  it("sleep and wake through curtail inside a session of our own, logged off after", async () => {
    const { sim, endpoint } = await start();
    const d = new LuxosDriver(endpoint, context(time));
    await drive(time, () => d.sleep());
    expect(sim.curtailed).toBe(true);
    expect((await d.read()).mode).toBe("sleep");
    const curtail = sim.received.find((q) => q.command === "curtail");
    expect(curtail?.parameter).toMatch(/^[^,]+,sleep$/);
    expect(sim.session).toBeNull();
    await drive(time, () => d.wake());
    expect(sim.curtailed).toBe(false);
    expect(sim.received.filter((q) => q.command === "logoff")).toHaveLength(2);
  });

  it("sleep persists across a reboot; reboot is confirmed by uptime starting again", async () => {
    const { sim, endpoint } = await start();
    const d = new LuxosDriver(endpoint, context(time));
    await drive(time, () => d.sleep());
    const c = await drive(time, () => d.reboot());
    expect(c.action).toBe("reboot");
    expect(sim.received.some((q) => q.command === "rebootdevice")).toBe(true);
    expect((await d.read()).mode).toBe("sleep");
  });

  it("setPowerTarget: ATM off first, then the highest profile under the target", async () => {
    const { sim, endpoint } = await start();
    const d = new LuxosDriver(endpoint, context(time));
    await drive(time, () => d.setPowerTarget(1000));
    expect(sim.profile).toBe("240MHz");
    expect(sim.atm).toBe(false);
    const order = sim.received.map((q) => q.command).filter((c) => c !== "config");
    expect(order.indexOf("atmset")).toBeLessThan(order.indexOf("profileset"));
    await drive(time, () => d.setPowerMode("low"));
    expect(sim.profile).toBe("190MHz");
    const err = await rejection(d.setPowerTarget(100));
    expect(err.code).toBe("AGENTD_E_MINER_UNSUPPORTED");
  });
});

describe("LuxOS: one session at a time", () => {
  it("waits while another actor holds the session, and acts once it is free", async () => {
    const { sim, endpoint } = await start();
    sim.holdSession();
    const d = new LuxosDriver(endpoint, context(time));
    const p = drive(time, () => d.sleep());
    // the other actor logs off after a few attempts of ours
    while (sim.received.filter((q) => q.command === "logon").length < 3) {
      await time.nextTimer(1_000);
    }
    sim.session = null;
    await p;
    expect(sim.curtailed).toBe(true);
  });

  it("never takes another actor's session: busy past the deadline is a clear refusal", async () => {
    const { sim, endpoint } = await start("session-held");
    const d = new LuxosDriver(endpoint, context(time));
    const err = await rejection(drive(time, () => d.sleep()));
    expect(err.code).toBe("AGENTD_E_MINER_REFUSED");
    expect(err.context).toMatchObject({ reason: "session_busy" });
    expect(sim.curtailed).toBe(false);
    expect(sim.received.some((q) => q.command === "session")).toBe(false);
    expect(JSON.stringify({ m: err.message, c: err.context })).not.toContain("OTHERSID");
  });

  it("an expired session is renewed once; the session id never appears in an error", async () => {
    const { sim, endpoint } = await start();
    const d = new LuxosDriver(endpoint, context(time));
    sim.expireSessions = 1;
    await drive(time, () => d.sleep());
    expect(sim.curtailed).toBe(true);
    expect(sim.received.filter((q) => q.command === "logon")).toHaveLength(2);
    // both sessions expire: the write fails, and its error does not quote the id
    sim.expireSessions = 2;
    const err = await rejection(drive(time, () => d.wake()));
    expect(err.code).toBe("AGENTD_E_MINER_REFUSED");
    const sids = sim.received
      .filter((q) => q.command === "curtail")
      .map((q) => q.parameter?.split(",")[0] ?? "");
    expect(sids.length).toBeGreaterThan(0);
    const text = JSON.stringify({ m: err.message, c: err.context });
    for (const sid of sids) expect(text).not.toContain(sid);
    expect(text).toContain("REDACTED");
  });
});
