import { beforeEach, describe, expect, it } from "vitest";
import { BitaxeDriver } from "../../plugins/bitaxe/bitaxe.ts";
import { detectFamily } from "../../plugins/registry.ts";
import { context, drive, rejection, type SteppedTime, steppedTime } from "./antminer-sim.ts";
import { useSimBitaxes } from "./bitaxe-sim.ts";

/** The Bitaxe driver against the simulated AxeOS API: detection, every field, every action. */

let time: SteppedTime;
beforeEach(() => {
  time = steppedTime();
});
const simBitaxe = useSimBitaxes(() => time);

describe("Bitaxe (ESP-Miner) detection", () => {
  it("is detected from its HTTP API (it has no 4028), with model, firmware, MAC and no serial", async () => {
    const b = await simBitaxe({ version: "v2.14.0" });
    // 4028 is a closed port here: detection falls to the HTTP API.
    const endpoint = { ...b.endpoint, apiPort: 1 };
    expect(await detectFamily(endpoint, context(time))).toBe("bitaxe");
    const id = await new BitaxeDriver(b.endpoint, context(time)).detect();
    expect(id).toMatchObject({
      family: "bitaxe",
      model: "Bitaxe Gamma (BM1370, board 601)",
      firmware: "ESP-Miner v2.14.0",
      mac: b.miner.mac.toLowerCase(),
      serial: null,
      verifiedOnHardware: false,
      capabilities: {
        pools: "yes",
        sleep: "yes",
        powerModes: [],
        powerTarget: null,
        reboot: "yes",
        power: "estimated",
      },
    });
  });

  it("says sleep is `no` on a version without pause (before v2.14.0)", async () => {
    const b = await simBitaxe({ version: "v2.13.2" });
    const id = await new BitaxeDriver(b.endpoint, context(time)).detect();
    expect(id.capabilities.sleep).toBe("no");
  });
});

describe("Bitaxe (ESP-Miner) reading", () => {
  it("reads hashrate, chip and regulator temperature, fan, estimated power, pools and uptime", async () => {
    const b = await simBitaxe({ fallback: true });
    const r = await new BitaxeDriver(b.endpoint, context(time)).read();
    const p = b.miner.profile;
    expect(r.at).toBe(time.clock.now());
    expect(r.hashrateGhs).toBe(p.nominalGhs);
    expect(r.boards).toEqual([
      {
        index: 0,
        hashrateGhs: p.nominalGhs,
        chips: p.chains.chips,
        pcbTempC: [p.temps.pcb],
        chipTempC: [p.temps.chip],
      },
    ]);
    expect(r.fans).toEqual([{ index: 0, rpm: p.fans.rpm }]);
    expect(r.power).toEqual({ watts: p.powerW, provenance: "estimated", source: "firmware" });
    expect(r.mode).toBe("normal");
    expect(r.uptimeS).toBe(60);
    expect(r.errors).toEqual([]);
    expect(r.pools).toEqual([
      { index: 0, url: b.pool.url, user: "owner.axe1", status: "unknown", active: true },
      {
        index: 1,
        url: "stratum+tcp://backup.example:3334",
        user: "b.x",
        status: "unknown",
        active: false,
      },
    ]);
  });
});

describe("Bitaxe (ESP-Miner) actions, each read back", () => {
  for (const version of ["v2.14.2", "v2.15.0"]) {
    it(`setPools (${version}): PATCH, restart, and the restarted miner shows primary and fallback`, async () => {
      const b = await simBitaxe({ version });
      const d = new BitaxeDriver(b.endpoint, context(time));
      const primary = { url: b.pool.url, user: "consent.axe1", password: "p1" };
      const fallback = {
        url: "stratum+tcp://other.example:3335",
        user: "consent.fb",
        password: "p2",
      };
      const done = await drive(time, () => d.setPools([primary, fallback]));
      expect(done.action).toBe("setPools");
      expect(done.reads).toBeGreaterThan(1); // the first read-back is before the restart
      expect(b.axeos.requests).toContain("PATCH /api/system");
      expect(b.axeos.requests).toContain("POST /api/system/restart");
      expect(b.miner.slots.map((s) => [s.url.text, s.user])).toEqual([
        [b.pool.url, "consent.axe1"],
        ["stratum+tcp://other.example:3335", "consent.fb"],
      ]);
      const r = await d.read();
      expect(r.pools.map((s) => s.user)).toEqual(["consent.axe1", "consent.fb"]);
    });
  }

  it("setPools with one slot fills the fallback with it too: no pool the owner did not sign", async () => {
    const b = await simBitaxe({ fallback: true });
    const d = new BitaxeDriver(b.endpoint, context(time));
    await drive(time, () => d.setPools([{ url: b.pool.url, user: "only.one", password: "x" }]));
    expect(b.axeos.saved.fallback).toMatchObject({ user: "only.one" });
    expect(b.miner.slots.every((s) => s.user === "only.one")).toBe(true);
  });

  it("refuses three slots, TLS and a URL without a port before any write", async () => {
    const b = await simBitaxe();
    const d = new BitaxeDriver(b.endpoint, context(time));
    const t = { url: b.pool.url, user: "u", password: "" };
    expect((await rejection(d.setPools([t, t, t]))).code).toBe("AGENTD_E_USAGE");
    const tls = { ...t, url: "stratum+ssl://pool.example:443" };
    expect((await rejection(d.setPools([tls]))).code).toBe("AGENTD_E_USAGE");
    expect((await rejection(d.setPools([{ ...t, url: "pool.example" }]))).code).toBe(
      "AGENTD_E_USAGE",
    );
    expect(b.axeos.requests.filter((r) => !r.startsWith("GET"))).toEqual([]);
  });

  it("sleep pauses (miningPaused, hashing stops) and wake resumes, each read back", async () => {
    const b = await simBitaxe({ version: "v2.14.0" });
    const d = new BitaxeDriver(b.endpoint, context(time));
    expect((await drive(time, () => d.sleep())).action).toBe("sleep");
    expect(b.miner.hashing).toBe(false);
    expect((await d.read()).mode).toBe("sleep");
    expect((await drive(time, () => d.wake())).action).toBe("wake");
    expect((await d.read()).mode).toBe("normal");
  });

  it("a restart wakes a paused Bitaxe (ESP-Miner keeps the pause in memory only)", async () => {
    const b = await simBitaxe();
    const d = new BitaxeDriver(b.endpoint, context(time));
    await drive(time, () => d.sleep());
    const done = await drive(time, () => d.reboot());
    expect(done.action).toBe("reboot");
    expect((await d.read()).mode).toBe("normal");
  });

  it("reboot is confirmed by uptime starting again", async () => {
    const b = await simBitaxe();
    const d = new BitaxeDriver(b.endpoint, context(time));
    const before = (await d.read()).uptimeS ?? 0;
    const done = await drive(time, () => d.reboot());
    expect(done.reads).toBeGreaterThan(1);
    expect((await d.read()).uptimeS).toBeLessThan(before);
  });

  it("has no power modes and takes no power target", async () => {
    const b = await simBitaxe();
    const d = new BitaxeDriver(b.endpoint, context(time));
    expect((await rejection(d.setPowerMode("low"))).code).toBe("AGENTD_E_MINER_UNSUPPORTED");
    expect((await rejection(d.setPowerTarget(15))).code).toBe("AGENTD_E_MINER_UNSUPPORTED");
  });
});
