/**
 * ASIC drivers at fleet scale (issue 16): 1,000 simulated devices — stock S9s and S19s, each
 * with its 4028 API and web UI, and HTTP JSON power meters — read every 15 s through the real
 * driver host (its own process, under the drivers' OS user, Node's permission model), as the
 * agent will. Prints one line of JSON on stdout, then a table (omitted with --json-only).
 *
 *   node bench/drivers.ts [--s9 N] [--s19 N] [--meters N] [--rounds R] [--interval S]
 *                         [--concurrency C] [--as-me] [--json-only]
 *
 * Three processes: the fleet (bench/drivers/fleet.ts: the simulators, hashing slowly on a
 * simulated pool), this one (the agent's side: the launcher and its channel, the schema checks
 * of every reply) and the driver host. Measured per round: the time to read the whole fleet
 * (every miner's `read`, every meter), each read's latency, the CPU seconds this process and
 * the host used during the round, and both RSS.
 *
 * Nothing can be cached: the simulator moves every value it reports on every management
 * request (hashrate, chip temperatures, fan speeds; a meter's watts) and keeps the hashrates
 * and watts it served; after each round the bench checks every reading is complete (all
 * boards, chip temperatures, fans, pool slots, uptime) and current (its hashrate, or a meter's
 * watts, is one this device served in this round).
 *
 * Baseline, same run, interleaved with the rounds: bare TCP request/replies — connect, write
 * the request, read to EOF, nothing parsed — to the same devices, as many per device as the
 * drivers made in the round before (the simulator counts them), at the same concurrency.
 * Ratios drivers / baseline isolate what the drivers, the host and the channel cost.
 */
import { connect } from "node:net";
import { resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { systemClock } from "../lib/clock.ts";
import { createLogger } from "../lib/log/logger.ts";
import { backgroundTimers } from "../lib/timers.ts";
import type { Family, MeterSpec, Reading } from "../plugins/driver.ts";
import { DEFAULT_LIMITS } from "../plugins/driver.ts";
import { DriverHost } from "../plugins/host/launcher.ts";
import { benchArgs, decimal, flag, integer } from "./args.ts";
import { machineInfo, percentile, round, table } from "./machine.ts";
import { cpuSecondsOf, memoryOf } from "./proxy-scale/proc.ts";
import { startChild } from "./proxy-scale/procs.ts";

const opts = benchArgs("drivers", {
  s9: integer(300, 0, 10_000),
  s19: integer(250, 0, 10_000),
  bos: integer(150, 0, 10_000),
  luxos: integer(100, 0, 10_000),
  vnish: integer(50, 0, 10_000),
  bitaxe: integer(50, 0, 10_000),
  meters: integer(80, 0, 10_000),
  plugs: integer(20, 0, 10_000),
  rounds: integer(4, 1, 1000, "R"),
  interval: decimal(15, 0.5, 3600, "S"),
  concurrency: integer(100, 1, 10_000, "C"),
  "as-me": flag(),
  "json-only": flag(),
}).values;

interface FleetMiner {
  id: string;
  family: Family;
  apiPort?: number;
  webPort?: number;
  grpcPort?: number;
}
interface Served {
  served: Record<string, number[]>;
  reads: Record<string, number>;
  watts: Record<string, number[]>;
}

const ROOT = resolve(import.meta.dirname, "..");
const NODE = process.execPath;
const fleet = await startChild(
  "fleet",
  NODE,
  [
    resolve(ROOT, "bench/drivers/fleet.ts"),
    ...(["s9", "s19", "bos", "luxos", "vnish", "bitaxe", "meters", "plugs"] as const).flatMap(
      (k) => [`--${k}`, String(opts[k])],
    ),
  ],
  { PATH: process.env.PATH ?? "/usr/bin:/bin" },
  300_000,
);
const miners = fleet.ready.miners as FleetMiner[];
const meters = fleet.ready.meters as MeterSpec[];
const servedQueue: ((s: Served) => void)[] = [];
fleet.onLine((line) => servedQueue.shift()?.(JSON.parse(line) as Served));
const askServed = () =>
  new Promise<Served>((r) => {
    servedQueue.push(r);
    fleet.send("served");
  });

let hostPid: number | null = null;
const host = new DriverHost({
  logger: createLogger({ level: "warn" }),
  clock: systemClock,
  timers: backgroundTimers,
  runAsInvokingUser: opts["as-me"],
  onEvent: (e) => {
    if (e.type === "ready") hostPid = e.pid;
  },
});
await host.start();
if (hostPid === null) throw new Error("the driver host said no pid");
const HOST_PID: number = hostPid;
// Before any read: what the host and this process cost with nothing to do.
const idle = { agent: process.memoryUsage().rss / 1024, host: memoryOf(HOST_PID).rss_kib };

/** Runs `jobs` with at most `c` in flight; each job's latency in ms. */
async function pool<T>(
  jobs: (() => Promise<T>)[],
  c: number,
): Promise<{ results: (T | Error)[]; ms: number[] }> {
  const results: (T | Error)[] = new Array(jobs.length);
  const ms: number[] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= jobs.length) return;
      const t0 = performance.now();
      try {
        results[i] = await (jobs[i] as () => Promise<T>)();
      } catch (e) {
        results[i] = e as Error;
      }
      ms[i] = performance.now() - t0;
    }
  };
  await Promise.all(Array.from({ length: Math.min(c, jobs.length) }, worker));
  return { results, ms };
}

