/**
 * The agent (`agentd run`) as an owner runs it (issue 6): how fast an owner's revocation
 * posted to the control plane stops the ASICs' data path (goal p99 < 250 ms), how much memory
 * the idle agent holds (goal < 80 MB) and how long it takes from start to ready (goal
 * < 500 ms). Prints one line of JSON, then a table (omitted with --json-only).
 *
 *   node bench/agent.ts [--rounds N] [--miners N] [--share-ms MS] [--starts N]
 *                       [--unreachable-starts N] [--idle-s S] [--heartbeat-s S]
 *                       [--entry both|source|built] [--audit-fill-mib N] [--cpu-prof DIR]
 *                       [--agent-node-options OPTS] [--seed N] [--json-only]
 *
 * Every part is its own process, as in production and test/e2e/agent-run.test.ts: `agentd cp
 * serve` (SQLite), `agentd sim pool`, and the agent, `agentd run` on a machine enrolled with
 * `agentd enroll` (bench/agent/world.ts). This process is the owner (it signs and posts the
 * documents through the owner API) and the ASICs (bench/agent/farm.ts: --miners Stratum
 * miners through the agent's proxy, each submitting a share every --share-ms on average).
 *
 * Revoke-to-stop, --rounds times: with every miner mining under consent seq k, after a random
 * pause (0–300 ms), the owner's revocation through k (signed beforehand) is POSTed to
 * `/v1/workers/{id}/revocations` on a warm keep-alive connection; the clock starts just
 * before the request is written (an upper bound of the time from its arrival) and stops when
 * the last miner's connection is ended by the proxy — the data path itself: the proxy, as the
 * policy guard's mining gate, closes every ASIC when a revocation leaves no network allowed,
 * in the same turn as it stops forwarding (stratum-client/proxy.ts `apply`). The agent's audit
 * log gives the steps in between (`revocation.accepted` and `decision.changed`, their `at` in
 * ms on the same clock): control plane → agent, and agent → gate. Then, once the second of
 * the control plane's stop publication has passed (a consent accepted in that same second does
 * not lift the stop, control-plane/api/publish.ts), the owner posts consent k + 1 and the
 * miners reconnect (every 25 ms) until each has work again (`resume`), and the next round
 * starts.
 *
 * Baseline, same rounds, same path without a stop: a revocation of an older consent only
 * (through k − 1, which the control plane stores and pushes but which stops nothing), timed to
 * the agent's `revocation.accepted` audit record: owner → control plane → push → agent's
 * verification, persistence and audit. Odd rounds send it before the revocation (while
 * mining), even rounds after (while revoked). `ratios.revoke_to_stop_*_over_push` is what
 * stopping adds to a plain push.
 *
 * Memory, per entry: the agent started on the enrolled machine (consent in force, no
 * miners), idle for --idle-s seconds with a heartbeat every --heartbeat-s, then VmRSS and VmHWM
 * from /proc. Baselines read at the same moment: a trivial Node process
 * (`setInterval`) on the same binary and flags, and one that only imports the CLI's modules
 * (cli/program.ts or its build): loading the code versus running the agent.
 *
 * Start-to-ready, per entry, --starts times: from spawn() to the agent's ready line, each
 * stopped with SIGTERM before the next; interleaved with the baselines in a rotating order: a
 * trivial Node script's first line, and `agentd --version` (the CLI's modules loaded, nothing
 * run). Each start's first `decision.changed` audit record (trigger `start`, written when the
 * policy guard starts, before the agent attests) splits the time in two. Then, with the
 * control plane stopped, --unreachable-starts more per entry (the agent starts on its stored
 * policy when attestation fails: connection refused here). The agent verifies its whole
 * audit log at every start: --audit-fill-mib grows it first, as months of running would.
 *
 * Entries: `source` is ./bin/agentd (type stripping at start, what a checkout runs; the
 * revocation rounds use it), `built` the pinned Node with bin/agentd's flags on
 * dist/cli/main.js (`npm run build`, run first: what packaging ships).
 */

import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { localApiGet } from "../agent/local-api.ts";
import { ChainLog } from "../lib/fs/chain-log.ts";
import { signRevocation } from "../policy-guard/sign.ts";
import { type AuditRecord, AuditTail } from "./agent/audit-tail.ts";
import { Farm, type FarmCounts } from "./agent/farm.ts";
import {
  agentdCommand,
  baseEnv,
  type Entry,
  NODE,
  NODE_FLAGS,
  programModule,
  REPO,
  spawnTimed,
  type Timed,
} from "./agent/spawn.ts";
import { DIFFICULTY, startWorld, type World } from "./agent/world.ts";
import { benchArgs, choice, integer, text } from "./args.ts";
import { machineInfo, rng, round, summarizeNs, table } from "./machine.ts";
import { memoryOf } from "./proxy-scale/proc.ts";

