import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { fixedClock } from "../../../lib/clock.ts";
import { VnishSim } from "../../../sim/asic/vnish-rest.ts";
import { ensureDriverUser } from "../../support/driver-user.ts";
import { LIMITS, testHost } from "./support.ts";

/** A VNish miner detected and read through the real driver host, as the drivers' user. */

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});
beforeAll(() => {
  ensureDriverUser();
});

describe("VNish through the driver host", () => {
  it("detects vnish, then reads boards, estimated power and pools", async () => {
    const sim = new VnishSim({ clock: fixedClock(Date.UTC(2026, 0, 1)) });
    await sim.listen();
    cleanup.push(() => sim.close());
    const t = testHost({ testOnly: {} });
    cleanup.push(() => t.host.stop());
    const endpoint = { host: "127.0.0.1", apiPort: sim.apiPort, webPort: sim.webPort };
    const id = await t.host.detect(endpoint, null, "auto", LIMITS);
    expect(id).toMatchObject({ family: "vnish", serial: "VNSIM0000000042" });
    const r = await t.host.driver("vnish", endpoint, null, LIMITS).read();
    expect(r.boards).toHaveLength(3);
    expect(r.power?.provenance).toBe("estimated");
    expect(r.pools.map((p) => p.user)).toEqual(["owner.rig7"]);
  });
});