const drivers = new Map(
  miners.map((m) => [
    m.id,
    host.driver(
      m.family,
      {
        host: "127.0.0.1",
        ...(m.apiPort === undefined ? {} : { apiPort: m.apiPort }),
        ...(m.webPort === undefined ? {} : { webPort: m.webPort }),
        ...(m.grpcPort === undefined ? {} : { grpcPort: m.grpcPort }),
      },
      null,
      DEFAULT_LIMITS,
    ),
  ]),
);

function readAll() {
  const jobs: (() => Promise<Reading | { watts: number; id: string }>)[] = [
    ...miners.map((m) => () => (drivers.get(m.id) as { read(): Promise<Reading> }).read()),
    ...meters.map((m) => () => host.readMeter(m, null, DEFAULT_LIMITS)),
  ];
  return pool(jobs, opts.concurrency);
}

/** One raw request/reply over TCP: connect, write, read to EOF. Nothing parsed. */
function bare(port: number, payload: string): Promise<number> {
  return new Promise((res, rej) => {
    let n = 0;
    const s = connect({ host: "127.0.0.1", port }, () => s.end(payload));
    s.on("data", (d: Buffer) => {
      n += d.length;
    });
    s.on("end", () => {
      s.destroy();
      res(n);
    });
    s.on("error", rej);
  });
}

function baselineJobs(reads: Record<string, number>): (() => Promise<number>)[] {
  const jobs: (() => Promise<number>)[] = [];
  for (const m of miners) {
    // a 4028 summary where the miner has that API; an HTTP GET of `/` where it has only HTTP
    const port = m.apiPort ?? m.webPort;
    const payload =
      m.apiPort !== undefined ? '{"command":"summary"}' : "GET / HTTP/1.0\r\nHost: x\r\n\r\n";
    if (port === undefined) continue;
    for (let i = 0; i < (reads[m.id] ?? 0); i++) jobs.push(() => bare(port, payload));
  }
  for (const m of meters) {
    const u = new URL(m.url);
    const path = m.kind === "shelly-gen2" ? "/rpc/Switch.GetStatus?id=0" : u.pathname;
    jobs.push(() => bare(Number(u.port), `GET ${path} HTTP/1.0\r\nHost: ${u.host}\r\n\r\n`));
  }
  return jobs;
}

function check(
  results: (Reading | { watts: number; id: string } | Error)[],
  s: Served,
): {
  complete: number;
  incomplete: number;
  stale: number;
  errors: Record<string, number>;
  byFamily: Record<string, string>;
} {
  const out = {
    complete: 0,
    incomplete: 0,
    stale: 0,
    errors: {} as Record<string, number>,
    byFamily: {} as Record<string, string>,
  };
  results.forEach((r, i) => {
    if (r instanceof Error) {
      const code = `${(r as Error & { code?: string }).code ?? r.message} (${
        i < miners.length ? (miners[i] as FleetMiner).family : "meter"
      })`;
      out.errors[code] = (out.errors[code] ?? 0) + 1;
      return;
    }
    if (i < miners.length) {
      const m = miners[i] as FleetMiner;
      const x = r as Reading;
      const whole =
        x.hashrateGhs !== null &&
        x.hashrateGhs > 0 &&
        x.boards.length >= 1 &&
        x.boards.every((b) => b.chipTempC.length + b.pcbTempC.length > 0) &&
        x.fans.length >= 1 &&
        x.pools.length >= 1 &&
        x.uptimeS !== null;
      const ghs = x.hashrateGhs as number;
      // served as GH/s; a driver reading MH/s divides by 1000 (float: compare closely)
      const current = (s.served[m.id] ?? []).some((v) => Math.abs(v - ghs) <= 1e-9 * v);
      if (!whole) {
        out.incomplete++;
        out.byFamily[m.family] = `${out.byFamily[m.family] ?? ""}i`;
      } else if (!current) {
        out.stale++;
        out.byFamily[m.family] = `${out.byFamily[m.family] ?? ""}s`;
      } else out.complete++;
    } else {
      const meter = meters[i - miners.length] as MeterSpec;
      const x = r as { watts: number };
      if ((s.watts[meter.id] ?? []).includes(x.watts)) out.complete++;
      else out.stale++;
    }
  });
  return out;
}