const args = benchArgs("agent", {
  rounds: integer(100, 1, 10_000),
  miners: integer(4, 1, 64),
  "share-ms": integer(1000, 10, 600_000, "MS"),
  starts: integer(10, 1, 1000),
  "unreachable-starts": integer(5, 0, 1000),
  "idle-s": integer(10, 1, 3600, "S"),
  "heartbeat-s": integer(2, 1, 3600, "S"),
  entry: choice(["both", "source", "built"], "both"),
  /** Below the agent's 16 MiB rotation size, so the whole fill stays in the active file. */
  "audit-fill-mib": integer(0, 0, 15),
  "cpu-prof": text("DIR"),
  "agent-node-options": text("OPTS"),
  seed: integer(1, 0, 2 ** 31 - 1),
});
const ROUNDS = args.values.rounds;
const MINERS = args.values.miners;
const SHARE_MS = args.values["share-ms"];
const STARTS = args.values.starts;
const UNREACHABLE_STARTS = args.values["unreachable-starts"];
const IDLE_S = args.values["idle-s"];
const HEARTBEAT_S = args.values["heartbeat-s"];
const SEED = args.values.seed;
const AUDIT_FILL_MIB = args.values["audit-fill-mib"];
const ENTRY = args.values.entry;
const ENTRIES: Entry[] = ENTRY === "both" ? ["source", "built"] : [ENTRY];
/** The revocation rounds run on ./bin/agentd unless only the built entry is asked for. */
const ROUND_ENTRY: Entry = ENTRIES[0] as Entry;
const CPU_PROF =
  args.values["cpu-prof"] === undefined ? undefined : resolve(args.values["cpu-prof"]);
/**
 * Node options for every `agentd run` of the bench (diagnostics: `--max-semi-space-size=16`,
 * `--heapsnapshot-signal=SIGUSR2`; use the `=` form). After bin/agentd's own flags for the
 * built entry; in NODE_OPTIONS for ./bin/agentd, where its own command-line flags win.
 */
const AGENT_NODE_OPTIONS = (args.values["agent-node-options"] ?? "")
  .split(" ")
  .filter((o) => o !== "");
const JSON_ONLY = args.jsonOnly;

const GOALS = { revoke_to_stop_p99_ms: 250, idle_rss_mib: 80, start_to_ready_ms: 500 } as const;
/** Waits for anything the agent should do at once; far above any goal. */
const STEP_TIMEOUT_MS = 30_000;
const RETRY_MS = 25;

const machine = machineInfo();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (kib: number) => round(kib / 1024, 1);

interface MsSummary {
  readonly count: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly min: number;
  readonly mean: number;
}

/** p50/p90/p99 (nearest rank), min, max and mean of millisecond samples, in ms. */
function msSummary(samples: readonly number[]): MsSummary {
  const s = summarizeNs(Float64Array.from(samples, (v) => v * 1e6));
  const ms = (us: number) => round(us / 1000, 2);
  return {
    count: s.count,
    p50: ms(s.p50_us),
    p90: ms(s.p90_us),
    p99: ms(s.p99_us),
    max: ms(s.max_us),
    min: ms(s.min_us),
    mean: ms(s.mean_us),
  };
}

function runArgs(world: World, socket: string): string[] {
  return [
    "run",
    "--state-dir",
    world.stateDir,
    ...[
      `heartbeat.interval_s=${HEARTBEAT_S}`,
      `api.socket=${socket}`,
      "stratum.listen=127.0.0.1:0",
      `stratum.initial_difficulty=${DIFFICULTY}`,
      `stratum.min_difficulty=${DIFFICULTY}`,
      "stratum.vardiff=false",
    ].flatMap((s) => ["--set", s]),
  ];
}

function buildDist(): void {
  const r = spawnSync(NODE, [join(REPO, "scripts", "build.ts")], {
    cwd: REPO,
    stdio: ["ignore", "ignore", "pipe"],
    encoding: "utf8",
  });
  if (r.status !== 0) {
    throw new Error(
      `npm run build failed (exit ${r.status ?? r.signal}); run with --entry source to skip it:\n${r.stderr.slice(-2000)}`,
    );
  }
}

