/**
 * The Braiins OS driver against the simulator: the bosminer 4028 API and the gRPC API
 * (sim/asic/bos-grpc.ts), real sockets on port 0, fake time for the deadlines and the token.
 */
import { describe, expect, it } from "vitest";
import { BraiinsOsDriver } from "../../plugins/braiins/driver.ts";
import { detectFamily } from "../../plugins/registry.ts";
import { tunerOf } from "../../sim/asic/bos-tuner.ts";
import { context, drive, LIMITS, rejection, steppedTime } from "./antminer-sim.ts";
import { useSimBraiins } from "./braiins-sim.ts";

let time = steppedTime();
const sim = useSimBraiins(() => time);
const fresh = () => {
  time = steppedTime();
  return time;
};

const TARGETS = [
  { url: "stratum+tcp://pool.example:3333", user: "agentd.w1", password: "x" },
  { url: "stratum+tcp://backup.example:3333", user: "agentd.w1", password: "y" },
];

describe("braiins-os: detection and reading", () => {
  it("detects it, with model from devdetails, firmware from version, MAC and serial from gRPC", async () => {
    fresh();
    const s = await sim({ hashing: false });
    expect(await detectFamily(s.endpoint, context(time))).toBe("braiins-os");
    const id = await new BraiinsOsDriver(s.endpoint, context(time)).detect();
    expect(id).toMatchObject({
      family: "braiins-os",
      model: "Antminer S9",
      firmware: "BOSminer 0.2.0-2022.09.27, API 3.7",
      mac: s.miner.mac.toLowerCase(),
      serial: s.miner.serial,
      verifiedOnHardware: false,
      capabilities: {
        pools: "yes",
        sleep: "yes",
        powerModes: [],
        powerTarget: { minW: 100, maxW: 20_000 },
        reboot: "yes",
        power: "estimated",
      },
    });
  });

  it("without gRPC (closed port): no pools, power target or reboot, no MAC; 4028 still reads", async () => {
    fresh();
    const s = await sim({ hashing: false });
    await s.grpc.close();
    const id = await new BraiinsOsDriver(s.endpoint, context(time)).detect();
    expect(id.capabilities).toMatchObject({ pools: "no", powerTarget: null, reboot: "no" });
    expect(id.mac).toBeNull();
    expect(id.serial).toBeNull();
  });

  it("reads hashrate (MHS 1m), boards with temps and chips, fans, estimated power, pools, uptime", async () => {
    fresh();
    const s = await sim();
    await time.advance(30_000);
    const r = await new BraiinsOsDriver(s.endpoint, context(time)).read();
    const p = s.miner.profile;
    expect(r.at).toBe(time.clock.now());
    expect(r.hashrateGhs).toBeCloseTo(p.nominalGhs, 3);
    expect(r.boards.map((b) => b.index)).toEqual([6, 7, 8]);
    for (const b of r.boards) {
      expect(b.chips).toBe(p.chains.chips);
      expect(b.hashrateGhs).toBeCloseTo(p.nominalGhs / 3, 3);
      expect(b.pcbTempC).toHaveLength(1);
      expect(b.chipTempC[0]).toBeGreaterThan(b.pcbTempC[0] ?? Infinity);
    }
    expect(r.fans).toEqual([
      { index: 0, rpm: expect.any(Number) },
      { index: 1, rpm: expect.any(Number) },
    ]);
    expect(r.fans.every((f) => f.rpm > 0)).toBe(true);
    expect(r.power).toEqual({ watts: p.powerW, provenance: "estimated", source: "firmware" });
    expect(r.mode).toBe("normal");
    expect(r.pools).toEqual([
      { index: 0, url: s.pool.url, user: "owner.rig1", status: "alive", active: true },
    ]);
    expect(r.uptimeS).toBe(s.miner.elapsedSeconds);
    expect(r.errors).toEqual([]);
  });

  it("an overheated board is a tuner error, and an idle miner's mode is unknown", async () => {
    fresh();
    const s = await sim();
    s.miner.setCondition("overheat", true);
    const r = await new BraiinsOsDriver(s.endpoint, context(time)).read();
    expect(r.errors).toEqual(["board 6: Overheated", "board 7: Overheated", "board 8: Overheated"]);
    expect(r.mode).toBe("unknown");
    expect(r.hashrateGhs).toBe(0);
  });
});

