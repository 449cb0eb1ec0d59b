/**
 * Push from the reference control plane: with N agents (default 10,000) holding their push
 * stream open over TLS 1.3, how long a command takes from the operator's request to the
 * chosen agent — chosen at random among all N — and what each open stream costs the server
 * in memory (goal: p99 < 100 ms). Prints one line of JSON, then a table (omitted with
 * --json-only).
 *
 *   node bench/cp-push.ts [--agents N] [--pushes P] [--concurrency C] [--connect-concurrency K]
 *                         [--backend sqlite|postgres] [--seed S] [--json-only]
 *
 * The control plane runs as `agentd cp serve` in its own process (rate limits off: every
 * agent and the operator come from 127.0.0.1) on a directory made by `agentd cp init`; the
 * agents, the operator's API key and, for the P targets, the owner's consent allowing
 * `mining.pause` are provisioned in its database first (bench/cp/provision.ts). Each agent
 * opens its stream with the agent's own stream client (control-plane/protocol/client-stream.ts:
 * access token, a proof signed by its key, `hello`, `ready`), K connecting at a time. The
 * server's RSS is read before the first stream and again once all N are ready and settled:
 * the difference over N is the memory per connected agent.
 *
 * Then P pushes, C in flight, each to a target drawn uniformly from the N (seeded): `POST
 * /v1/commands` as the operator (the command is signed, stored with its stream event and
 * announced), timed from just before the request to the moment the target's stream client
 * hands the command event over. A target is never pushed to twice at once.
 *
 * Baseline, same run, same client code, same certificate, same N, P, C and targets: a
 * WebSocket server that answers `hello` with `ready` and relays `POST /push` to the named
 * stream (bench/cp/push-baseline.ts): the transport alone, no authentication, database or
 * signature. Ratios are control plane / baseline.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { Agent, request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStream, type StreamHandle } from "../control-plane/protocol/client-stream.ts";
import { createProof } from "../control-plane/protocol/proof.ts";
import { systemClock } from "../lib/clock.ts";
import { decodeJwsUnverified } from "../lib/crypto/jws.ts";
import { adminQuery, databaseUrl, startPostgres } from "../test/support/postgres.ts";
import { benchArgs, choice, integer } from "./args.ts";
import { provision, type SimAgent } from "./cp/provision.ts";
import { initCp, serveCp, startBaseline } from "./cp/serve.ts";
import { machineInfo, rng, round, summarizeNs, table } from "./machine.ts";
import { memoryOf, raiseOwnFdLimit } from "./proxy-scale/proc.ts";
import type { Child } from "./proxy-scale/procs.ts";

const args = benchArgs("cp-push", {
  agents: integer(10_000, 1, 50_000),
  pushes: integer(1000, 1, 100_000, "P"),
  concurrency: integer(4, 1, 256, "C"),
  "connect-concurrency": integer(100, 1, 1000, "K"),
  backend: choice(["sqlite", "postgres"], "sqlite"),
  seed: integer(1, 0, 2 ** 31 - 1, "S"),
});
const AGENTS = args.values.agents;
const PUSHES = args.values.pushes;
const CONCURRENCY = args.values.concurrency;
const CONNECT_CONCURRENCY = args.values["connect-concurrency"];
const SEED = args.values.seed;
const BACKEND = args.values.backend;
const JSON_ONLY = args.jsonOnly;
const GOAL_P99_MS = 100;
const ACTION = "mining.pause";

const machine = machineInfo();
// Each agent holds one socket here and one in the server (which inherits this limit).
const fd = raiseOwnFdLimit(AGENTS + 4096);
if (fd.after.soft < AGENTS + 1024) {
  args.usage(
    `the file-descriptor limit is ${fd.after.soft}, ${AGENTS + 1024} needed (${fd.error ?? fd.method})`,
  );
}

/** N stream clients, and a way to wait for the next command event of one of them. */
interface Fleet {
  /** Resolves with process.hrtime.bigint() when `workerId`'s next command event is handed over. */
  next(workerId: string): Promise<bigint>;
  readonly errors: () => number;
  close(): Promise<void>;
}