// ---- revoke-to-stop -------------------------------------------------------------------------

interface RoundSample {
  readonly stopLastMs: number;
  readonly stopFirstMs: number;
  readonly acceptedMs: number;
  readonly decisionMs: number;
  readonly decisionTrigger: string;
  readonly dropAfterDecisionMs: number;
  readonly requestMs: number;
  readonly reused: boolean;
  readonly resumeMs: number;
  readonly pushMs: number;
}

async function revocationRounds(world: World, socket: string) {
  const random = rng(SEED);
  const agent = await spawnTimed(
    agentdCommand(ROUND_ENTRY, AGENT_NODE_OPTIONS),
    runArgs(world, socket),
    60_000,
  );
  const ready = JSON.parse(agent.line) as { stratum: { host: string; port: number } };
  const tail = new AuditTail(join(world.stateDir, "audit.jsonl"));
  tail.start();
  const farm = new Farm({
    miners: MINERS,
    host: ready.stratum.host,
    port: ready.stratum.port,
    shareMs: SHARE_MS,
    random,
  });
  const samples: RoundSample[] = [];
  const started = performance.now();
  try {
    await farm.connectAll(RETRY_MS, STEP_TIMEOUT_MS);
    // A plain push that stops nothing: the owner revokes an older consent.
    const pushRound = async (k: number) => {
      const body = JSON.stringify({
        document: signRevocation({
          ownerKey: world.ownerKey,
          worker: world.worker,
          throughSeq: k - 1,
          iat: Math.floor(Date.now() / 1000),
        }),
      });
      tail.skipAll();
      const sentWall = Date.now();
      const r = await world.post(`/v1/workers/${world.worker}/revocations`, body);
      if (r.status !== 200) throw new Error(`baseline revocation: ${r.status} ${r.text}`);
      const rec = await tail.next(
        (x) => x.type === "revocation.accepted" && data(x).source === "push",
        STEP_TIMEOUT_MS,
      );
      return rec.atMs - sentWall;
    };
    for (let i = 0; i < ROUNDS; i++) {
      const k = world.seq;
      await sleep(random() * 300);
      const pushFirst = i % 2 === 0;
      let pushMs = pushFirst ? await pushRound(k) : Number.NaN;
      const body = JSON.stringify({
        document: signRevocation({
          ownerKey: world.ownerKey,
          worker: world.worker,
          throughSeq: k,
          iat: Math.floor(Date.now() / 1000),
        }),
      });
      tail.skipAll();
      const mark = tail.size;
      farm.expectDrops();
      const sentWall = Date.now();
      const t0 = performance.now();
      const posted = world.post(`/v1/workers/${world.worker}/revocations`, body);
      const dropped = await farm.allDropped(STEP_TIMEOUT_MS);
      const r = await posted;
      if (r.status !== 200) throw new Error(`revocation: ${r.status} ${r.text}`);
      await tail.next(
        (x) => x.type === "state.transition" && x.raw.to === "REVOKED",
        STEP_TIMEOUT_MS,
      );
      const round_ = tail.since(mark);
      const accepted = round_.find(
        (x) => x.type === "revocation.accepted" && data(x).source === "push",
      );
      const decision = round_.find((x) => x.type === "decision.changed");
      if (accepted === undefined || decision === undefined) {
        throw new Error("the agent did not audit the revocation and the decision change");
      }
      if (!pushFirst) pushMs = await pushRound(k);
      // The control plane's stop publication is dated the second it was made (≤ the answer):
      // a consent accepted in that second would not lift it.
      const answeredWall = sentWall + (r.answeredAt - t0);
      const nextSecond = (Math.floor(answeredWall / 1000) + 1) * 1000;
      await sleep(Math.max(0, nextSecond - Date.now()) + 5);
      world.seq = k + 1;
      const consent = world.consentBody(k + 1);
      const c0 = performance.now();
      const c = await world.post("/v1/policies", consent);
      if (c.status !== 200) throw new Error(`consent seq ${k + 1}: ${c.status} ${c.text}`);
      const back = await farm.connectAll(RETRY_MS, STEP_TIMEOUT_MS);
      const dropWall = sentWall + (dropped.last - t0);
      samples.push({
        stopLastMs: dropped.last - t0,
        stopFirstMs: dropped.first - t0,
        acceptedMs: accepted.atMs - sentWall,
        decisionMs: decision.atMs - sentWall,
        decisionTrigger: String(data(decision).trigger),
        dropAfterDecisionMs: dropWall - decision.atMs,
        requestMs: r.answeredAt - t0,
        reused: r.reusedSocket,
        resumeMs: back - c0,
        pushMs,
      });
    }
  } catch (err) {
    process.stderr.write(`--- agent stderr:\n${agent.stderrTail()}\n`);
    farm.close();
    tail.stop();
    await agent.stop();
    throw err;
  }
  const seconds = (performance.now() - started) / 1000;
  // With the miners still connected: what the rounds left behind (a leak would show here).
  const afterRounds = memoryOf(agent.pid);
  const counts: FarmCounts = farm.counts();
  farm.close();
  tail.stop();
  const stopped = await agent.stop();
  const triggers: Record<string, number> = {};
  for (const s of samples) triggers[s.decisionTrigger] = (triggers[s.decisionTrigger] ?? 0) + 1;
  const pick = (f: (s: RoundSample) => number) => msSummary(samples.map(f));
  return {
    rounds: samples.length,
    seconds: round(seconds, 1),
    agent_exit: stopped.code,
    agent_memory_after_rounds: {
      rss_mib: mib(afterRounds.rss_kib),
      hwm_mib: mib(afterRounds.hwm_kib),
    },
    revoke_to_stop_ms: pick((s) => s.stopLastMs),
    revoke_to_first_drop_ms: pick((s) => s.stopFirstMs),
    revoke_to_agent_accepted_ms: pick((s) => s.acceptedMs),
    revoke_to_decision_changed_ms: pick((s) => s.decisionMs),
    decision_changed_to_last_drop_ms: pick((s) => s.dropAfterDecisionMs),
    revocation_request_ms: pick((s) => s.requestMs),
    resume_after_consent_ms: pick((s) => s.resumeMs),
    push_to_agent_accepted_ms: msSummary(
      samples.map((s) => s.pushMs).filter((v) => Number.isFinite(v)),
    ),
    decision_triggers: triggers,
    fresh_connections: samples.filter((s) => !s.reused).length,
    farm: counts,
  };
}