// Warm-up: every device read once (the host's first compiles and connections), not counted.
await readAll();
await askServed();

const rounds: Record<string, unknown>[] = [];
const agentMem: number[] = [];
const hostMem: number[] = [];
const start = performance.now();
for (let r = 0; r < opts.rounds; r++) {
  const due = start + r * opts.interval * 1000;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((res) => setTimeout(res, wait));
  const cpuAgent0 = process.cpuUsage();
  const cpuHost0 = cpuSecondsOf(HOST_PID);
  const t0 = performance.now();
  const got = await readAll();
  const fleetMs = performance.now() - t0;
  const cpuAgent = process.cpuUsage(cpuAgent0);
  const cpuHost = cpuSecondsOf(HOST_PID) - cpuHost0;
  agentMem.push(process.memoryUsage().rss / 1024);
  hostMem.push(memoryOf(HOST_PID).rss_kib);
  const served = await askServed();
  const verdict = check(got.results, served);
  // The baseline, as many bare request/replies per device as the drivers just made.
  const jobs = baselineJobs(served.reads);
  const b0 = performance.now();
  const base = await pool(jobs, opts.concurrency);
  const baseMs = performance.now() - b0;
  await askServed(); // the baseline's requests are not the next round's
  const sorted = Float64Array.from(got.ms).sort();
  const bSorted = Float64Array.from(base.ms).sort();
  rounds.push({
    round: r + 1,
    devices: got.results.length,
    fleet_read_ms: round(fleetMs, 1),
    read_p50_ms: round(percentile(sorted, 0.5), 2),
    read_p99_ms: round(percentile(sorted, 0.99), 2),
    requests: jobs.length,
    baseline_ms: round(baseMs, 1),
    baseline_p50_ms: round(percentile(bSorted, 0.5), 2),
    ratio: round(fleetMs / baseMs, 2),
    agent_cpu_s: round((cpuAgent.user + cpuAgent.system) / 1e6, 3),
    host_cpu_s: round(cpuHost, 3),
    baseline_errors: base.results.filter((x) => x instanceof Error).length,
    ...verdict,
  });
}

await host.stop();
await fleet.stop();

const num = (k: string) => rounds.map((x) => x[k] as number);
const median = (xs: number[]) => percentile(Float64Array.from(xs).sort(), 0.5);
const summary = {
  bench: "drivers",
  machine: machineInfo(),
  config: {
    s9: opts.s9,
    s19: opts.s19,
    bos: opts.bos,
    luxos: opts.luxos,
    vnish: opts.vnish,
    bitaxe: opts.bitaxe,
    meters: opts.meters,
    plugs: opts.plugs,
    rounds: opts.rounds,
    interval_s: opts.interval,
    concurrency: opts.concurrency,
    driver_user: opts["as-me"] ? "(invoking user)" : "agentd-drivers",
  },
  fleet_read_ms_median: round(median(num("fleet_read_ms")), 1),
  baseline_ms_median: round(median(num("baseline_ms")), 1),
  ratio_median: round(median(num("ratio")), 2),
  agent_cpu_pct_of_core: round((100 * median(num("agent_cpu_s"))) / opts.interval, 2),
  host_cpu_pct_of_core: round((100 * median(num("host_cpu_s"))) / opts.interval, 2),
  agent_rss_mib_idle: round(idle.agent / 1024, 1),
  host_rss_mib_idle: round(idle.host / 1024, 1),
  agent_rss_mib_max: round(Math.max(...agentMem) / 1024, 1),
  host_rss_mib_max: round(Math.max(...hostMem) / 1024, 1),
  readings_complete_and_current: rounds.every(
    (x) => x.incomplete === 0 && x.stale === 0 && Object.keys(x.errors as object).length === 0,
  ),
  rounds,
};
process.stdout.write(`${JSON.stringify(summary)}\n`);
if (!opts["json-only"]) {
  const keys = [
    "round",
    "devices",
    "fleet_read_ms",
    "read_p99_ms",
    "requests",
    "baseline_ms",
    "ratio",
    "agent_cpu_s",
    "host_cpu_s",
    "complete",
    "incomplete",
    "stale",
  ];
  process.stdout.write(
    `${table(
      keys,
      rounds.map((x) => keys.map((k) => x[k] as number)),
    )}\n`,
  );
  process.stdout.write(
    `fleet read (median) ${summary.fleet_read_ms_median} ms vs bare TCP ${summary.baseline_ms_median} ms (×${summary.ratio_median}); CPU per ${opts.interval} s: agent ${summary.agent_cpu_pct_of_core}% of a core, host ${summary.host_cpu_pct_of_core}%; RSS agent ${summary.agent_rss_mib_idle} → ${summary.agent_rss_mib_max} MiB, host ${summary.host_rss_mib_idle} → ${summary.host_rss_mib_max} MiB\n`,
  );
}
if (!summary.readings_complete_and_current) process.exitCode = 1;