async function connectFleet(origin: string, caPem: string, agents: readonly SimAgent[]) {
  const waiting = new Map<string, (at: bigint) => void>();
  const handles: StreamHandle[] = [];
  let errors = 0;
  const connectOne = (a: SimAgent) =>
    new Promise<void>((ready, failed) => {
      const path = `/v1/workers/${a.workerId}/stream`;
      const timer = setTimeout(
        () => failed(new Error(`stream of ${a.workerId} not ready in 120 s`)),
        120_000,
      );
      handles.push(
        openStream({
          origin,
          caPem,
          path,
          after: 0,
          headers: () => ({
            authorization: `AgentD ${a.accessToken}`,
            "agentd-proof": createProof({
              privateKey: a.privateKey,
              method: "GET",
              url: `${origin}${path}`,
              accessToken: a.accessToken,
              clock: systemClock,
            }),
          }),
          onReady: () => {
            clearTimeout(timer);
            ready();
          },
          onEvent: (e) => {
            if (e.kind !== "command") return;
            const at = process.hrtime.bigint();
            const w = waiting.get(a.workerId);
            waiting.delete(a.workerId);
            w?.(at);
          },
          onError: () => {
            errors++;
          },
          idleTimeoutMs: 120_000,
        }),
      );
    });
  let i = 0;
  await Promise.all(
    Array.from({ length: CONNECT_CONCURRENCY }, async () => {
      while (i < agents.length) await connectOne(agents[i++] as SimAgent);
    }),
  );
  const fleet: Fleet = {
    next: (workerId) =>
      new Promise((resolveAt, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(workerId);
          reject(new Error(`no command reached ${workerId} within 30 s`));
        }, 30_000);
        waiting.set(workerId, (at) => {
          clearTimeout(timer);
          resolveAt(at);
        });
      }),
    errors: () => errors,
    close: async () => {
      await Promise.all(handles.map((h) => h.close()));
    },
  };
  return fleet;
}

function post(agent: Agent, url: string, headers: Record<string, string>, body: unknown) {
  const payload = JSON.stringify(body);
  return new Promise<{ status: number; json: Record<string, unknown> }>((done, fail) => {
    const req = request(
      url,
      {
        method: "POST",
        agent,
        headers: {
          ...headers,
          "content-type": "application/json",
          "content-length": String(Buffer.byteLength(payload)),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          done({
            status: res.statusCode ?? 0,
            json: JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>,
          }),
        );
      },
    );
    req.on("error", fail);
    req.end(payload);
  });
}

interface PhaseResult {
  readonly server_rss_idle_mib: number;
  readonly server_rss_connected_mib: number;
  readonly memory_per_agent_kib: number;
  readonly connect_seconds: number;
  readonly stream_errors: number;
  readonly push_latency_ms: { p50: number; p90: number; p99: number; max: number };
  readonly request_ms: { p50: number; p99: number };
}

/**
 * Connects the fleet to `origin`, measures memory, then pushes to `targets` with `push`,
 * which sends one push and resolves when the server answered.
 */
async function phase(
  server: Child,
  origin: string,
  caPem: string,
  agents: readonly SimAgent[],
  targets: readonly number[],
  push: (a: SimAgent) => Promise<void>,
): Promise<PhaseResult> {
  await settle();
  const idle = memoryOf(server.pid).rss_kib;
  const t0 = process.hrtime.bigint();
  const fleet = await connectFleet(origin, caPem, agents);
  const connectSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  await settle();
  const connected = memoryOf(server.pid).rss_kib;
  const latencies: number[] = [];
  const requests: number[] = [];
  const busy = new Set<string>();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < targets.length) {
        const a = agents[targets[next++] as number] as SimAgent;
        // One push at a time per target, so the event that arrives is this push's.
        while (busy.has(a.workerId)) await new Promise((r) => setTimeout(r, 1));
        busy.add(a.workerId);
        const arrived = fleet.next(a.workerId);
        const start = process.hrtime.bigint();
        await push(a);
        requests.push(Number(process.hrtime.bigint() - start));
        latencies.push(Number((await arrived) - start));
        busy.delete(a.workerId);
      }
    }),
  );
  const errors = fleet.errors();
  await fleet.close();
  const lat = summarizeNs(Float64Array.from(latencies));
  const req = summarizeNs(Float64Array.from(requests));
  return {
    server_rss_idle_mib: round(idle / 1024, 1),
    server_rss_connected_mib: round(connected / 1024, 1),
    memory_per_agent_kib: round((connected - idle) / agents.length, 2),
    connect_seconds: round(connectSeconds, 1),
    stream_errors: errors,
    push_latency_ms: {
      p50: round(lat.p50_us / 1000),
      p90: round(lat.p90_us / 1000),
      p99: round(lat.p99_us / 1000),
      max: round(lat.max_us / 1000),
    },
    request_ms: { p50: round(req.p50_us / 1000), p99: round(req.p99_us / 1000) },
  };
}

/** A moment for the server's garbage collector and TLS sessions to settle before RSS is read. */
function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 3000));
}

