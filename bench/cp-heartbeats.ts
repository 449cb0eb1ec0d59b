/**
 * Heartbeat ingest of the reference control plane: durably committed, signature-verified
 * heartbeats per second over TLS 1.3 from concurrent simulated agents with distinct keys, on
 * SQLite and on PostgreSQL (goal ≥ 5,000/s on this machine: 100k machines at the agent's
 * default 30 s interval need 3,300/s). Prints one line of JSON, then a table (omitted with
 * --json-only).
 *
 *   node bench/cp-heartbeats.ts [--agents N] [--concurrency C] [--seconds S] [--warmup S]
 *                               [--backends sqlite,postgres] [--presign-rate R] [--json-only]
 *
 * The control plane runs as `agentd cp serve` in its own process on a directory made by
 * `agentd cp init`; the agents (workers and access tokens) are provisioned in its database
 * before it starts (bench/cp/provision.ts). Every request carries a fresh heartbeat JWS
 * signed with the agent's own key, which is also its proof of possession (docs/protocol.md
 * section 3); an answer 200 means verified and committed (SQLite synchronous=FULL,
 * PostgreSQL's default fsync). After the run the database is opened again and the
 * heartbeats it holds must number those answered 200: nothing is counted that was not stored.
 *
 * Heartbeats are signed before each measured window, R per second of it (default 7000; 0:
 * all signed live), because the generator shares the two cores with the server
 * (bench/cp/load.ts presign); `signed_live` counts those signed during the run when the
 * presigned ones ran out. `client_cores` is the generator's own CPU. BENCH_NODE_OPTIONS is
 * passed to the server as NODE_OPTIONS (for example `--cpu-prof --cpu-prof-dir=DIR`).
 *
 * Baseline, same run, same generator, same TLS certificate and request sizes: an HTTPS server
 * that parses each body as JSON and answers 200 (bench/cp/heartbeat-baseline.ts): the
 * transport alone. The ratio control plane / baseline is its own cost.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore } from "../control-plane/store/open.ts";
import { adminQuery, databaseUrl, startPostgres } from "../test/support/postgres.ts";
import { benchArgs, integer, list } from "./args.ts";
import { type LoadResult, presign, runLoad } from "./cp/load.ts";
import { provision, type SimAgent } from "./cp/provision.ts";
import { benchEnv, initCp, serveCp, startBaseline } from "./cp/serve.ts";
import { machineInfo, round, summarizeNs, table } from "./machine.ts";
import { cpuSecondsOf, cpuSecondsOfCommand, memoryOf } from "./proxy-scale/proc.ts";
import type { Child } from "./proxy-scale/procs.ts";

const args = benchArgs("cp-heartbeats", {
  agents: integer(2000, 1, 100_000),
  concurrency: integer(64, 1, 4096, "C"),
  // Presigned heartbeats must still be within the server's 60 s skew when they are sent.
  seconds: integer(10, 1, 30, "S"),
  warmup: integer(2, 0, 10, "S"),
  backends: list(["sqlite", "postgres"], ["sqlite", "postgres"]),
  "presign-rate": integer(7000, 0, 100_000, "R"),
});
const AGENTS = args.values.agents;
const CONCURRENCY = args.values.concurrency;
const SECONDS = args.values.seconds;
const WARMUP = args.values.warmup;
const PRESIGN_RATE = args.values["presign-rate"];
const BACKENDS = args.values.backends;
const JSON_ONLY = args.jsonOnly;
const GOAL_PER_S = 5000;

const env = benchEnv(process.env.BENCH_NODE_OPTIONS);
const work = mkdtempSync(join(tmpdir(), "agentd-bench-cp-"));
const children: Child[] = [];
const machine = machineInfo();

/** How many heartbeats the database holds for these agents, read back page by page. */
async function storedHeartbeats(url: string, agents: readonly SimAgent[]): Promise<number> {
  const store = openStore(url);
  let n = 0;
  for (const a of agents) {
    let before: number | undefined;
    for (;;) {
      const page = await store.listHeartbeats(a.workerId, {
        limit: 1000,
        ...(before === undefined ? {} : { before_counter: before }),
      });
      n += page.length;
      if (page.length < 1000) break;
      before = page[page.length - 1]?.counter;
    }
  }
  await store.close();
  return n;
}

interface Run {
  readonly load: LoadResult;
  readonly cpuCores: number;
  /** PostgreSQL's own processes; null for SQLite (inside the server process). */
  readonly databaseCores: number | null;
  readonly rssMib: number;
}

/** `database`: also the CPU of the PostgreSQL server's processes over the window. */
async function measure(
  child: Child,
  go: () => Promise<LoadResult>,
  database = false,
): Promise<Run> {
  const cpu0 = cpuSecondsOf(child.pid);
  const db0 = database ? cpuSecondsOfCommand("postgres") : 0;
  const load = await go();
  const cpu = cpuSecondsOf(child.pid) - cpu0;
  const db = database ? cpuSecondsOfCommand("postgres") - db0 : null;
  return {
    load,
    cpuCores: round(cpu / load.seconds),
    databaseCores: db === null ? null : round(db / load.seconds),
    rssMib: round(memoryOf(child.pid).rss_kib / 1024, 1),
  };
}

