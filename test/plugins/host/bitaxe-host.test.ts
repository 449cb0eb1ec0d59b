import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { SimMeter } from "../../../sim/meter/server.ts";
import { ensureDriverUser } from "../../support/driver-user.ts";
import { steppedTime } from "../antminer-sim.ts";
import { useSimBitaxes } from "../bitaxe-sim.ts";
import { LIMITS, rejection, testHost } from "./support.ts";

/**
 * Issue 17's families through the real driver host (the real registry, as the drivers' user):
 * a Bitaxe detected and driven, and a Shelly plug read as a meter of its own kind.
 */

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});
beforeAll(() => {
  ensureDriverUser();
});
const time = steppedTime();
const simBitaxe = useSimBitaxes(() => time);

describe("Bitaxe and the Shelly plug through the driver host", () => {
  it("detects a Bitaxe (no 4028), reads it and pauses it, read back, in the host", async () => {
    const b = await simBitaxe({ version: "v2.14.0" });
    const t = testHost({ testOnly: {} });
    cleanup.push(() => t.host.stop());
    const found = await t.host.detect({ ...b.endpoint, apiPort: 1 }, null, "auto", LIMITS);
    expect(found).toMatchObject({ family: "bitaxe", mac: b.miner.mac.toLowerCase(), serial: null });
    const d = t.host.driver("bitaxe", b.endpoint, null, LIMITS);
    const r = await d.read();
    expect(r.power).toMatchObject({ provenance: "estimated", source: "firmware" });
    expect(r.pools[0]).toMatchObject({ url: b.pool.url, active: true });
    expect(await d.sleep()).toMatchObject({ action: "sleep", reads: 1 });
    expect(b.miner.mode).toBe("sleep");
    expect((await rejection(d.setPowerTarget(10))).code).toBe("AGENTD_E_MINER_UNSUPPORTED");
  });

  it("reads a Shelly plug (kind shelly-gen2): measured watts, an off relay 0 W", async () => {
    const m = await SimMeter.start({ shape: "shelly", watts: 900 });
    cleanup.push(() => m.close());
    const t = testHost({ testOnly: {} });
    cleanup.push(() => t.host.stop());
    const spec = {
      kind: "shelly-gen2" as const,
      id: "plug-1",
      url: `http://127.0.0.1:${m.port}`,
      feeds: ["axe-1", "axe-2"],
    };
    const r = await t.host.readMeter(spec, null, LIMITS);
    expect(r).toMatchObject({ id: "plug-1", provenance: "measured", feeds: ["axe-1", "axe-2"] });
    expect(r.watts).toBe(m.last()?.watts[0]);
    m.setFault("relay-off");
    expect((await t.host.readMeter(spec, null, LIMITS)).watts).toBe(0);
    // A shelly spec with a pointer is neither kind: refused by the host's schema.
    const err = await rejection(
      t.host.readMeter({ ...spec, pointer: "/apower" } as never, null, LIMITS),
    );
    expect(err.code).toBe("AGENTD_E_DRIVER_MESSAGE_INVALID");
  });
});