const work = mkdtempSync(join(tmpdir(), "agentd-bench-push-"));
const children: Child[] = [];
let pg: Awaited<ReturnType<typeof startPostgres>> | undefined;
let report: Record<string, unknown>;
try {
  let url: string;
  if (BACKEND === "postgres") {
    pg = await startPostgres();
    await adminQuery(pg.url, "CREATE DATABASE bench_push");
    url = databaseUrl(pg.url, "bench_push");
  } else url = `sqlite:${join(work, "cp.db")}`;
  const dir = join(work, "cp");
  await initCp(dir, url);
  const random = rng(SEED);
  const targets = Array.from({ length: PUSHES }, () => Math.floor(random() * AGENTS));
  const { agents, operatorKey } = await provision(url, {
    agents: AGENTS,
    consentFor: new Set(targets),
    commands: [ACTION],
  });
  const keysDir = join(dir, "keys");
  const caPem = readFileSync(join(keysDir, "ca.crt.pem"), "utf8");
  const httpAgent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY, ca: caPem });

  // Rate limits off: every agent and the operator come from 127.0.0.1, the operator fast.
  const served = await serveCp(dir, url, { rateCaller: false });
  children.push(served);
  const cpOrigin = `https://127.0.0.1:${served.ready.port as number}`;
  let sampleCommand: string | undefined;
  const control = await phase(served, cpOrigin, caPem, agents, targets, async (a) => {
    const r = await post(
      httpAgent,
      `${cpOrigin}/v1/commands`,
      { authorization: `Bearer ${operatorKey}` },
      { worker: a.workerId, action: ACTION, args: {} },
    );
    if (r.status !== 200)
      throw new Error(`POST /v1/commands: ${r.status} ${JSON.stringify(r.json)}`);
    sampleCommand ??= String(r.json.command);
  });
  await served.stop();
  // The command the baseline relays: a real one, so both clients parse the same bytes.
  const command = sampleCommand as string;
  decodeJwsUnverified(command);

  const b = await startBaseline("push-baseline.ts", keysDir);
  children.push(b);
  const bOrigin = `https://127.0.0.1:${b.ready.port as number}`;
  const baseline = await phase(b, bOrigin, caPem, agents, targets, async (a) => {
    const r = await post(httpAgent, `${bOrigin}/push`, {}, { worker: a.workerId, jws: command });
    if (r.status !== 200) throw new Error(`baseline push: ${r.status}`);
  });
  await b.stop();
  httpAgent.destroy();

  const p99 = control.push_latency_ms.p99;
  report = {
    bench: "cp-push",
    machine,
    config: {
      agents: AGENTS,
      pushes: PUSHES,
      concurrency: CONCURRENCY,
      connect_concurrency: CONNECT_CONCURRENCY,
      backend: BACKEND,
      seed: SEED,
      fd_limit: fd.after.soft,
    },
    results: { control_plane: control },
    baseline,
    ratios: {
      push_p99_over_baseline: round(p99 / baseline.push_latency_ms.p99),
      memory_per_agent_over_baseline: round(
        control.memory_per_agent_kib / baseline.memory_per_agent_kib,
      ),
    },
    goals: {
      push_p99_ms: { goal: `< ${GOAL_P99_MS}`, value: p99, met: p99 < GOAL_P99_MS },
    },
  };
} finally {
  for (const c of children) await c.stop();
  pg?.stop();
  rmSync(work, { recursive: true, force: true });
}

process.stdout.write(`${JSON.stringify(report)}\n`);
if (!JSON_ONLY) {
  const control = (report.results as { control_plane: PhaseResult }).control_plane;
  const rows = [control, report.baseline as PhaseResult];
  const names = ["control plane", "baseline (WebSocket relay)"];
  process.stdout.write(
    `\nmachine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, load ${machine.loadavg_1m}\n` +
      `${AGENTS} agents streaming over TLS 1.3 (${BACKEND}), ${PUSHES} pushes to random agents, ${CONCURRENCY} in flight\n\n` +
      table(
        [
          "server",
          "push p50 ms",
          "p90 ms",
          "p99 ms",
          "max ms",
          "request p50 ms",
          "KiB per agent",
          "RSS idle MiB",
          "RSS connected MiB",
          "connect s",
        ],
        rows.map((r, i) => [
          names[i] as string,
          r.push_latency_ms.p50,
          r.push_latency_ms.p90,
          r.push_latency_ms.p99,
          r.push_latency_ms.max,
          r.request_ms.p50,
          r.memory_per_agent_kib,
          r.server_rss_idle_mib,
          r.server_rss_connected_mib,
          r.connect_seconds,
        ]),
      ) +
      `\ngoal push p99 < ${GOAL_P99_MS} ms: ${
        (report.goals as { push_p99_ms: { met: boolean } }).push_p99_ms.met ? "met" : "NOT met"
      } (${control.push_latency_ms.p99} ms)\n`,
  );
}
