/**
 * The simulated fleet of bench/drivers.ts, in its own process: S9s and S19s hashing (slowly:
 * the process's hash rate is capped) on a simulated pool, each with its 4028 API and web UI,
 * every management request moving the values it reports (`varyPerRead`), and PDU meters each
 * feeding four of them. Prints a ready line with every endpoint; then, for each `served` line
 * on stdin, one line with what each device served since the last one (miner: hashrates;
 * meter: watts) and how many management requests each miner answered.
 *
 *   node bench/drivers/fleet.ts --s9 N --s19 N --meters N
 */
import { createInterface } from "node:readline";
import { SimCluster } from "../../sim/asic/cluster.ts";
import { SimMeter } from "../../sim/meter/server.ts";
import { SimPool } from "../../sim/pool/server.ts";
import { benchArgs, integer } from "../args.ts";

const args = benchArgs("drivers/fleet", {
  s9: integer(500, 0, 10_000, "N"),
  s19: integer(400, 0, 10_000, "N"),
  meters: integer(100, 0, 10_000, "N"),
}).values;

const pool = await SimPool.start({ jobIntervalMs: 0, difficulty: 1e-3 });
const poolUrl = `stratum+tcp://127.0.0.1:${pool.address.port}`;
const clusters: SimCluster[] = [];
for (const [profile, count] of [
  ["s9", args.s9],
  ["s19", args.s19],
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

const meters: { id: string; sim: SimMeter; feeds: string[] }[] = [];
for (let i = 0; i < args.meters; i++) {
  const sim = await SimMeter.start({ shape: "pdu", outlets: 4, watts: 1200 + i });
  const feeds = miners.slice(i * 4, i * 4 + 4).map((m) => m.id);
  meters.push({ id: `pdu-${i}`, sim, feeds });
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
    miners: miners.map((m) => ({
      id: m.id,
      family: m.profile === "s9" ? "antminer-s9" : "antminer-s19",
      apiPort: m.api?.address.port,
      webPort: m.web?.address.port,
    })),
    meters: meters.map((m) => ({
      id: m.id,
      url: m.sim.url,
      pointer: "/outlets/0/watts",
      feeds: m.feeds,
    })),
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
  const watts: Record<string, number[]> = {};
  for (const [id, w] of meterServed) watts[id] = w.splice(0);
  process.stdout.write(`${JSON.stringify({ served, reads, watts })}\n`);
});

const stop = async () => {
  for (const c of clusters) await c.stop();
  for (const m of meters) await m.sim.close();
  await pool.close();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
