/**
 * Braiins OS detection against 4028 `version` replies captured from real BOSer builds, served
 * byte for byte by sim/asic/replay.ts (test/fixtures/captures/braiins-os/PROVENANCE.md).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BraiinsOsDriver } from "../../plugins/braiins/driver.ts";
import { parseFirmware } from "../../plugins/braiins/parse.ts";
import { detectFamily } from "../../plugins/registry.ts";
import { ReplayApi } from "../../sim/asic/replay.ts";
import { context, rejection, steppedTime } from "./antminer-sim.ts";

const DIR = join(import.meta.dirname, "../fixtures/captures/braiins-os");
const time = steppedTime();

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

async function replay(file: string): Promise<ReplayApi> {
  const api = new ReplayApi({
    replies: new Map([["version", readFileSync(join(DIR, file))]]),
  });
  await api.listen();
  closers.push(() => api.close());
  return api;
}

describe("Braiins OS captures", () => {
  for (const [file, firmware] of [
    ["4028-version.v21_09.json", "BOSer boser-openwrt 0.1.0-11012d53, API 3.7"],
    ["4028-version.v24_09.json", "BOSer boser-buildroot 0.1.0-75912fc7, API 3.7"],
  ] as const) {
    it(`${file}: detected as braiins-os; the firmware string read; no model without devdetails`, async () => {
      const api = await replay(file);
      const endpoint = { host: "127.0.0.1", apiPort: api.address.port, grpcPort: 1 };
      expect(await detectFamily(endpoint, context(time))).toBe("braiins-os");
      const d = new BraiinsOsDriver(endpoint, context(time));
      expect(parseFirmware(await d.rpc("version"))).toBe(firmware);
      // detect reads version, then devdetails: the replay has no devdetails (code 14).
      const err = await rejection(d.detect());
      expect(err.code).toBe("AGENTD_E_MINER_UNSUPPORTED");
      expect(api.requests).toEqual(["version", "version", "version", "devdetails"]);
    });
  }
});