function summary(r: Run) {
  const lat = summarizeNs(r.load.latenciesNs);
  return {
    per_s: round(r.load.ok / r.load.seconds, 1),
    ok: r.load.ok,
    sent: r.load.sent,
    refused: r.load.refused,
    errors: r.load.errors,
    seconds: round(r.load.seconds),
    latency_ms: { p50: round(lat.p50_us / 1000), p99: round(lat.p99_us / 1000) },
    server_cores: r.cpuCores,
    database_cores: r.databaseCores,
    client_cores: round(r.load.clientCores),
    signed_live: r.load.signedLive,
    server_rss_mib: r.rssMib,
  };
}

let pg: Awaited<ReturnType<typeof startPostgres>> | undefined;
const results: Record<string, unknown> = {};
let baseline: ReturnType<typeof summary> | undefined;
try {
  for (const backend of BACKENDS) {
    const dir = join(work, backend);
    let url: string;
    if (backend === "postgres") {
      pg ??= await startPostgres();
      await adminQuery(pg.url, "CREATE DATABASE bench_cp");
      url = databaseUrl(pg.url, "bench_cp");
    } else url = `sqlite:${join(work, "cp.db")}`;
    await initCp(dir, url);
    const { agents } = await provision(url, { agents: AGENTS });
    const cp = await serveCp(dir, url, { env });
    children.push(cp);
    const base = `https://127.0.0.1:${cp.ready.port as number}`;
    const keysDir = existsSync(join(dir, "keys", "ca.crt.pem")) ? join(dir, "keys") : dir;
    const caPem = readFileSync(join(keysDir, "ca.crt.pem"), "utf8");
    const signed = (seconds: number) =>
      presign(agents, Math.ceil((PRESIGN_RATE * seconds) / agents.length));
    const load = (seconds: number, presigned: ReturnType<typeof presign>) =>
      runLoad({ url: base, caPem, agents, concurrency: CONCURRENCY, seconds, presigned });
    const warm = WARMUP > 0 ? (await load(WARMUP, signed(WARMUP))).ok : 0;
    const presigned = signed(SECONDS);
    const run = await measure(cp, () => load(SECONDS, presigned), backend === "postgres");
    await cp.stop();
    const stored = await storedHeartbeats(url, agents);
    const answered200 = warm + run.load.ok;
    // A request whose connection failed may or may not have been committed; none else may.
    const lost = run.load.errors;
    if (stored < answered200 || stored > answered200 + lost) {
      throw new Error(
        `${backend}: ${answered200} heartbeats answered 200 (${lost} transport errors) but the database holds ${stored}`,
      );
    }
    results[backend] = {
      ...summary(run),
      durability_check: { answered_200_incl_warmup: answered200, stored_heartbeats: stored },
    };
    if (baseline === undefined) {
      const b = await startBaseline("heartbeat-baseline.ts", keysDir);
      children.push(b);
      const fixedBody = JSON.stringify({ heartbeat: "x".repeat(900) });
      const bl = (seconds: number) =>
        runLoad({
          url: `https://127.0.0.1:${b.ready.port as number}`,
          caPem,
          agents,
          concurrency: CONCURRENCY,
          seconds,
          fixedBody,
        });
      if (WARMUP > 0) await bl(WARMUP);
      baseline = summary(await measure(b, () => bl(SECONDS)));
      await b.stop();
    }
  }
} finally {
  for (const c of children) await c.stop();
  pg?.stop();
  rmSync(work, { recursive: true, force: true });
}

const goals = Object.fromEntries(
  Object.entries(results).map(([k, v]) => {
    const per = (v as { per_s: number }).per_s;
    return [k, { goal: `>= ${GOAL_PER_S}/s`, value: per, met: per >= GOAL_PER_S }];
  }),
);
const ratios = Object.fromEntries(
  Object.entries(results).map(([k, v]) => [
    `${k}_over_baseline`,
    baseline === undefined ? null : round((v as { per_s: number }).per_s / baseline.per_s),
  ]),
);
const report = {
  bench: "cp-heartbeats",
  machine,
  config: { agents: AGENTS, concurrency: CONCURRENCY, seconds: SECONDS, warmup_s: WARMUP },
  results,
  baseline,
  ratios,
  goals,
};
process.stdout.write(`${JSON.stringify(report)}\n`);
if (!JSON_ONLY) {
  const rows = [
    ...Object.entries(results),
    ["baseline (HTTPS + JSON only)", baseline] as const,
  ].map(([k, v]) => {
    const s = v as ReturnType<typeof summary>;
    return [
      k,
      s.per_s,
      s.latency_ms.p50,
      s.latency_ms.p99,
      s.server_cores,
      s.database_cores ?? "-",
      s.client_cores,
      s.server_rss_mib,
    ];
  });
  process.stdout.write(
    `\nmachine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, load ${machine.loadavg_1m}\n` +
      `${AGENTS} agents with distinct keys, ${CONCURRENCY} in flight, ${SECONDS} s\n\n` +
      table(
        [
          "server",
          "heartbeats/s",
          "p50 ms",
          "p99 ms",
          "server cores",
          "database cores",
          "client cores",
          "RSS MiB",
        ],
        rows,
      ) +
      "\n" +
      Object.entries(goals)
        .map(([k, g]) => `goal ${k}: ${g.goal}: ${g.met ? "met" : "NOT met"} (${g.value}/s)`)
        .join("\n") +
      "\n",
  );
}
