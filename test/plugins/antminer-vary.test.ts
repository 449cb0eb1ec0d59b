import { describe, expect, it } from "vitest";
import { AntminerS9Driver } from "../../plugins/antminer/s9.ts";
import { AntminerS19Driver } from "../../plugins/antminer/s19.ts";
import { context, steppedTime, useSimAntminers } from "./antminer-sim.ts";

/**
 * The simulator's benchmark mode (bench/drivers.ts): with `varyPerRead` every management
 * request moves what the miner reports, and the hashrates served are kept — so two reads never
 * agree, and a reading can be matched to what was served for it. Off, nothing moves.
 */

const time = steppedTime();
const sim = useSimAntminers(() => time);

describe("varyPerRead", () => {
  for (const [profile, Driver] of [
    ["s9", AntminerS9Driver],
    ["s19", AntminerS19Driver],
  ] as const) {
    it(`${profile}: each read differs and its hashrate is one the miner served for it`, async () => {
      const s = await sim(profile);
      const driver = new Driver(s.endpoint, context(time));
      const still = [await driver.read(), await driver.read()];
      expect(still[1]?.hashrateGhs).toBe(still[0]?.hashrateGhs);
      expect(s.miner.takeServed()).toEqual([]);

      s.miner.varyPerRead = true;
      const a = await driver.read();
      const servedA = s.miner.takeServed();
      const b = await driver.read();
      const servedB = s.miner.takeServed();
      expect(servedA).toContain(a.hashrateGhs);
      expect(servedB).toContain(b.hashrateGhs);
      expect(servedB).not.toContain(a.hashrateGhs);
      expect(b.hashrateGhs).not.toBe(a.hashrateGhs);
      expect(b.boards.map((x) => x.chipTempC)).not.toEqual(a.boards.map((x) => x.chipTempC));
      expect(b.fans).not.toEqual(a.fans);
    });
  }
});
