import { describe, expect, it } from "vitest";
import { createDriver, detectFamily, familyOf } from "../../plugins/registry.ts";
import { MgmtApi } from "../../sim/asic/mgmt-api.ts";
import { SimMiner } from "../../sim/asic/miner.ts";
import { PROFILES } from "../../sim/asic/profiles.ts";
import { ReplayApi } from "../../sim/asic/replay.ts";
import { HashScheduler } from "../../sim/asic/scheduler.ts";
import { context, steppedTime, useSimAntminers } from "./antminer-sim.ts";

const time = steppedTime();
const sim = useSimAntminers(() => time);

describe("detectFamily and createDriver", () => {
  it("tells the S9 from the S19 by 4028 version, and makes the matching driver", async () => {
    const s9 = await sim("s9", { hashing: false, id: "reg-s9" });
    const s19 = await sim("s19", { hashing: false, id: "reg-s19" });
    const ctx = context(time);
    expect(await detectFamily(s9.endpoint, ctx)).toBe("antminer-s9");
    expect(await detectFamily(s19.endpoint, ctx)).toBe("antminer-s19");
    const d = createDriver("antminer-s19", s19.endpoint, ctx);
    expect(d.family).toBe("antminer-s19");
    expect((await d.detect()).serial).toBe(s19.miner.serial);
    expect(createDriver("antminer-s9", s9.endpoint, ctx).family).toBe("antminer-s9");
  });

  it("with 4028 closed, the web UI's minertype still says the family", async () => {
    const s19 = await sim("s19", { hashing: false, id: "reg-web" });
    await s19.api.close();
    expect(await detectFamily(s19.endpoint, context(time))).toBe("antminer-s19");
  });

  it("Braiins OS (its 4028 version says BOSminer) is braiins-os, with its own driver", async () => {
    const scheduler = new HashScheduler();
    const miner = new SimMiner({
      id: "bos",
      profile: PROFILES.bosminer,
      pools: [{ url: "127.0.0.1:1", user: "x" }],
      scheduler,
    });
    const api = new MgmtApi({ miner });
    await api.listen();
    try {
      const endpoint = { host: "127.0.0.1", apiPort: api.address.port, webPort: 1 };
      expect(await detectFamily(endpoint, context(time))).toBe("braiins-os");
      expect(createDriver("braiins-os", endpoint, context(time)).family).toBe("braiins-os");
    } finally {
      await api.close();
      scheduler.stop();
    }
  });

  it("LuxOS printing an Antminer model is LuxOS, not a stock Antminer", async () => {
    const reply =
      '{"STATUS":[{"STATUS":"S","When":0,"Code":22,"Msg":"LUXminer versions","Description":"LUXminer 2024.1"}],"VERSION":[{"LUXminer":"2024.1","API":"3.7","Type":"Antminer S19"}],"id":1}';
    const api = new ReplayApi({ replies: new Map([["version", Buffer.from(reply)]]) });
    await api.listen();
    try {
      expect(
        await detectFamily(
          { host: "127.0.0.1", apiPort: api.address.port, webPort: 1 },
          context(time),
        ),
      ).toBe("luxos");
    } finally {
      await api.close();
    }
  });

  it("model names: S9 variants and T9 are s9, S19 variants and T19 are s19", () => {
    expect(
      ["Antminer S9", "Antminer S9i", "Antminer S9j", "Antminer T9+"].map((m) => familyOf(m, null)),
    ).toEqual(Array(4).fill("antminer-s9"));
    expect(
      ["Antminer S19", "Antminer S19 Pro", "Antminer S19j Pro", "Antminer T19"].map((m) =>
        familyOf(m, null),
      ),
    ).toEqual(Array(4).fill("antminer-s19"));
    expect(familyOf("Antminer L3+", null)).toBeNull();
    expect(familyOf("Antminer X", 2)).toBe("antminer-s9");
  });
});
