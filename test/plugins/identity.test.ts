import { describe, expect, it } from "vitest";
import type { Identity } from "../../plugins/driver.ts";
import { assertSameMiner } from "../../plugins/identity.ts";

const id = (mac: string | null, serial: string | null): Identity => ({
  family: "antminer-s19",
  model: "Antminer S19",
  firmware: "BMMiner 1.0.0",
  mac,
  serial,
  capabilities: {
    pools: "yes",
    sleep: "yes",
    powerModes: [],
    powerTarget: null,
    reboot: "yes",
    power: "none",
  },
  verifiedOnHardware: false,
});

const code = (f: () => void) => {
  try {
    f();
  } catch (e) {
    return (e as { code: string }).code;
  }
  return null;
};

describe("assertSameMiner: a miner is its MAC and serial, not its address", () => {
  it("the same MAC, or the same serial where only that is reported, is the same miner", () => {
    expect(
      code(() =>
        assertSameMiner({ mac: "02:00:00:00:00:01", serial: "S1" }, id("02:00:00:00:00:01", "S1")),
      ),
    ).toBeNull();
    expect(
      code(() =>
        assertSameMiner({ mac: "02:00:00:00:00:01", serial: null }, id("02:00:00:00:00:01", "S9")),
      ),
    ).toBeNull();
    expect(code(() => assertSameMiner({ mac: null, serial: "S1" }, id(null, "S1")))).toBeNull();
  });

  it("another MAC or another serial is another miner; nothing to match by is refused", () => {
    const changed = "AGENTD_E_MINER_IDENTITY_CHANGED";
    expect(
      code(() =>
        assertSameMiner({ mac: "02:00:00:00:00:01", serial: "S1" }, id("02:00:00:00:00:02", "S1")),
      ),
    ).toBe(changed);
    expect(
      code(() =>
        assertSameMiner({ mac: "02:00:00:00:00:01", serial: "S1" }, id("02:00:00:00:00:01", "S2")),
      ),
    ).toBe(changed);
    expect(
      code(() => assertSameMiner({ mac: "02:00:00:00:00:01", serial: null }, id(null, "S1"))),
    ).toBe(changed);
    expect(code(() => assertSameMiner({ mac: null, serial: null }, id(null, null)))).toBe(changed);
  });
});
