import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { fixedClock } from "../../../lib/clock.ts";
import { LuxosSim } from "../../../sim/asic/luxos-api.ts";
import { ensureDriverUser } from "../../support/driver-user.ts";
import { LUXOS_CAPTURES } from "../luxos-sim.ts";
import { LIMITS, testHost } from "./support.ts";

/**
 * A LuxOS miner detected and read through the real driver host, as the drivers' user, over a
 * real socket: the agent sees the reading, never the miner's bytes.
 */

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});
beforeAll(() => {
  ensureDriverUser();
});

describe("LuxOS through the driver host", () => {
  it("detects luxos, then reads boards, estimated power and pools", async () => {
    const sim = new LuxosSim({
      clock: fixedClock(Date.UTC(2026, 0, 1)),
      capturesDir: LUXOS_CAPTURES,
    });
    await sim.listen();
    cleanup.push(() => sim.close());
    const t = testHost({ testOnly: {} });
    cleanup.push(() => t.host.stop());
    const endpoint = { host: "127.0.0.1", apiPort: sim.port };
    const id = await t.host.detect(endpoint, null, "auto", LIMITS);
    expect(id).toMatchObject({ family: "luxos", serial: "JYZZB0UBDJABF06RB" });
    const r = await t.host.driver("luxos", endpoint, null, LIMITS).read();
    expect(r.boards).toHaveLength(3);
    expect(r.power?.provenance).toBe("estimated");
    expect(r.pools.length).toBe(sim.slots.length);
  });
});