describe("braiins-os: actions, each read back", () => {
  it("setPools: one pool group through gRPC SetPoolGroups, read back through 4028 pools", async () => {
    fresh();
    const s = await sim({ hashing: false });
    const d = new BraiinsOsDriver(s.endpoint, context(time));
    const c = await drive(time, () => d.setPools(TARGETS));
    expect(c).toMatchObject({ action: "setPools", reads: 1 });
    expect(s.miner.slots.map((x) => [x.url.text, x.user, x.pass])).toEqual([
      [TARGETS[0]?.url, "agentd.w1", "x"],
      [TARGETS[1]?.url, "agentd.w1", "y"],
    ]);
    expect(s.grpc.requests).toEqual(["Login", "SetPoolGroups"]);
  });

  it("sleep and wake: 4028 pause/resume, read back as no board hashing / some board hashing", async () => {
    fresh();
    const s = await sim();
    const d = new BraiinsOsDriver(s.endpoint, context(time));
    expect(await drive(time, () => d.sleep())).toMatchObject({ action: "sleep" });
    expect(s.miner.mode).toBe("sleep");
    expect(s.miner.hashing).toBe(false);
    expect(await drive(time, () => d.wake())).toMatchObject({ action: "wake" });
    expect(s.miner.hashing).toBe(true);
  });

  it("a pause that does not stop the boards is AGENTD_E_MINER_NOT_CONFIRMED", async () => {
    fresh();
    const s = await sim();
    const d = new BraiinsOsDriver(s.endpoint, context(time));
    // The firmware acknowledges pause and keeps hashing: resume straight after each pause.
    s.miner.on((e) => {
      if (e.type === "mode" && e.mode === "sleep") s.miner.setMode("normal");
    });
    const err = await rejection(drive(time, () => d.sleep()));
    expect(err.code).toBe("AGENTD_E_MINER_NOT_CONFIRMED");
  });

  it("setPowerTarget: gRPC SetPowerTarget, read back through tunerstatus PowerLimit", async () => {
    fresh();
    const s = await sim({ hashing: false });
    const d = new BraiinsOsDriver(s.endpoint, context(time));
    expect(await drive(time, () => d.setPowerTarget(1100))).toMatchObject({
      action: "setPowerTarget",
      reads: 1,
    });
    expect(tunerOf(s.miner).powerLimitW).toBe(1100);
    expect(await drive(time, () => d.setPowerTarget(1400))).toMatchObject({ reads: 1 });
    expect(tunerOf(s.miner).powerLimitW).toBe(1400);
    expect((await rejection(d.setPowerTarget(1.5))).code).toBe("AGENTD_E_USAGE");
  });

  it("a raise the firmware acknowledges and ignores is AGENTD_E_MINER_NOT_CONFIRMED; a cut holds", async () => {
    fresh();
    const s = await sim({ hashing: false, ignoreRaises: true });
    const d = new BraiinsOsDriver(s.endpoint, context(time));
    const start = time.clock.now();
    const err = await rejection(drive(time, () => d.setPowerTarget(1500)));
    expect(err.code).toBe("AGENTD_E_MINER_NOT_CONFIRMED");
    expect(time.clock.now() - start).toBeGreaterThanOrEqual(LIMITS.confirmDeadlineMs);
    expect(tunerOf(s.miner).powerLimitW).toBe(1250);
    expect(await drive(time, () => d.setPowerTarget(1000))).toMatchObject({ reads: 1 });
    expect(tunerOf(s.miner).powerLimitW).toBe(1000);
  });

  it("setPowerMode is unsupported (Braiins OS takes watts)", async () => {
    fresh();
    const s = await sim({ hashing: false });
    const err = await rejection(new BraiinsOsDriver(s.endpoint, context(time)).setPowerMode("low"));
    expect(err.code).toBe("AGENTD_E_MINER_UNSUPPORTED");
  });

  it("reboot: gRPC Reboot, read back as 4028 Elapsed starting again", async () => {
    fresh();
    const s = await sim({ hashing: false });
    await time.advance(60_000);
    const d = new BraiinsOsDriver(s.endpoint, context(time));
    const c = await drive(time, () => d.reboot());
    expect(c.action).toBe("reboot");
    expect(c.reads).toBeGreaterThan(1);
    expect(s.miner.elapsedSeconds).toBeLessThan(60);
  });
});

describe("braiins-os: the login token", () => {
  it("is refreshed before it lapses: a call after the token's timeout logs in again", async () => {
    fresh();
    const s = await sim({ hashing: false, tokenTtlS: 60 });
    const d = new BraiinsOsDriver(s.endpoint, context(time));
    await drive(time, () => d.setPowerTarget(1100));
    await drive(time, () => d.setPowerTarget(1000));
    expect(s.grpc.logins).toBe(1);
    await time.advance(61_000);
    await drive(time, () => d.setPowerTarget(1050));
    expect(s.grpc.logins).toBe(2);
    expect(d.grpc.logins).toBe(2);
    // never refused: the driver renewed it before the miner would have refused it
    expect(s.grpc.requests.filter((r) => r.endsWith(":unauthenticated"))).toEqual([]);
  });

  it("a token the miner forgot (UNAUTHENTICATED) is renewed once and the call retried", async () => {
    fresh();
    const s = await sim({ hashing: false });
    const d = new BraiinsOsDriver(s.endpoint, context(time));
    await drive(time, () => d.setPowerTarget(1100));
    s.grpc.expireTokens();
    await drive(time, () => d.setPowerTarget(1000));
    expect(s.grpc.requests).toEqual([
      "Login",
      "SetPowerTarget",
      "SetPowerTarget:unauthenticated",
      "Login",
      "SetPowerTarget",
    ]);
    expect(tunerOf(s.miner).powerLimitW).toBe(1000);
  });

  it("a wrong password is AGENTD_E_MINER_AUTH, with neither the password nor a token in the error", async () => {
    fresh();
    const secret = "not-the-password-7f3a";
    const s = await sim({ hashing: false, password: "owner-set-9c1d" });
    const d = new BraiinsOsDriver(
      s.endpoint,
      context(time, { username: "root", password: secret }),
    );
    const err = await rejection(d.setPools(TARGETS));
    expect(err.code).toBe("AGENTD_E_MINER_AUTH");
    const text = `${err.message} ${JSON.stringify(err.context ?? {})} ${err.stack ?? ""}`;
    expect(text).not.toContain(secret);
    expect(text).not.toContain("owner-set-9c1d");
    expect(s.miner.slots).toHaveLength(1);
    // detection still works through 4028, and says the gRPC writes are not ours
    const id = await d.detect();
    expect(id.capabilities).toMatchObject({ pools: "not_owned", reboot: "not_owned" });
  });

  it("a non-default password from the miner's credentials works", async () => {
    fresh();
    const s = await sim({ hashing: false, password: "owner-set-9c1d" });
    const d = new BraiinsOsDriver(
      s.endpoint,
      context(time, { username: "root", password: "owner-set-9c1d" }),
    );
    await drive(time, () => d.setPools(TARGETS));
    expect(s.miner.slots.map((x) => x.url.text)).toEqual(TARGETS.map((t) => t.url));
  });
});
