import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { tunerOf } from "../../../sim/asic/bos-tuner.ts";
import { ensureDriverUser } from "../../support/driver-user.ts";
import { steppedTime } from "../antminer-sim.ts";
import { useSimBraiins } from "../braiins-sim.ts";
import { LIMITS, rejection, testHost } from "./support.ts";

/**
 * A Braiins OS miner driven through the real driver host, as the drivers' user under Node's
 * permission model: the gRPC library and bos.proto load there, the login token lives there,
 * and only readings and confirmations come back.
 */

const time = steppedTime();
const sim = useSimBraiins(() => time);
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});
beforeAll(() => {
  ensureDriverUser();
});

describe("braiins-os through the driver host", () => {
  it("detects, reads, sets a power target read back, and refuses a wrong password without it", async () => {
    const s = await sim();
    const t = testHost({ testOnly: {} });
    cleanup.push(() => t.host.stop());
    const id = await t.host.detect(s.endpoint, null);
    expect(id).toMatchObject({
      family: "braiins-os",
      serial: s.miner.serial,
      model: "Antminer S9",
    });
    const d = t.host.driver("braiins-os", s.endpoint, null, LIMITS);
    const r = await d.read();
    expect(r.power).toMatchObject({ provenance: "estimated", source: "firmware" });
    expect(r.boards).toHaveLength(3);
    expect(await d.setPowerTarget(1100)).toMatchObject({ action: "setPowerTarget", reads: 1 });
    expect(tunerOf(s.miner).powerLimitW).toBe(1100);
    const secret = "wrong-horse-battery-4411";
    const bad = t.host.driver(
      "braiins-os",
      s.endpoint,
      { username: "root", password: secret },
      LIMITS,
    );
    const err = await rejection(bad.setPowerTarget(1000));
    expect(err.code).toBe("AGENTD_E_MINER_AUTH");
    expect(JSON.stringify({ m: err.message, c: err.context })).not.toContain(secret);
    expect(t.raw.join("")).not.toContain(secret);
    expect(tunerOf(s.miner).powerLimitW).toBe(1100);
  });
});