function data(r: AuditRecord): Record<string, unknown> {
  return (r.raw.data ?? {}) as Record<string, unknown>;
}

// ---- memory ---------------------------------------------------------------------------------

interface MemorySample {
  readonly rss_at_ready_mib: number;
  readonly rss_idle_mib: number;
  readonly hwm_mib: number;
  /** The idle RSS in two parts: anonymous (the agent's own) and file-backed (the binary). */
  readonly anon_idle_mib: number;
  readonly file_idle_mib: number;
}

const idleScript = (pre: string) => `${pre}process.stdout.write("{}\\n");setInterval(()=>{},1e6);`;

async function memory(world: World, socket: string) {
  const out: Record<string, unknown> = {};
  const trivial = await spawnTimed(
    { command: NODE, args: [...NODE_FLAGS, "-e", idleScript("")], env: baseEnv() },
    [],
  );
  const imports = new Map<Entry, Timed>();
  for (const e of ENTRIES) {
    imports.set(
      e,
      await spawnTimed(
        {
          command: NODE,
          args: [
            ...NODE_FLAGS,
            "--input-type=module",
            "-e",
            idleScript(`await import(${JSON.stringify(programModule(e))});`),
          ],
          env: baseEnv(),
        },
        [],
      ),
    );
  }
  const agents: Record<string, MemorySample & { heartbeats_sent: number; state: string }> = {};
  for (const e of ENTRIES) {
    const a = await spawnTimed(
      agentdCommand(e, AGENT_NODE_OPTIONS),
      runArgs(world, socket),
      60_000,
    );
    const atReady = memoryOf(a.pid);
    await sleep(IDLE_S * 1000);
    const status = await localApiGet(socket, "/v1/status");
    const idle = memoryOf(a.pid);
    agents[e] = {
      rss_at_ready_mib: mib(atReady.rss_kib),
      rss_idle_mib: mib(idle.rss_kib),
      hwm_mib: mib(idle.hwm_kib),
      anon_idle_mib: mib(idle.anon_kib),
      file_idle_mib: mib(idle.file_kib),
      heartbeats_sent: Number((status.heartbeats as { sent?: number } | undefined)?.sent ?? 0),
      state: String(status.state),
    };
    const s = await a.stop();
    if (s.code !== 0) throw new Error(`agentd run (${e}) exited ${s.code}: ${a.stderrTail()}`);
  }
  const t = memoryOf(trivial.pid);
  out.agent = agents;
  out.baseline_trivial_node = {
    rss_mib: mib(t.rss_kib),
    hwm_mib: mib(t.hwm_kib),
    anon_mib: mib(t.anon_kib),
    file_mib: mib(t.file_kib),
  };
  const imp: Record<string, { rss_mib: number; hwm_mib: number }> = {};
  for (const [e, p] of imports) {
    const m = memoryOf(p.pid);
    imp[e] = { rss_mib: mib(m.rss_kib), hwm_mib: mib(m.hwm_kib) };
    await p.stop();
  }
  await trivial.stop();
  out.baseline_import_only = imp;
  return out as {
    agent: Record<string, MemorySample & { heartbeats_sent: number; state: string }>;
    baseline_trivial_node: { rss_mib: number; hwm_mib: number; anon_mib: number; file_mib: number };
    baseline_import_only: Record<string, { rss_mib: number; hwm_mib: number }>;
  };
}

