/**
 * The simulated fleet of bench/drivers.ts, in its own process: stock S9s and S19s (4028 API
 * and web UI), Braiins OS miners (4028 and gRPC) and Bitaxes (AxeOS HTTP), hashing slowly on a
 * simulated pool; LuxOS and VNish miners in their own simulators; HTTP JSON PDU meters each
 * feeding four miners and Shelly Gen2 plugs feeding one. Every management request moves the
 * values a miner reports (`varyPerRead`; the LuxOS and VNish simulators on every `summary`),
 * and every meter read its watts. Prints a ready line with every endpoint; then, for each
 * `served` line on stdin, one line with what each device served since the last one (miners:
 * hashrates; meters: watts) and how many management requests each SimMiner answered.
 *
 *   node bench/drivers/fleet.ts [--s9 N] [--s19 N] [--bos N] [--luxos N] [--vnish N]
 *                               [--bitaxe N] [--meters N] [--plugs N]
 */
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { systemClock } from "../../lib/clock.ts";
import { SimCluster } from "../../sim/asic/cluster.ts";
import { LuxosSim } from "../../sim/asic/luxos-api.ts";
import { VnishSim } from "../../sim/asic/vnish-rest.ts";
import { SimMeter } from "../../sim/meter/server.ts";
import { SimPool } from "../../sim/pool/server.ts";
import { benchArgs, integer } from "../args.ts";

const args = benchArgs("drivers/fleet", {
  s9: integer(500, 0, 10_000, "N"),
  s19: integer(400, 0, 10_000, "N"),
  bos: integer(0, 0, 10_000, "N"),
  luxos: integer(0, 0, 10_000, "N"),
  vnish: integer(0, 0, 10_000, "N"),
  bitaxe: integer(0, 0, 10_000, "N"),
  meters: integer(100, 0, 10_000, "N"),
  plugs: integer(0, 0, 10_000, "N"),
}).values;

const FAMILY = {
  s9: "antminer-s9",
  s19: "antminer-s19",
  bosminer: "braiins-os",
  bitaxe: "bitaxe",
} as const;

const pool = await SimPool.start({ jobIntervalMs: 0, difficulty: 1e-3 });
const poolUrl = `stratum+tcp://127.0.0.1:${pool.address.port}`;
const clusters: SimCluster[] = [];
for (const [profile, count] of [
  ["s9", args.s9],
  ["s19", args.s19],
  ["bosminer", args.bos],
  ["bitaxe", args.bitaxe],
] as const) {
  if (count === 0) continue;
  clusters.push(
    await SimCluster.start({
      count,
      profile,
      pools: [poolUrl],
      apiHost: "127.0.0.1",
      // the fleet's hashing is not what is measured: a trickle keeps every miner "hashing"
      maxHashesPerSecond: 20_000,
      webApplyDelayMs: 1000,
    }),
  );
}
const miners = clusters.flatMap((c) => c.miners);
for (const m of miners) m.miner.varyPerRead = true;

interface Standalone {
  readonly id: string;
  readonly family: "luxos" | "vnish";
  readonly apiPort: number;
  readonly webPort?: number;
  readonly sim: LuxosSim | VnishSim;
}
const capturesDir = fileURLToPath(new URL("../../test/fixtures/captures/luxos", import.meta.url));
const standalone: Standalone[] = [];
for (let i = 0; i < args.luxos; i++) {
  const sim = new LuxosSim({ clock: systemClock, capturesDir });
  await sim.listen();
  standalone.push({ id: `luxos-${i}`, family: "luxos", apiPort: sim.port, sim });
}
for (let i = 0; i < args.vnish; i++) {
  const sim = new VnishSim({ clock: systemClock });
  await sim.listen();
  standalone.push({
    id: `vnish-${i}`,
    family: "vnish",
    apiPort: sim.apiPort,
    webPort: sim.webPort,
    sim,
  });
}

const ids = [...miners.map((m) => m.id), ...standalone.map((m) => m.id)];
const meters: { id: string; sim: SimMeter; spec: Record<string, unknown> }[] = [];
for (let i = 0; i < args.meters; i++) {
  const sim = await SimMeter.start({ shape: "pdu", outlets: 4, watts: 1200 + i });
  const id = `pdu-${i}`;
  const feeds = ids.slice(i * 4, i * 4 + 4);
  meters.push({ id, sim, spec: { id, url: sim.url, pointer: "/outlets/0/watts", feeds } });
}
// Shelly Gen2 plugs, one miner each, after the miners the PDUs feed.
for (let i = 0; i < args.plugs; i++) {
  const sim = await SimMeter.start({ shape: "shelly", watts: 3000 + i });
  const id = `plug-${i}`;
  const feeds = ids.slice(args.meters * 4 + i, args.meters * 4 + i + 1);
  meters.push({
    id,
    sim,
    spec: { kind: "shelly-gen2", id, url: `http://127.0.0.1:${sim.port}`, feeds },
  });
}
const meterServed = new Map<string, number[]>();
for (const m of meters) {
  meterServed.set(m.id, []);
  m.sim.on("read", (s) => meterServed.get(m.id)?.push(s.watts[0] as number));
}

// Every miner hashing before the ready line: a reading of a miner without work is not the
// reading this benchmark is about.
for (;;) {
  const idle = miners.filter((m) => !m.miner.hashing).length;
  if (idle === 0) break;
  await new Promise((r) => setTimeout(r, 200));
}

process.stdout.write(
  `${JSON.stringify({
    ready: true,
    miners: [
      ...miners.map((m) => ({
        id: m.id,
        family: FAMILY[m.profile as keyof typeof FAMILY],
        apiPort: m.api?.address.port,
        webPort: (m.web ?? m.axeos)?.address.port,
        grpcPort: m.grpc?.address.port,
      })),
      ...standalone.map((m) => ({
        id: m.id,
        family: m.family,
        apiPort: m.apiPort,
        webPort: m.webPort,
      })),
    ],
    meters: meters.map((m) => m.spec),
  })}\n`,
);

const lastReads = new Map<string, number>();
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() !== "served") return;
  const served: Record<string, number[]> = {};
  const reads: Record<string, number> = {};
  for (const m of miners) {
    served[m.id] = m.miner.takeServed();
    reads[m.id] = m.miner.reads - (lastReads.get(m.id) ?? 0);
    lastReads.set(m.id, m.miner.reads);
  }
  for (const m of standalone) {
    served[m.id] = m.sim.takeServed();
    reads[m.id] = m.sim.answered - (lastReads.get(m.id) ?? 0);
    lastReads.set(m.id, m.sim.answered);
  }
  const watts: Record<string, number[]> = {};
  for (const [id, w] of meterServed) watts[id] = w.splice(0);
  process.stdout.write(`${JSON.stringify({ served, reads, watts })}\n`);
});

const stop = async () => {
  for (const c of clusters) await c.stop();
  for (const m of standalone) await m.sim.close();
  for (const m of meters) await m.sim.close();
  await pool.close();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
