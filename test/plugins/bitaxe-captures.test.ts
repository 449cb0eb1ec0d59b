import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { listenTcp } from "../../lib/http/listen.ts";
import { BitaxeDriver } from "../../plugins/bitaxe/bitaxe.ts";
import { context, steppedTime } from "./antminer-sim.ts";

/** The Bitaxe driver against the one public capture: ESP-Miner v2.4.5's /api/system/info. */

const CAPTURE = readFileSync(
  new URL("../fixtures/captures/bitaxe/api-system-info.v2.4.5.json", import.meta.url),
);

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

/** Serves the captured bytes, unchanged, on /api/system/info. */
async function replay(): Promise<number> {
  const server = createServer((req, res) => {
    if (req.url === "/api/system/info") {
      res.writeHead(200, { "content-type": "application/json" }).end(CAPTURE);
    } else res.writeHead(404).end();
  });
  const { port } = await listenTcp(server, 0, "127.0.0.1");
  closers.push(() => new Promise((r) => server.close(() => r())));
  return port;
}

describe("Bitaxe against a captured ESP-Miner v2.4.5 reply", () => {
  it("detects a Supra on v2.4.5: no pause (sleep `no`), MAC as the source anonymised it", async () => {
    const port = await replay();
    const time = steppedTime();
    const id = await new BitaxeDriver({ host: "127.0.0.1", webPort: port }, context(time)).detect();
    expect(id).toMatchObject({
      family: "bitaxe",
      model: "Bitaxe Supra (BM1368, board 401)",
      firmware: "ESP-Miner v2.4.5-3-gb5d1e36-dirty",
      mac: "aa:bb:cc:dd:ee:ff",
      serial: null,
    });
    expect(id.capabilities.sleep).toBe("no");
  });

  it("reads every field the driver relies on from the captured bytes", async () => {
    const port = await replay();
    const time = steppedTime();
    const r = await new BitaxeDriver({ host: "127.0.0.1", webPort: port }, context(time)).read();
    expect(r.hashrateGhs).toBe(1000);
    expect(r.boards).toEqual([
      { index: 0, hashrateGhs: 1000, chips: 1, pcbTempC: [78], chipTempC: [59.875] },
    ]);
    expect(r.fans).toEqual([{ index: 0, rpm: 3517 }]);
    expect(r.power).toEqual({
      watts: 2.65000009536743,
      provenance: "estimated",
      source: "firmware",
    });
    expect(r.mode).toBe("normal");
    expect(r.uptimeS).toBe(4);
    expect(r.errors).toEqual([]);
    expect(r.pools).toEqual([
      {
        index: 0,
        url: "stratum+tcp://btc.example.pool:3333",
        user: "asic-rs.test",
        status: "unknown",
        active: true,
      },
      {
        index: 1,
        url: "stratum+tcp://btc2.example.pool:3333",
        user: "asic-rs.test",
        status: "unknown",
        active: false,
      },
    ]);
  });
});