// ---- start-to-ready ---------------------------------------------------------------------------

async function starts(world: World, socket: string, n: number, withBaselines: boolean) {
  const prof = [
    ...AGENT_NODE_OPTIONS,
    ...(CPU_PROF === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${CPU_PROF}`]),
  ];
  // Each start audits its first decision (`decision.changed`, trigger `start`) when the
  // policy guard starts, before the agent attests: the split of start-to-ready.
  const tail = new AuditTail(join(world.stateDir, "audit.jsonl"));
  interface Series {
    readonly name: string;
    readonly run: () => Promise<{ ready: number; stop: number | null; engine: number | null }>;
    readonly ready: number[];
    readonly stop: number[];
    readonly engine: number[];
  }
  const series: Series[] = [];
  const add = (name: string, run: Series["run"]) =>
    series.push({ name, run, ready: [], stop: [], engine: [] });
  if (withBaselines) {
    add("baseline_trivial_node", async () => {
      const p = await spawnTimed(
        {
          command: NODE,
          args: [...NODE_FLAGS, "-e", 'process.stdout.write("{}\\n")'],
          env: baseEnv(),
        },
        [],
      );
      await p.stop();
      return { ready: p.ms, stop: null, engine: null };
    });
    for (const e of ENTRIES) {
      add(`baseline_version_${e}`, async () => {
        const p = await spawnTimed(agentdCommand(e), ["--version"]);
        await p.stop();
        return { ready: p.ms, stop: null, engine: null };
      });
    }
  }
  for (const e of ENTRIES) {
    add(`agent_${e}`, async () => {
      tail.skipAll();
      const p = await spawnTimed(agentdCommand(e, prof), runArgs(world, socket), 60_000);
      const s = await p.stop();
      if (s.code !== 0) throw new Error(`agentd run (${e}) exited ${s.code}: ${p.stderrTail()}`);
      const started = await tail.next(
        (x) => x.type === "decision.changed" && data(x).trigger === "start",
        5_000,
      );
      return { ready: p.ms, stop: s.ms, engine: started.atMs - p.spawnedWall };
    });
  }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < series.length; j++) {
      const s = series[(i + j) % series.length] as Series;
      const r = await s.run();
      s.ready.push(r.ready);
      if (r.stop !== null) s.stop.push(r.stop);
      if (r.engine !== null) s.engine.push(r.engine);
      await sleep(100);
    }
  }
  return Object.fromEntries(
    series.map((s) => [
      s.name,
      {
        to_first_line_ms: msSummary(s.ready),
        ...(s.engine.length === 0
          ? {}
          : {
              to_policy_guard_started_ms: msSummary(s.engine),
              policy_guard_started_to_ready_ms: msSummary(
                s.ready.map((r, i) => r - (s.engine[i] as number)),
              ),
            }),
        ...(s.stop.length === 0 ? {} : { sigterm_to_exit_ms: msSummary(s.stop) }),
      },
    ]),
  ) as Record<string, StartSeries>;
}

interface StartSeries {
  readonly to_first_line_ms: MsSummary;
  readonly to_policy_guard_started_ms?: MsSummary;
  readonly policy_guard_started_to_ready_ms?: MsSummary;
  readonly sigterm_to_exit_ms?: MsSummary;
}

/**
 * Grows the stopped agent's audit log (its active file, which `agentd run` verifies completely
 * when it opens it) to `mib` MiB with records of the size the revocation rounds write, as a
 * machine that has run for months has it (rotation starts a new file at 16 MiB).
 */
function fillAudit(stateDir: string, mib: number): number {
  const path = join(stateDir, "audit.jsonl");
  const { log } = ChainLog.open(path, { fsync: "batch" });
  try {
    let n = 0;
    while (statSync(path).size < mib * 2 ** 20) {
      log.appendBatch(
        Array.from({ length: 500 }, () => ({
          type: "bench.filler",
          actor: "bench",
          at: new Date().toISOString(),
          data: {
            trigger: "revocation:push",
            mining: { allow: false, reasons: ["consent.revoked"] },
            n: n++,
          },
        })),
      );
    }
    return n;
  } finally {
    log.close();
  }
}

// ---- run ---------------------------------------------------------------------------------------

const work = mkdtempSync(join(tmpdir(), "agentd-bench-agent-"));
const socket = join(work, "run", "agentd.sock");
mkdirSync(join(work, "run"), { recursive: true });
if (CPU_PROF !== undefined) mkdirSync(CPU_PROF, { recursive: true });
let world: World | undefined;
let report: Record<string, unknown>;
try {
  if (ENTRIES.includes("built")) buildDist();
  world = await startWorld(work);
  const revoke = await revocationRounds(world, socket);
  const mem = await memory(world, socket);
  const filled = AUDIT_FILL_MIB === 0 ? 0 : fillAudit(world.stateDir, AUDIT_FILL_MIB);
  const auditBytes = statSync(join(world.stateDir, "audit.jsonl")).size;
  const reachable = await starts(world, socket, STARTS, true);
  await world.cp.stop();
  const unreachable =
    UNREACHABLE_STARTS === 0 ? null : await starts(world, socket, UNREACHABLE_STARTS, false);

  const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a) ? round(a / b, 2) : null);
  const trivialStart = reachable.baseline_trivial_node?.to_first_line_ms.p50 ?? Number.NaN;
  const perEntry = Object.fromEntries(
    ENTRIES.map((e) => {
      const a = mem.agent[e] as MemorySample;
      const s = reachable[`agent_${e}`]?.to_first_line_ms as MsSummary;
      const v = reachable[`baseline_version_${e}`]?.to_first_line_ms as MsSummary;
      return [
        e,
        {
          idle_rss_over_trivial_node: ratio(a.rss_idle_mib, mem.baseline_trivial_node.rss_mib),
          idle_rss_over_import_only: ratio(
            a.rss_idle_mib,
            mem.baseline_import_only[e]?.rss_mib ?? Number.NaN,
          ),
          start_p50_over_trivial_node: ratio(s.p50, trivialStart),
          start_p50_over_version: ratio(s.p50, v.p50),
          start_p50_minus_version_ms: round(s.p50 - v.p50, 1),
        },
      ];
    }),
  );
  const goals: Record<string, unknown> = {
    revoke_to_stop_p99_ms: {
      goal: `< ${GOALS.revoke_to_stop_p99_ms}`,
      value: revoke.revoke_to_stop_ms.p99,
      met: revoke.rounds === ROUNDS && revoke.revoke_to_stop_ms.p99 < GOALS.revoke_to_stop_p99_ms,
    },
  };
  for (const e of ENTRIES) {
    const rss = (mem.agent[e] as MemorySample).rss_idle_mib;
    goals[`idle_rss_mib_${e}`] = {
      goal: `< ${GOALS.idle_rss_mib} (MiB; ${round((rss * 2 ** 20) / 1e6, 1)} MB)`,
      value: rss,
      met: rss < GOALS.idle_rss_mib,
    };
    const p90 = reachable[`agent_${e}`]?.to_first_line_ms.p90 as number;
    goals[`start_to_ready_p90_ms_${e}`] = {
      goal: `< ${GOALS.start_to_ready_ms}`,
      value: p90,
      met: p90 < GOALS.start_to_ready_ms,
    };
  }
  report = {
    bench: "agent",
    machine,
    config: {
      rounds: ROUNDS,
      miners: MINERS,
      share_ms: SHARE_MS,
      starts: STARTS,
      unreachable_starts: UNREACHABLE_STARTS,
      idle_s: IDLE_S,
      heartbeat_s: HEARTBEAT_S,
      entries: ENTRIES,
      round_entry: ROUND_ENTRY,
      seed: SEED,
      node: NODE,
      node_flags: NODE_FLAGS,
      stop_observed:
        "data path: the proxy ends every miner's connection (last miner's end/close event)",
      arrival:
        "the owner's POST written on a warm keep-alive TLS connection (upper bound of the time from arrival)",
      audit_log_bytes_at_starts: auditBytes,
      audit_fill_records: filled,
      cpu_prof_dir: CPU_PROF ?? null,
      agent_node_options: AGENT_NODE_OPTIONS,
      loadavg_1m_end: round(loadavg()[0] ?? 0, 2),
    },
    results: {
      revoke: {
        rounds: revoke.rounds,
        seconds: revoke.seconds,
        agent_exit: revoke.agent_exit,
        agent_memory_after_rounds: revoke.agent_memory_after_rounds,
        revoke_to_stop_ms: revoke.revoke_to_stop_ms,
        revoke_to_first_drop_ms: revoke.revoke_to_first_drop_ms,
        revoke_to_agent_accepted_ms: revoke.revoke_to_agent_accepted_ms,
        revoke_to_decision_changed_ms: revoke.revoke_to_decision_changed_ms,
        decision_changed_to_last_drop_ms: revoke.decision_changed_to_last_drop_ms,
        revocation_request_ms: revoke.revocation_request_ms,
        resume_after_consent_ms: revoke.resume_after_consent_ms,
        decision_triggers: revoke.decision_triggers,
        fresh_connections: revoke.fresh_connections,
        farm: revoke.farm,
      },
      memory: mem.agent,
      start: Object.fromEntries(ENTRIES.map((e) => [e, reachable[`agent_${e}`]])),
      start_cp_unreachable:
        unreachable === null
          ? null
          : Object.fromEntries(ENTRIES.map((e) => [e, unreachable[`agent_${e}`]])),
    },
    baseline: {
      push_to_agent_accepted_ms: revoke.push_to_agent_accepted_ms,
      memory_trivial_node: mem.baseline_trivial_node,
      memory_import_only: mem.baseline_import_only,
      start_trivial_node: reachable.baseline_trivial_node,
      start_version: Object.fromEntries(
        ENTRIES.map((e) => [e, reachable[`baseline_version_${e}`]]),
      ),
    },
    ratios: {
      revoke_to_stop_p50_over_push: ratio(
        revoke.revoke_to_stop_ms.p50,
        revoke.push_to_agent_accepted_ms.p50,
      ),
      revoke_to_stop_p99_over_push: ratio(
        revoke.revoke_to_stop_ms.p99,
        revoke.push_to_agent_accepted_ms.p99,
      ),
      ...perEntry,
    },
    goals,
  };
} catch (err) {
  process.stderr.write(`bench/agent: ${(err as Error).stack ?? String(err)}\n`);
  if (world !== undefined) {
    process.stderr.write(`--- cp stderr:\n${world.cp.stderrTail()}\n`);
  }
  await cleanup();
  process.exit(1);
}
await cleanup();

async function cleanup() {
  if (world !== undefined) {
    world.close();
    await world.cp.stop();
    await world.pool.stop();
  }
  rmSync(work, { recursive: true, force: true });
}

if (CPU_PROF !== undefined) {
  (report.config as Record<string, unknown>).cpu_profiles = readdirSync(CPU_PROF).length;
}
process.stdout.write(`${JSON.stringify(report)}\n`);
if (!JSON_ONLY) printTable(report);

function printTable(r: Record<string, unknown>): void {
  const res = r.results as {
    revoke: Record<string, unknown> & {
      agent_memory_after_rounds: { rss_mib: number; hwm_mib: number };
      farm: FarmCounts;
      decision_triggers: Record<string, number>;
    };
    memory: Record<string, MemorySample>;
    start: Record<string, StartSeries>;
    start_cp_unreachable: Record<string, StartSeries> | null;
  };
  const base = r.baseline as {
    push_to_agent_accepted_ms: MsSummary;
    memory_trivial_node: { rss_mib: number; hwm_mib: number; anon_mib: number; file_mib: number };
    memory_import_only: Record<string, { rss_mib: number; hwm_mib: number }>;
    start_trivial_node: StartSeries;
    start_version: Record<string, StartSeries>;
  };
  const rv = res.revoke;
  const row = (name: string, s: MsSummary) => [name, s.p50, s.p90, s.p99, s.max, s.mean, s.count];
  const lat = (k: string) => rv[k] as MsSummary;
  const goals = r.goals as Record<string, { goal: string; value: number; met: boolean }>;
  const startRows: (string | number)[][] = [];
  const agentRows = (label: string, s: StartSeries | undefined) => {
    if (s === undefined) return;
    startRows.push(row(`${label}: ready line`, s.to_first_line_ms));
    if (s.to_policy_guard_started_ms !== undefined)
      startRows.push(
        row("  spawn → policy guard started (audit at)", s.to_policy_guard_started_ms),
      );
    if (s.policy_guard_started_to_ready_ms !== undefined)
      startRows.push(
        row("  policy guard started → ready line", s.policy_guard_started_to_ready_ms),
      );
  };
  for (const e of ENTRIES) agentRows(`agentd run (${e})`, res.start[e]);
  for (const e of ENTRIES) agentRows(`agentd run (${e}), CP down`, res.start_cp_unreachable?.[e]);
  for (const e of ENTRIES) {
    const v = base.start_version[e];
    if (v !== undefined)
      startRows.push(row(`baseline: agentd --version (${e})`, v.to_first_line_ms));
  }
  startRows.push(row("baseline: trivial node script", base.start_trivial_node.to_first_line_ms));
  for (const e of ENTRIES) {
    const x = res.start[e]?.sigterm_to_exit_ms;
    if (x !== undefined) startRows.push(row(`agentd run (${e}): SIGTERM → exit`, x));
  }
  process.stdout.write(
    `\nmachine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, load ${machine.loadavg_1m} at start, ${String((r.config as { loadavg_1m_end: number }).loadavg_1m_end)} at end\n` +
      `agentd run (${ROUND_ENTRY}) | agentd cp serve (SQLite) | agentd sim pool | this process: owner + ${MINERS} miners (a share every ~${SHARE_MS} ms each); ${rv.rounds} rounds in ${rv.seconds} s\n\n` +
      table(
        ["revoke-to-stop, ms", "p50", "p90", "p99", "max", "mean", "n"],
        [
          row("POST revocation → last miner dropped (data path)", lat("revoke_to_stop_ms")),
          row("POST revocation → first miner dropped", lat("revoke_to_first_drop_ms")),
          row("POST revocation → agent accepted (audit at)", lat("revoke_to_agent_accepted_ms")),
          row(
            "POST revocation → decision changed (audit at)",
            lat("revoke_to_decision_changed_ms"),
          ),
          row("decision changed → last miner dropped", lat("decision_changed_to_last_drop_ms")),
          row("POST revocation answered", lat("revocation_request_ms")),
          row("baseline: older-seq revocation → agent accepted", base.push_to_agent_accepted_ms),
          row("new consent POST → every miner has work again", lat("resume_after_consent_ms")),
        ],
      ) +
      `decision triggers: ${JSON.stringify(rv.decision_triggers)}; shares: ${rv.farm.shares_accepted} accepted, ${rv.farm.shares_denied} denied, ${rv.farm.shares_rejected_other} rejected otherwise; unexpected drops ${rv.farm.unexpected_drops}; fresh TLS connections ${String(rv.fresh_connections)}\n` +
      `agentd run (${ROUND_ENTRY}) after the rounds, miners connected: VmRSS ${rv.agent_memory_after_rounds.rss_mib} MiB, VmHWM ${rv.agent_memory_after_rounds.hwm_mib} MiB\n\n` +
      table(
        ["memory, MiB", "VmRSS at ready", "VmRSS idle", "VmHWM", "idle anon", "idle file"],
        [
          ...ENTRIES.map((e) => {
            const m = res.memory[e] as MemorySample;
            return [
              `agentd run (${e}), ${IDLE_S} s idle`,
              m.rss_at_ready_mib,
              m.rss_idle_mib,
              m.hwm_mib,
              m.anon_idle_mib,
              m.file_idle_mib,
            ];
          }),
          ...ENTRIES.map((e) => {
            const m = base.memory_import_only[e] as { rss_mib: number; hwm_mib: number };
            return [
              `baseline: CLI modules imported only (${e})`,
              null,
              m.rss_mib,
              m.hwm_mib,
              null,
              null,
            ];
          }),
          [
            "baseline: trivial node (setInterval)",
            null,
            base.memory_trivial_node.rss_mib,
            base.memory_trivial_node.hwm_mib,
            base.memory_trivial_node.anon_mib,
            base.memory_trivial_node.file_mib,
          ],
        ],
      ) +
      "\n" +
      `starts on an enrolled machine, consent in force, no miners; audit log ${round((r.config as { audit_log_bytes_at_starts: number }).audit_log_bytes_at_starts / 2 ** 20, 2)} MiB (verified whole at every start)\n` +
      table(["spawn → first stdout line, ms", "p50", "p90", "p99", "max", "mean", "n"], startRows) +
      "\n" +
      Object.entries(goals)
        .map(([k, g]) => `goal ${k} ${g.goal}: ${g.met ? "met" : "NOT met"} (${g.value})`)
        .join("\n") +
      "\n",
  );
}
