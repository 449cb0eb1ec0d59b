import { describe, expect, it } from "vitest";
import { AntminerS19Driver } from "../../plugins/antminer/s19.ts";
import { MgmtApi } from "../../sim/asic/mgmt-api.ts";
import { WebUi } from "../../sim/asic/web-ui.ts";
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
  return time;
};

const TARGETS = [
  { url: "stratum+tcp://127.0.0.1:3333", user: "agentd.rig1", password: "p1" },
  { url: "stratum+tcp://127.0.0.1:3334", user: "agentd.rig1", password: "p2" },
];

describe("stock S19 driver against the simulator", () => {
  it("detect: model, firmware, MAC and serial from get_system_info, capabilities", async () => {
    fresh();
    const s = await sim("s19");
    const id = await new AntminerS19Driver(s.endpoint, context(time)).detect();
    expect(id).toEqual({
      family: "antminer-s19",
      model: "Antminer S19",
      firmware: expect.stringContaining("BMMiner 1.0.0"),
      mac: s.miner.mac,
      serial: s.miner.serial,
      capabilities: {
        pools: "yes",
        sleep: "yes",
        powerModes: ["normal", "low"],
        powerTarget: null,
        reboot: "yes",
        power: "none",
      },
      verifiedOnHardware: false,
    });
    expect(id.firmware).toContain("Miner uart_trans.1.3");
  });

  it("read: every field, boards from the new_api stats, no power", async () => {
    fresh();
    const s = await sim("s19");
    const r = await new AntminerS19Driver(s.endpoint, context(time)).read();
    expect(r.at).toBe(time.clock.now());
    expect(r.hashrateGhs).toBe(95_000);
    expect(r.boards.map((b) => b.index)).toEqual([1, 2, 3]);
    for (const b of r.boards) {
      expect(b.chips).toBe(76);
      expect(b.hashrateGhs).toBeCloseTo(95_000 / 3, 1);
      expect(b.pcbTempC).toEqual([50, 52, 57, 58]);
      expect(b.chipTempC).toEqual([65, 67, 72, 73]);
    }
    expect(r.fans.map((f) => f.index)).toEqual([1, 2, 3, 4]);
    expect(r.fans.every((f) => f.rpm > 4000)).toBe(true);
    expect(r.power).toBeNull();
    expect(r.mode).toBe("normal");
    expect(r.pools).toEqual([
      { index: 0, url: s.pool.url, user: "owner.rig1", status: "alive", active: true },
    ]);
    expect(r.uptimeS).toBe(0);
    expect(r.errors).toEqual([]);
  });

  it("setPools: three slots posted, applied 5 s later, confirmed only once 4028 shows them", async () => {
    fresh();
    const s = await sim("s19");
    const d = new AntminerS19Driver(s.endpoint, context(time));
    const start = time.clock.now();
    const c = await drive(time, () => d.setPools(TARGETS));
    expect(c.action).toBe("setPools");
    // The apply fell due at +5 s: reads before it did not hold.
    expect(c.confirmedAt - start).toBeGreaterThanOrEqual(5_000);
    expect(c.reads).toBeGreaterThan(1);
    expect(s.miner.slots.map((x) => [x.url.text, x.user, x.pass])).toEqual([
      [TARGETS[0]?.url, "agentd.rig1", "p1"],
      [TARGETS[1]?.url, "agentd.rig1", "p2"],
    ]);
    expect(s.web.writes).toBe(1);
  });

  it("an acknowledged write the firmware ignores is AGENTD_E_MINER_NOT_CONFIRMED at the deadline", async () => {
    fresh();
    const s = await sim("s19");
    s.miner.setCondition("write-ignored", true);
    const d = new AntminerS19Driver(s.endpoint, context(time));
    const start = time.clock.now();
    const err = await rejection(drive(time, () => d.setPools(TARGETS)));
    expect(err.code).toBe("AGENTD_E_MINER_NOT_CONFIRMED");
    expect(time.clock.now() - start).toBeGreaterThanOrEqual(30_000);
    expect(s.web.writes).toBe(1);
    expect(s.miner.slots.map((x) => x.url.text)).toEqual([s.pool.url]);
  });

  it("sleep holds once the mode reads 1 and the hashrate 0; wake and low power read back", async () => {
    fresh();
    const s = await sim("s19");
    const d = new AntminerS19Driver(s.endpoint, context(time));
    const slept = await drive(time, () => d.sleep());
    expect(slept.action).toBe("sleep");
    expect(s.miner.mode).toBe("sleep");
    const r = await d.read();
    expect(r).toMatchObject({ mode: "sleep", hashrateGhs: 0 });

    expect((await drive(time, () => d.wake())).action).toBe("wake");
    expect(s.miner.mode).toBe("normal");

    expect((await drive(time, () => d.setPowerMode("low"))).action).toBe("setPowerMode");
    expect(s.miner.mode).toBe("low");
    expect((await d.read()).mode).toBe("low");
    expect((await d.read()).hashrateGhs).toBe(66_500);
  });

  it("what stock firmware lacks rejects AGENTD_E_MINER_UNSUPPORTED and writes nothing", async () => {
    fresh();
    const s = await sim("s19");
    const d = new AntminerS19Driver(s.endpoint, context(time));
    expect((await rejection(d.setPowerMode("high"))).code).toBe("AGENTD_E_MINER_UNSUPPORTED");
    expect((await rejection(d.setPowerTarget(2000))).code).toBe("AGENTD_E_MINER_UNSUPPORTED");
    expect(s.web.writes).toBe(0);
  });

  it("reboot through reboot.cgi, confirmed by the uptime starting again", async () => {
    fresh();
    const s = await sim("s19", { hashing: false });
    await time.advance(120_000);
    const d = new AntminerS19Driver(s.endpoint, context(time));
    expect((await d.read()).uptimeS).toBe(120);
    const rebooted = new Promise<void>((r) => s.miner.on((e) => e.type === "boot" && r()));
    const c = await drive(time, () => d.reboot());
    await rebooted;
    expect(c.action).toBe("reboot");
    expect((await d.read()).uptimeS).toBeLessThan(120);
  });

  it("a changed password: detect says not_owned, writes reject AGENTD_E_MINER_AUTH without the password", async () => {
    fresh();
    const s = await sim("s19", { password: "owner-secret-1" });
    const id = await new AntminerS19Driver(s.endpoint, context(time)).detect();
    expect(id.capabilities).toMatchObject({
      pools: "not_owned",
      sleep: "not_owned",
      reboot: "not_owned",
    });
    expect(id.mac).toBeNull();
    const wrong = new AntminerS19Driver(
      s.endpoint,
      context(time, { username: "root", password: "wrong-pw-2" }),
    );
    const err = await rejection(wrong.sleep());
    expect(err.code).toBe("AGENTD_E_MINER_AUTH");
    expect(JSON.stringify({ m: err.message, c: err.context })).not.toMatch(
      /wrong-pw-2|owner-secret-1/,
    );
    expect(s.miner.mode).toBe("normal");
    // With the owner's password from its credentials file, the same miner is ours.
    const right = new AntminerS19Driver(
      s.endpoint,
      context(time, { username: "root", password: "owner-secret-1" }),
    );
    expect((await right.detect()).capabilities.sleep).toBe("yes");
    await drive(time, () => right.sleep());
    expect(s.miner.mode).toBe("sleep");
  });

  it("the same MAC and serial after a reboot and on other ports (a DHCP move)", async () => {
    fresh();
    const s = await sim("s19", { hashing: false });
    const first = await new AntminerS19Driver(s.endpoint, context(time)).detect();
    const api = new MgmtApi({ miner: s.miner });
    const web = new WebUi({ miner: s.miner });
    await api.listen();
    await web.listen();
    try {
      const moved = await new AntminerS19Driver(
        { host: "127.0.0.1", apiPort: api.address.port, webPort: web.address.port },
        context(time),
      ).detect();
      expect(api.address.port).not.toBe(s.endpoint.apiPort);
      expect([moved.mac, moved.serial]).toEqual([first.mac, first.serial]);
      expect(first.mac).toMatch(/^02(:[0-9a-f]{2}){5}$/);
    } finally {
      await api.close();
      await web.close();
    }
  });
});
