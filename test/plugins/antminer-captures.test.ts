/**
 * The S19 driver against replies captured from real hardware, served byte for byte by
 * sim/asic/replay.ts (provenance: test/fixtures/captures/antminer-s19/PROVENANCE.md).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AntminerS19Driver } from "../../plugins/antminer/s19.ts";
import { detectFamily } from "../../plugins/registry.ts";
import { ReplayApi, ReplayWeb } from "../../sim/asic/replay.ts";
import { context, steppedTime } from "./antminer-sim.ts";

const DIR = join(import.meta.dirname, "../fixtures/captures/antminer-s19");
const file = (name: string) => readFileSync(join(DIR, name));

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

async function replay() {
  const api = new ReplayApi({
    replies: new Map([
      ["version", file("4028-version.json")],
      ["summary", file("4028-summary.json")],
      ["stats", file("4028-stats.json")],
      ["pools", file("4028-pools.json")],
      ["devs", file("4028-devs.json")],
    ]),
  });
  const web = new ReplayWeb({
    replies: new Map([["/cgi-bin/get_system_info.cgi", file("cgi-get_system_info.s21.json")]]),
  });
  await api.listen();
  await web.listen();
  closers.push(
    () => api.close(),
    () => web.close(),
  );
  return {
    api,
    web,
    endpoint: { host: "127.0.0.1", apiPort: api.address.port, webPort: web.address.port },
  };
}

describe("S19 Pro captures (asic-rs test data)", () => {
  it("the replay serves the captured bytes exactly, NUL-terminated", async () => {
    const { api } = await replay();
    const { apiRequest } = await import("../sim/asic-api-client.ts");
    const r = await apiRequest(api.address.port, '{"command":"pools"}');
    expect(r.raw.equals(Buffer.concat([file("4028-pools.json"), Buffer.from([0])]))).toBe(true);
  });

  it("detectFamily: Antminer S19 Pro (VERSION[0].Type) is the s19 family", async () => {
    const { endpoint } = await replay();
    expect(await detectFamily(endpoint, context(steppedTime()))).toBe("antminer-s19");
  });

  it("detect: model and firmware from version; serial from get_system_info; the anonymised MAC is no MAC", async () => {
    const { endpoint } = await replay();
    const id = await new AntminerS19Driver(endpoint, context(steppedTime())).detect();
    expect(id).toMatchObject({
      family: "antminer-s19",
      model: "Antminer S19 Pro",
      firmware:
        "BMMiner 1.0.0, Miner 49.0.1.3, CompileTime Tue Dec  6 16:12:30 CST 2022, filesystem FR-1.12(251009-S21)",
      mac: null,
      serial: "THQING0BDJAB024NF",
      verifiedOnHardware: false,
    });
  });

  it("read: the legacy stats after new_api is refused, every field as the firmware printed it", async () => {
    const { endpoint, api } = await replay();
    const time = steppedTime();
    const r = await new AntminerS19Driver(endpoint, context(time)).read();
    expect(api.requests).toEqual(["summary", "stats+new_api", "stats", "pools"]);
    expect(r.hashrateGhs).toBe(110566.89);
    expect(r.uptimeS).toBe(50474);
    expect(r.boards).toEqual([
      {
        index: 1,
        hashrateGhs: 37603.3,
        chips: 114,
        pcbTempC: [73, 45, 64, 65],
        chipTempC: [78, 50, 69, 70],
      },
      {
        index: 2,
        hashrateGhs: 35536.22,
        chips: 114,
        pcbTempC: [47, 50, 65, 66],
        chipTempC: [52, 55, 70, 71],
      },
      {
        index: 3,
        hashrateGhs: 37427.38,
        chips: 114,
        pcbTempC: [46, 44, 64, 63],
        chipTempC: [51, 49, 69, 68],
      },
    ]);
    expect(r.fans).toEqual([
      { index: 1, rpm: 6000 },
      { index: 2, rpm: 5880 },
      { index: 3, rpm: 5040 },
      { index: 4, rpm: 5040 },
    ]);
    expect(r.pools.map((p) => [p.index, p.user, p.status, p.active])).toEqual([
      [0, "satokierepair.H04YK", "alive", true],
      [1, "satokierepair.H04YK", "alive", false],
      [2, "satokierepair.H04YK", "alive", false],
    ]);
    expect(r.pools[0]?.url).toBe("stratum+tcp://btc.global.luxor.tech:700");
    // No get_miner_conf capture exists: the mode is not known, the reading still stands.
    expect(r.mode).toBe("unknown");
    expect(r.power).toBeNull();
    expect(r.errors).toEqual([]);
  });
});
