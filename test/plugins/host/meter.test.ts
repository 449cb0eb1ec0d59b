import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { SimMeter } from "../../../sim/meter/server.ts";
import { ensureDriverUser } from "../../support/driver-user.ts";
import { LIMITS, rejection, testHost } from "./support.ts";

/**
 * Power meters are devices on the LAN like the miners: their replies are parsed in the driver
 * host, as the drivers' user, never in the agent. Real host, real meter, real sockets.
 */

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});
beforeAll(() => {
  ensureDriverUser();
});

describe("a power meter read through the driver host", () => {
  it("answers measured watts for the miners it feeds, the value the meter served; a bad meter is its own error", async () => {
    const good = await SimMeter.start({ shape: "pdu", outlets: 2, watts: 3100 });
    const bad = await SimMeter.start({ shape: "shelly", fault: "nan" });
    cleanup.push(
      () => good.close(),
      () => bad.close(),
    );
    const t = testHost({ testOnly: {} });
    cleanup.push(() => t.host.stop());
    const spec = {
      id: "pdu-1",
      url: good.url,
      pointer: "/outlets/1/watts",
      feeds: ["s19-a", "s19-b"],
    };
    const [r1, err] = await Promise.all([
      t.host.readMeter(spec, null, LIMITS),
      rejection(
        t.host.readMeter(
          { id: "plug-9", url: bad.url, pointer: bad.pointer, feeds: ["s9-1"] },
          null,
          LIMITS,
        ),
      ),
    ]);
    const served = good.last();
    expect(served).not.toBeNull();
    expect(r1).toMatchObject({ id: "pdu-1", provenance: "measured", feeds: ["s19-a", "s19-b"] });
    expect(r1.watts).toBe(served?.watts[1]);
    expect(err.code).toBe("AGENTD_E_METER_READ");
    expect(err.message).toContain("plug-9");
    // a second read is a new value: nothing cached on the way
    const r2 = await t.host.readMeter(spec, null, LIMITS);
    expect(r2.watts).toBe(good.last()?.watts[1]);
    expect(r2.watts).not.toBe(r1.watts);
  });

  it("refuses a meter spec the schema does not allow, in the host, before any request", async () => {
    const t = testHost({ testOnly: {} });
    cleanup.push(() => t.host.stop());
    const err = await rejection(
      t.host.readMeter(
        { id: "x", url: "file:///etc/shadow", pointer: "/a", feeds: ["m"] },
        null,
        LIMITS,
      ),
    );
    expect(err.code).toBe("AGENTD_E_DRIVER_MESSAGE_INVALID");
    expect(err.message).toContain("/meter/url");
  });
});
