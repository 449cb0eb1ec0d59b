import { describe, expect, it } from "vitest";
import { AntminerS9Driver } from "../../plugins/antminer/s9.ts";
import {
  context,
  drive,
  rejection,
  type SteppedTime,
  steppedTime,
  useSimAntminers,
} from "./antminer-sim.ts";

let time: SteppedTime = steppedTime();
const sim = useSimAntminers(() => time);
const fresh = () => {
  time = steppedTime();
};

const TARGETS = [
  { url: "stratum+tcp://127.0.0.1:3333", user: "agentd.s9", password: "a" },
  { url: "stratum+tcp://127.0.0.1:3334", user: "agentd.s9", password: "b" },
  { url: "stratum+tcp://127.0.0.1:3335", user: "agentd.s9", password: "c" },
];

describe("stock S9 driver against the simulator", () => {
  it("detect: model and firmware from 4028 version, MAC from the web UI, no sleep, no power", async () => {
    fresh();
    const s = await sim("s9", { hashing: false });
    const id = await new AntminerS9Driver(s.endpoint, context(time)).detect();
    expect(id).toEqual({
      family: "antminer-s9",
      model: "Antminer S9",
      firmware: "BMMiner 2.0.0, Miner 16.8.1.3, CompileTime Fri Nov 17 17:37:49 CST 2017",
      mac: s.miner.mac,
      serial: null,
      capabilities: {
        pools: "yes",
        sleep: "no",
        powerModes: [],
        powerTarget: null,
        reboot: "yes",
        power: "none",
      },
      verifiedOnHardware: false,
    });
  });

  it("read: GHS 5s as a string, chains 6–8, two fans, pools", async () => {
    fresh();
    const s = await sim("s9");
    const r = await new AntminerS9Driver(s.endpoint, context(time)).read();
    expect(r.hashrateGhs).toBe(13_500);
    expect(r.boards).toEqual(
      [6, 7, 8].map((index) => ({
        index,
        hashrateGhs: 4500,
        chips: 63,
        pcbTempC: [63],
        chipTempC: [79],
      })),
    );
    expect(r.fans).toEqual([
      { index: 3, rpm: 5880 },
      { index: 6, rpm: 5940 },
    ]);
    expect(r).toMatchObject({ power: null, mode: "normal", uptimeS: 0, errors: [] });
    expect(r.pools).toEqual([
      { index: 0, url: s.pool.url, user: "owner.rig1", status: "alive", active: true },
    ]);
  });

  it("a stopped fan and the }{ glitch: still read, the fan reported as an error", async () => {
    fresh();
    const s = await sim("s9", { hashing: false });
    s.miner.setCondition("api-glitch", true);
    s.miner.setCondition("fan", true);
    const r = await new AntminerS9Driver(s.endpoint, context(time)).read();
    expect(r.boards).toHaveLength(3);
    expect(r.fans).toEqual([{ index: 6, rpm: 5940 }]);
    expect(r.errors).toEqual(["fans: 1 of 2 spinning"]);
  });

  it("setPools through addpool/switchpool/removepool, read back through pools", async () => {
    fresh();
    const s = await sim("s9", { hashing: false });
    const c = await drive(time, () =>
      new AntminerS9Driver(s.endpoint, context(time)).setPools(TARGETS),
    );
    expect(c.action).toBe("setPools");
    expect(s.miner.slots.map((x) => [x.url.text, x.user, x.pass])).toEqual(
      TARGETS.map((t) => [t.url, t.user, t.password]),
    );
  });

  it("without write access: pools not_owned, setPools AGENTD_E_MINER_ACCESS_DENIED, nothing changed", async () => {
    fresh();
    const s = await sim("s9", { hashing: false, allow: ["127.0.0.1"] });
    const d = new AntminerS9Driver(s.endpoint, context(time));
    expect((await d.detect()).capabilities.pools).toBe("not_owned");
    const err = await rejection(d.setPools(TARGETS));
    expect(err.code).toBe("AGENTD_E_MINER_ACCESS_DENIED");
    expect(s.miner.slots.map((x) => x.url.text)).toEqual([s.pool.url]);
    // Reads still work.
    expect((await d.read()).boards).toHaveLength(3);
  });

  it("acknowledged but ignored pool writes: AGENTD_E_MINER_NOT_CONFIRMED at the deadline", async () => {
    fresh();
    const s = await sim("s9", { hashing: false });
    s.miner.setCondition("write-ignored", true);
    const start = time.clock.now();
    const err = await rejection(
      drive(time, () => new AntminerS9Driver(s.endpoint, context(time)).setPools(TARGETS)),
    );
    expect(err.code).toBe("AGENTD_E_MINER_NOT_CONFIRMED");
    expect(time.clock.now() - start).toBeGreaterThanOrEqual(30_000);
    expect(s.miner.slots.map((x) => x.url.text)).toEqual([s.pool.url]);
  });

  it("no sleep, no modes, no power target: AGENTD_E_MINER_UNSUPPORTED", async () => {
    fresh();
    const s = await sim("s9", { hashing: false });
    const d = new AntminerS9Driver(s.endpoint, context(time));
    for (const p of [d.sleep(), d.wake(), d.setPowerMode("low"), d.setPowerTarget(1000)]) {
      expect((await rejection(p)).code).toBe("AGENTD_E_MINER_UNSUPPORTED");
    }
    expect(s.miner.mode).toBe("normal");
  });

  it("reboot through reboot.cgi, confirmed by the uptime starting again", async () => {
    fresh();
    const s = await sim("s9", { hashing: false });
    await time.advance(60_000);
    const d = new AntminerS9Driver(s.endpoint, context(time));
    const booted = new Promise<void>((r) => s.miner.on((e) => e.type === "boot" && r()));
    expect((await drive(time, () => d.reboot())).action).toBe("reboot");
    await booted;
    expect((await d.read()).uptimeS).toBeLessThan(60);
  });
});
