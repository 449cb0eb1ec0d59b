/**
 * The supervisor on the Docker driver (issue 7): the time from a container's death to its
 * first restart by agentd (goal p99 < 2 s), the supervisor's CPU with the services idle, and
 * its memory. Prints one line of JSON, then a table (omitted with --json-only).
 *
 *   node bench/supervisor.ts [--kills N] [--cln-kills N] [--idle-s S] [--no-probe-idle-s S]
 *                            [--lightning both|lnd|cln] [--seed N] [--json-only]
 *
 * The Docker Engine API is that of a private Podman service (test/support/podman.ts
 * `startPodman`, its own storage: nothing of the host's is touched); the services are the
 * simulators of sim/services in the locally imported node image (`buildNodeImage`), described
 * as a services file over the built-in specs (bench/supervisor/stack.ts). One Lightning node
 * runs at a time, so a stack is four services: bitcoind, the template provider, the translator
 * and lnd — or, in a second configuration, cln instead of lnd. The supervisor is
 * `startSupervisor` with `dockerDriver`, its default intervals (a resync every 10 s, health
 * probes every 5 s, the API's event stream), in a process of its own
 * (bench/supervisor/runner.ts) so that its CPU and memory are its own; it tells this process
 * its events over IPC, timed on the same clock.
 *
 * Configurations, in this order, each a runner of its own (the previous one closed; its
 * containers adopted when the specs are the same, replaced when they changed):
 *   1. lnd stack, restart min_ms 1000 (the default): brought up from nothing; an idle window
 *      (--idle-s); then --kills deaths.
 *   2. the same specs, health probing off (health every hour): adopts the running containers;
 *      an idle window (--no-probe-idle-s; 0 skips it) — what the probes cost.
 *   3. lnd stack, min_ms 100 (a new spec hash: every container replaced); --kills deaths.
 *   4. cln instead of lnd, min_ms 1000 (the consent's services changed: lnd removed, cln
 *      created); an idle window (--idle-s); --cln-kills deaths.
 * (--lightning lnd: 1–3 only; cln: 1–3 with cln.)
 *
 * A death: with the whole stack running and healthy (Podman says so, the supervisor holds
 * nothing and sees bitcoind, which the others wait for, healthy, and this process's probes
 * answer), a kind drawn at random (seeded) among the running ones, after
 * a random pause of 0–0.5 s, its container's main process is sent SIGKILL from the host (its
 * pid from `inspect`; the clock starts just before kill(2)). Measured from that instant: (a)
 * the supervisor seeing the exit (its `service.exited` event); (b) the container running again
 * as Podman says (`inspect` polled every 20 ms: running, with a new pid); (c) the service
 * answering its health probe again (supervisor/health.ts `probe`, the supervisor's own probe,
 * polled every 20 ms from (b)). Also the backoff the supervisor scheduled and when its start
 * call returned. Then, once the stack is running and healthy again, the kind's failure
 * history is cleared with an operator's start (`Reconciler.startService`), as a minute of
 * running would (supervisor/reconciler.ts): each death is a first failure, restarted after
 * exactly min_ms. Without that the backoff doubles per consecutive failure (full jitter up to
 * 1, 2, 4 … 60 s) and the fifth in 10 minutes is a crash loop, which is not what the goal is
 * about.
 *
 * Baseline, same run, interleaved death by death (the order alternating), same kind: the
 * Podman's own floor — a container of the same image, command, binds, ports and probe (the
 * create options of supervisor/docker-driver.ts, without agentd's labels), stopped
 * after a SIGKILL, started with `docker start` (the clock starts just before the request),
 * until `inspect` says running and until the same probe answers, polled the same way; then
 * killed again. `ratios` say what the supervisor adds to Podman's floor.
 *
 * Idle: with the stack running and healthy and nothing happening, the runner's
 * process.cpuUsage() over the window (CPU seconds per minute, % of one core), with the driver
 * calls it made and the events it received; the Podman service's own CPU (/proc) in the same
 * window. Baselines in the same windows: a trivial Node process (one no-op setInterval) and
 * the runner's modules imported only, same binary and flags. Memory: VmRSS, RssAnon, RssFile
 * and VmHWM from /proc at the end of the first idle window (and after the deaths, and with
 * cln), the two baselines read at the same moment.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type Docker from "dockerode";
import { systemTimers } from "../lib/timers.ts";
import { containerOptions } from "../supervisor/docker-driver.ts";
import { type DockerCall, retryTransient } from "../supervisor/docker-transient.ts";
import { probe } from "../supervisor/health.ts";
import type { SupervisorEvent } from "../supervisor/reconciler.ts";
import {
  type HealthProbe,
  LABELS,
  type ServiceKind,
  type ServiceSpec,
} from "../supervisor/spec.ts";
import { parseServices } from "../supervisor/specs-file.ts";
import { translatorUpstream, writeTranslatorConfig } from "../supervisor/translator-config.ts";
import {
  buildNodeImage,
  dockerClient,
  lastImageBuild,
  type PodmanService,
  podmanCli,
  startPodman,
} from "../test/support/podman.ts";
import { NODE, NODE_FLAGS } from "./agent/spawn.ts";
import { benchArgs, choice, integer } from "./args.ts";
import { machineInfo, rng, round, summarizeNs, table } from "./machine.ts";
import { cpuSecondsOf, type Memory, memoryOf } from "./proxy-scale/proc.ts";
import { IDLE_SCRIPT, type IpcChild, startIpcChild } from "./supervisor/child.ts";
import type { RunnerConfig, RunnerCounts } from "./supervisor/runner.ts";
import {
  freePorts,
  type Lightning,
  makeDataDirs,
  type Ports,
  servicesFile,
  stackKinds,
  UPSTREAMS,
} from "./supervisor/stack.ts";

const args = benchArgs("supervisor", {
  kills: integer(30, 1, 10_000),
  "cln-kills": integer(10, 0, 10_000),
  "idle-s": integer(30, 1, 3600, "S"),
  "no-probe-idle-s": integer(20, 0, 3600, "S"),
  lightning: choice(["both", "lnd", "cln"], "both"),
  seed: integer(1, 0, 2 ** 31 - 1),
});
const KILLS = args.values.kills;
const CLN_KILLS = args.values["cln-kills"];
const IDLE_S = args.values["idle-s"];
const NO_PROBE_IDLE_S = args.values["no-probe-idle-s"];
const SEED = args.values.seed;
const LIGHTNING = args.values.lightning;
const PRIMARY: Lightning = LIGHTNING === "cln" ? "cln" : "lnd";
const WITH_CLN = LIGHTNING === "both";
const JSON_ONLY = args.jsonOnly;

const GOAL_RESTART_P99_MS = 2000;
const DEFAULT_MIN_MS = 1000;
const FAST_MIN_MS = 100;
/** The supervisor's defaults (supervisor/reconciler.ts), stated in the report. */
const RESYNC_MS = 10_000;
const HEALTH_MS = 5_000;
/** Health probing "off": one round at start at most, then none for an hour. */
const NO_PROBE_HEALTH_MS = 3_600_000;
const POLL_MS = 20;
const PRE_KILL_MAX_MS = 500;
const STEP_TIMEOUT_MS = 30_000;
const BRING_UP_TIMEOUT_MS = 120_000;
const RUNNER = join(import.meta.dirname, "supervisor", "runner.ts");

const machine = machineInfo();
const random = rng(SEED);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Wall-clock ms at sub-ms resolution, as the runner reads it: the two processes' times compare. */
const now = () => performance.timeOrigin + performance.now();
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
  const ms = (us: number) => round(us / 1000, 1);
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

// ---- the supervisor's process ---------------------------------------------------------------

interface Seen {
  readonly at: number;
  readonly event: SupervisorEvent;
}

interface Runner {
  readonly child: IpcChild;
  readonly events: Seen[];
  /** The first event from index `from` on that matches, waiting for it. */
  waitEvent(pred: (e: SupervisorEvent) => boolean, from: number, timeoutMs: number): Promise<Seen>;
}

async function startRunner(label: string, cfg: RunnerConfig): Promise<Runner> {
  const child = await startIpcChild(label, [RUNNER, JSON.stringify(cfg)]);
  const events: Seen[] = [];
  let wake: (() => void)[] = [];
  child.onMessage((m) => {
    if (m.type !== "event") return;
    events.push({ at: m.at as number, event: m.event as SupervisorEvent });
    const w = wake;
    wake = [];
    for (const f of w) f();
  });
  return {
    child,
    events,
    async waitEvent(pred, from, timeoutMs) {
      const deadline = now() + timeoutMs;
      for (;;) {
        const found = events.slice(from).find((x) => pred(x.event));
        if (found !== undefined) return found;
        const left = deadline - now();
        if (left <= 0) {
          throw new Error(
            `${label}: no matching supervisor event within ${timeoutMs} ms; seen: ${JSON.stringify(events.slice(from).map((x) => x.event))}`,
          );
        }
        await new Promise<void>((r) => {
          const t = setTimeout(r, left);
          wake.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
    },
  };
}

// ---- the world --------------------------------------------------------------------------------

const work = mkdtempSync(join(tmpdir(), "agentd-bench-sup-"));
const dataDir = join(work, "data");
const floorDir = join(work, "floor");
const worker = `bench-${process.pid}`;
let podman: PodmanService | null = null;
let docker: Docker;
let image = "";
let probes: Record<ServiceKind, HealthProbe>;
let dependsOn: Record<ServiceKind, readonly ServiceKind[]>;
let podmanPid: number | null = null;
let ports: Ports;
const children: IpcChild[] = [];
process.once("exit", () => podman?.stopSync());
process.once("SIGINT", () => process.exit(130));

/** The pid of our Podman service (its command line names our socket), for its CPU time. */
function findPodmanPid(socketPath: string): number | null {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (cmd.includes("service") && cmd.includes(`unix://${socketPath}`)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return null;
}

function runnerConfig(lightning: Lightning, minMs: number, healthMs?: number): RunnerConfig {
  return {
    socket: (podman as PodmanService).socketPath,
    worker,
    dataDir,
    services: servicesFile(dataDir, ports, minMs),
    kinds: stackKinds(lightning),
    image,
    upstreams: UPSTREAMS,
    ...(healthMs === undefined ? {} : { healthMs }),
  };
}

/**
 * A call to Podman, tried again on its transient answers while a container dies (the 500
 * `read /proc/PID/cgroup: no such process` of an inspect racing a SIGKILL, …), as the
 * supervisor's Docker driver does: bounded, the same classification.
 */
const api = <T>(call: DockerCall, f: () => Promise<T>): Promise<T> =>
  retryTransient(call, f, { timers: systemTimers });

/** The container state as `inspect` says; null when there is no such container. */
async function stateOf(id: string): Promise<{ running: boolean; pid: number } | null> {
  try {
    const s = (await api("inspect", () => docker.getContainer(id).inspect())).State;
    return { running: s.Running, pid: s.Pid };
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return null;
    throw err;
  }
}

/** Polls `f` every POLL_MS until it gives a value; the time is when that answer arrived. */
async function pollUntil<T>(
  f: () => Promise<T | null>,
  what: string,
  timeoutMs = STEP_TIMEOUT_MS,
): Promise<{ at: number; value: T }> {
  const deadline = now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== null) return { at: now(), value: v };
    if (now() > deadline) throw new Error(`timed out (${timeoutMs} ms) waiting for ${what}`);
    await sleep(POLL_MS);
  }
}

async function healthy(kind: ServiceKind): Promise<boolean> {
  return (await probe(probes[kind], systemTimers)).healthy;
}

/** Our supervised containers (this worker's label), all states. */
function mine(): Promise<Docker.ContainerInfo[]> {
  return api("list", () =>
    docker.listContainers({
      all: true,
      filters: { label: [`${LABELS.worker}=${worker}`] },
    }),
  );
}

/**
 * Waits until exactly `kinds` run, one container each, the supervisor holds none of them and
 * says each of `supervisorHealth` is running and healthy, and this process's probes answer —
 * for two checks in a row, 250 ms apart. Returns the ms it took.
 */
async function waitStable(
  r: Runner,
  kinds: readonly ServiceKind[],
  supervisorHealth: readonly ServiceKind[] | null,
  timeoutMs: number,
): Promise<number> {
  const t0 = now();
  let okSince: number | null = null;
  let last = "";
  for (;;) {
    let ok = true;
    const list = await mine();
    for (const k of kinds) {
      const of = list.filter((c) => c.Labels[LABELS.kind] === k);
      if (of.length !== 1 || of[0]?.State !== "running") {
        ok = false;
        last = `${k}: ${of.map((c) => c.State).join(",") || "none"}`;
      }
    }
    if (list.some((c) => !kinds.includes(c.Labels[LABELS.kind] as ServiceKind))) {
      ok = false;
      last = "a kind not allowed still there";
    }
    if (ok && supervisorHealth !== null) {
      const { status } = await r.child.request<{
        status: { services: { kind: ServiceKind; state: string; hold: string | null }[] };
      }>("status");
      for (const k of kinds) {
        const s = status.services.find((x) => x.kind === k);
        const unhealthy = supervisorHealth.includes(k) && s?.state !== "running";
        if (s === undefined || s.hold !== null || unhealthy) {
          ok = false;
          last = `supervisor: ${JSON.stringify(s)}`;
        }
      }
    }
    if (ok) {
      for (const k of kinds) {
        if (!(await healthy(k))) {
          ok = false;
          last = `${k}: probe failed`;
        }
      }
    }
    if (ok) {
      if (okSince === null) okSince = now();
      else if (now() - okSince >= 250) return now() - t0;
    } else okSince = null;
    if (now() - t0 > timeoutMs) {
      throw new Error(`the stack was not running and healthy within ${timeoutMs} ms (${last})`);
    }
    await sleep(100);
  }
}

/** SIGKILL to the container's main process from the host; the API's kill where refused. */
const killMethods: Record<string, number> = {};
async function kill(id: string, pid: number): Promise<void> {
  try {
    process.kill(pid, "SIGKILL");
    killMethods["kill(2) on the container's pid"] =
      (killMethods["kill(2) on the container's pid"] ?? 0) + 1;
  } catch {
    await api("kill", () => docker.getContainer(id).kill({ signal: "SIGKILL" }));
    killMethods["docker kill"] = (killMethods["docker kill"] ?? 0) + 1;
  }
}

// ---- Podman's floor -----------------------------------------------------------------------------

interface Floor {
  readonly id: string;
  pid: number;
  readonly probe: HealthProbe;
}
const floors = new Map<ServiceKind, Floor>();

/**
 * A container per kind like the supervised one (its own data directory and ports), started
 * once and killed (untimed), so that every timed start is of a container stopped by a SIGKILL.
 */
async function createFloors(kinds: readonly ServiceKind[]): Promise<void> {
  makeDataDirs(floorDir);
  const u = translatorUpstream(UPSTREAMS);
  if (u === null) throw new Error("no translator upstream");
  writeTranslatorConfig(join(floorDir, "translator", "config", "translator.toml"), u);
  const [b, tp, tr, l] = await freePorts(4);
  const fp: Ports = {
    bitcoind: b as number,
    "template-provider": tp as number,
    translator: tr as number,
    lnd: l as number,
  };
  const specs = parseServices(servicesFile(floorDir, fp, DEFAULT_MIN_MS), floorDir);
  for (const kind of kinds) {
    const spec = specs[kind];
    const f: Floor = { id: await createLike(kind, spec), pid: 0, probe: spec.health };
    floors.set(kind, f);
    await floorSample(kind);
  }
}

/**
 * A container from `spec` with the options supervisor/docker-driver.ts `create` gives one
 * (command, environment, binds, published ports, restart policy "no", read-only root, memory,
 * CPUs, user, stop timeout) — but none of agentd's labels: Podman 4.3's event stream ORs label
 * filters (a container with `dev.agentd.managed=true` and another worker's label reaches the
 * supervisor's stream, and its death counts as a failure of that kind), so the floor's
 * containers carry a label of their own only.
 */
async function createLike(kind: ServiceKind, spec: ServiceSpec): Promise<string> {
  const c = await docker.createContainer({
    name: `bench-floor-${kind}-${worker}`,
    ...containerOptions(spec, image, {
      env: spec.env,
      labels: { "dev.agentd.bench": "podman-floor" },
    }),
  });
  return c.id;
}

interface FloorSample {
  readonly kind: ServiceKind;
  readonly start_call_ms: number;
  readonly running_ms: number;
  readonly healthy_ms: number;
}

async function floorSample(kind: ServiceKind): Promise<FloorSample> {
  const f = floors.get(kind) as Floor;
  const before = f.pid;
  const t0 = now();
  const call = api("start", () => docker.getContainer(f.id).start()).then(() => now());
  const running = await pollUntil(async () => {
    const s = await stateOf(f.id);
    return s?.running === true && s.pid !== before ? s : null;
  }, `the floor's ${kind} running`);
  const ok = await pollUntil(
    async () => ((await probe(f.probe, systemTimers)).healthy ? true : null),
    `the floor's ${kind} healthy`,
  );
  const returned = await call;
  f.pid = running.value.pid;
  await kill(f.id, f.pid);
  await pollUntil(async () => {
    const s = await stateOf(f.id);
    return s?.running === true ? null : true;
  }, `the floor's ${kind} stopped`);
  return {
    kind,
    start_call_ms: returned - t0,
    running_ms: running.at - t0,
    healthy_ms: ok.at - t0,
  };
}

// ---- deaths ---------------------------------------------------------------------------------

interface KillSample {
  readonly kind: ServiceKind;
  /** (a) kill → the supervisor's `service.exited`. */
  readonly exit_seen_ms: number;
  /** kill → `inspect` says not running (Podman's own view of the death). */
  readonly podman_exited_ms: number;
  /** The backoff the supervisor scheduled (`service.restart_scheduled`), null if none. */
  readonly backoff_ms: number | null;
  /** Consecutive failures it counted (1: a first failure, restarted after min_ms). */
  readonly failures: number | null;
  /** kill → the supervisor's start call answered (`service.started`). */
  readonly start_returned_ms: number;
  /** (b) kill → `inspect` says running, with a new pid. */
  readonly running_ms: number;
  /** (c) kill → the health probe answers. */
  readonly healthy_ms: number;
  readonly exit_code: number | null;
  /** Other kinds the supervisor stopped meanwhile (dependents of a dead bitcoind). */
  readonly dependents_stopped: number;
  /** kill → the whole stack running and healthy again (the supervisor's view included). */
  readonly stack_back_ms: number;
}

async function killSample(
  r: Runner,
  kinds: readonly ServiceKind[],
  kind: ServiceKind,
): Promise<KillSample> {
  const c = (await mine()).find((x) => x.Labels[LABELS.kind] === kind && x.State === "running");
  if (c === undefined) throw new Error(`no running ${kind}`);
  const before = await stateOf(c.Id);
  if (before === null || !before.running) throw new Error(`${kind} not running`);
  await sleep(random() * PRE_KILL_MAX_MS);
  const mark = r.events.length;
  const t0 = now();
  await kill(c.Id, before.pid);
  const exited = r.waitEvent(
    (e) => e.type === "service.exited" && e.kind === kind,
    mark,
    STEP_TIMEOUT_MS,
  );
  exited.catch(() => {});
  const current = async () => {
    const s = await stateOf(c.Id);
    if (s !== null) return s;
    // replaced rather than restarted: follow the kind's running container
    const n = (await mine()).find((x) => x.Labels[LABELS.kind] === kind && x.State === "running");
    return n === undefined ? { running: false, pid: 0 } : await stateOf(n.Id);
  };
  const gone = await pollUntil(async () => {
    const s = await current();
    return s === null || !s.running || s.pid !== before.pid ? true : null;
  }, `${kind} dead`);
  const running = await pollUntil(async () => {
    const s = await current();
    return s?.running === true && s.pid !== before.pid ? true : null;
  }, `${kind} running again`);
  const ok = await pollUntil(async () => ((await healthy(kind)) ? true : null), `${kind} healthy`);
  const exit = await exited;
  const started = await r.waitEvent(
    (e) => e.type === "service.started" && e.kind === kind,
    mark,
    STEP_TIMEOUT_MS,
  );
  // the supervisor's own view matters for the kinds others wait for (bitcoind): a probe that
  // saw it dead holds its dependents until one sees it healthy again
  await waitStable(
    r,
    kinds,
    kinds.filter((k) => kinds.some((o) => dependsOn[o].includes(k))),
    60_000,
  );
  const back = now();
  const since = r.events.slice(mark).map((x) => x.event);
  const scheduled = since.find((e) => e.type === "service.restart_scheduled" && e.kind === kind);
  await r.child.request("reset", { kind });
  return {
    kind,
    exit_seen_ms: exit.at - t0,
    podman_exited_ms: gone.at - t0,
    backoff_ms: scheduled?.type === "service.restart_scheduled" ? scheduled.inMs : null,
    failures: scheduled?.type === "service.restart_scheduled" ? scheduled.failures : null,
    start_returned_ms: started.at - t0,
    running_ms: running.at - t0,
    healthy_ms: ok.at - t0,
    exit_code: exit.event.type === "service.exited" ? exit.event.exitCode : null,
    dependents_stopped: since.filter((e) => e.type === "service.stopped" && e.kind !== kind).length,
    stack_back_ms: back - t0,
  };
}

/** `n` deaths, each with a floor sample of the same kind, the order alternating. */
async function deaths(r: Runner, kinds: readonly ServiceKind[], n: number) {
  const samples: KillSample[] = [];
  const floor: FloorSample[] = [];
  for (let i = 0; i < n; i++) {
    // every kind of the stack is running here (waitStable): draw among them
    const kind = kinds[Math.floor(random() * kinds.length)] as ServiceKind;
    if (i % 2 === 0) floor.push(await floorSample(kind));
    samples.push(await killSample(r, kinds, kind));
    if (i % 2 === 1) floor.push(await floorSample(kind));
  }
  return { samples, floor };
}

function countBy<T>(xs: readonly T[], key: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[key(x)] = (out[key(x)] ?? 0) + 1;
  return out;
}

/** A sample as it goes into the JSON: times rounded to 0.1 ms. */
function rounded<T extends object>(x: T): T {
  return Object.fromEntries(
    Object.entries(x).map(([k, v]) => [k, typeof v === "number" ? round(v, 1) : v]),
  ) as T;
}

function deathSummary(minMs: number, samples: readonly KillSample[], seconds: number) {
  const pick = (f: (s: KillSample) => number) => msSummary(samples.map(f));
  const withBackoff = samples.filter((s) => s.backoff_ms !== null);
  const kinds = [...new Set(samples.map((s) => s.kind))];
  return {
    restart_min_ms: minMs,
    deaths: samples.length,
    seconds: round(seconds, 1),
    kinds: countBy(samples, (s) => s.kind),
    exit_codes: countBy(samples, (s) => String(s.exit_code)),
    consecutive_failures: countBy(samples, (s) => String(s.failures)),
    exit_seen_ms: pick((s) => s.exit_seen_ms),
    podman_exited_ms: pick((s) => s.podman_exited_ms),
    backoff_scheduled_ms: msSummary(withBackoff.map((s) => s.backoff_ms as number)),
    start_returned_ms: pick((s) => s.start_returned_ms),
    running_ms: pick((s) => s.running_ms),
    healthy_ms: pick((s) => s.healthy_ms),
    // what is left of (b) once the backoff the supervisor chose is taken out
    running_minus_backoff_ms: msSummary(
      withBackoff.map((s) => s.running_ms - (s.backoff_ms as number)),
    ),
    // from the end of the backoff (counted from the exit seen) to the start call answered
    backoff_end_to_start_returned_ms: msSummary(
      withBackoff.map((s) => s.start_returned_ms - s.exit_seen_ms - (s.backoff_ms as number)),
    ),
    restarted_before_exit_seen: samples.filter((s) => s.running_ms < s.exit_seen_ms).length,
    dependents_stopped: samples.reduce((a, s) => a + s.dependents_stopped, 0),
    stack_back_ms: pick((s) => s.stack_back_ms),
    /** Every death, in order. */
    samples: samples.map(rounded),
    by_kind: Object.fromEntries(
      kinds.map((k) => {
        const of = samples.filter((s) => s.kind === k);
        return [
          k,
          {
            deaths: of.length,
            running_ms: msSummary(of.map((s) => s.running_ms)),
            healthy_ms: msSummary(of.map((s) => s.healthy_ms)),
          },
        ];
      }),
    ),
  };
}

function floorSummary(samples: readonly FloorSample[]) {
  const kinds = [...new Set(samples.map((s) => s.kind))];
  return {
    starts: samples.length,
    start_call_ms: msSummary(samples.map((s) => s.start_call_ms)),
    running_ms: msSummary(samples.map((s) => s.running_ms)),
    healthy_ms: msSummary(samples.map((s) => s.healthy_ms)),
    samples: samples.map(rounded),
    by_kind: Object.fromEntries(
      kinds.map((k) => {
        const of = samples.filter((s) => s.kind === k);
        return [
          k,
          {
            starts: of.length,
            running_ms: msSummary(of.map((s) => s.running_ms)),
            healthy_ms: msSummary(of.map((s) => s.healthy_ms)),
          },
        ];
      }),
    ),
  };
}

// ---- idle -----------------------------------------------------------------------------------

interface CpuUsage {
  readonly user: number;
  readonly system: number;
}

interface CpuWindow {
  readonly window_s: number;
  readonly cpu_s: number;
  readonly user_s: number;
  readonly system_s: number;
  readonly cpu_s_per_min: number;
  readonly pct_of_one_core: number;
}

function cpuWindow(a: CpuUsage, b: CpuUsage, seconds: number): CpuWindow {
  const user = (b.user - a.user) / 1e6;
  const system = (b.system - a.system) / 1e6;
  const cpu = user + system;
  return {
    window_s: round(seconds, 2),
    cpu_s: round(cpu, 4),
    user_s: round(user, 4),
    system_s: round(system, 4),
    cpu_s_per_min: round((cpu / seconds) * 60, 4),
    pct_of_one_core: round((cpu / seconds) * 100, 3),
  };
}

interface MemorySample {
  readonly rss_mib: number;
  readonly anon_mib: number;
  readonly file_mib: number;
  readonly hwm_mib: number;
}

function memorySample(m: Memory): MemorySample {
  return {
    rss_mib: mib(m.rss_kib),
    anon_mib: mib(m.anon_kib),
    file_mib: mib(m.file_kib),
    hwm_mib: mib(m.hwm_kib),
  };
}

function diffCounts(a: RunnerCounts, b: RunnerCounts) {
  const calls: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.calls)) {
    const d = v - (a.calls[k] ?? 0);
    if (d !== 0) calls[k] = d;
  }
  return { driver_calls: calls, driver_events: b.driver_events - a.driver_events };
}

/**
 * An idle window: the runner's and the baselines' process.cpuUsage() at its start and end,
 * the Podman service's CPU from /proc, the runner's driver calls and events; memory at the end.
 */
async function idleWindow(r: Runner, seconds: number, baselines: readonly IpcChild[]) {
  await sleep(1000); // let the last status requests and probes of the wait settle
  const cpu = (c: IpcChild) => c.request<{ cpu: CpuUsage }>("cpu").then((x) => x.cpu);
  const counts0 = (await r.child.request<{ counts: RunnerCounts }>("counts")).counts;
  const mark = r.events.length;
  const podman0 = podmanPid === null ? Number.NaN : cpuSecondsOf(podmanPid);
  const t0 = now();
  const [c0, ...b0] = await Promise.all([cpu(r.child), ...baselines.map(cpu)]);
  await sleep(seconds * 1000);
  const [c1, ...b1] = await Promise.all([cpu(r.child), ...baselines.map(cpu)]);
  const t1 = now();
  const podman1 = podmanPid === null ? Number.NaN : cpuSecondsOf(podmanPid);
  const memory = memorySample(memoryOf(r.child.pid));
  const baseMemory = baselines.map((b) => memorySample(memoryOf(b.pid)));
  const counts1 = (await r.child.request<{ counts: RunnerCounts }>("counts")).counts;
  const w = (t1 - t0) / 1000;
  const events = r.events.slice(mark).map((x) => x.event.type);
  return {
    supervisor: {
      ...cpuWindow(c0 as CpuUsage, c1 as CpuUsage, w),
      ...diffCounts(counts0, counts1),
      supervisor_events: countBy(events, (e) => e),
    },
    podman_service: {
      cpu_s: round(podman1 - podman0, 2),
      cpu_s_per_min: round(((podman1 - podman0) / w) * 60, 3),
      pct_of_one_core: round(((podman1 - podman0) / w) * 100, 2),
    },
    baselines: baselines.map((_, i) => cpuWindow(b0[i] as CpuUsage, b1[i] as CpuUsage, w)),
    memory,
    baselineMemory: baseMemory,
  };
}

// ---- run ---------------------------------------------------------------------------------------

let report: Record<string, unknown>;
let current: Runner | null = null;
try {
  const setup0 = now();
  podman = await startPodman();
  docker = dockerClient(podman);
  image = await buildNodeImage(podman);
  podmanPid = findPodmanPid(podman.socketPath);
  const podmanVersion = (await podmanCli(podman, ["--version"])).trim();
  makeDataDirs(dataDir);
  const [pb, ptp, ptr, pl] = await freePorts(4);
  ports = {
    bitcoind: pb as number,
    "template-provider": ptp as number,
    translator: ptr as number,
    lnd: pl as number,
  };
  const specs = Object.entries(
    parseServices(servicesFile(dataDir, ports, DEFAULT_MIN_MS), dataDir),
  );
  probes = Object.fromEntries(specs.map(([k, s]) => [k, s.health])) as typeof probes;
  dependsOn = Object.fromEntries(specs.map(([k, s]) => [k, s.dependsOn])) as typeof dependsOn;
  const allKinds = [...new Set([...stackKinds(PRIMARY), ...(WITH_CLN ? stackKinds("cln") : [])])];
  await createFloors(allKinds);
  const setupS = (now() - setup0) / 1000;

  // the idle baselines live through the whole run, read in every idle window
  const trivial = await startIpcChild("trivial node", ["-e", IDLE_SCRIPT]);
  children.push(trivial);
  const importOnly = await startIpcChild("import only", [
    RUNNER,
    JSON.stringify({ ...runnerConfig(PRIMARY, DEFAULT_MIN_MS), importOnly: true }),
  ]);
  children.push(importOnly);
  const baselines = [trivial, importOnly];

  const kindsP = stackKinds(PRIMARY);
  const labelA = `${PRIMARY}_min${DEFAULT_MIN_MS}`;
  const labelC = `${PRIMARY}_min${FAST_MIN_MS}`;
  const bringUp: Record<string, { seconds: number; events: Record<string, number> }> = {};
  /**
   * A runner for `cfg`, once its stack runs and is healthy (the supervisor's view too, unless
   * its probing is off); the failure history of every kind then cleared (an operator's start),
   * so that the first death is a first failure whatever happened while replacing containers.
   */
  const bring = async (label: string, cfg: RunnerConfig, probing = true): Promise<Runner> => {
    const t0 = now();
    const r = await startRunner(label, cfg);
    current = r;
    await waitStable(r, cfg.kinds, probing ? cfg.kinds : null, BRING_UP_TIMEOUT_MS);
    bringUp[label] = {
      seconds: round((now() - t0) / 1000, 1),
      events: countBy(r.events, (e) => e.event.type),
    };
    if (probing) for (const k of cfg.kinds) await r.child.request("reset", { kind: k });
    return r;
  };

  // 1. the primary stack from nothing, default restart: idle, then deaths
  current = await bring(labelA, runnerConfig(PRIMARY, DEFAULT_MIN_MS));
  const idleA = await idleWindow(current, IDLE_S, baselines);
  let t = now();
  const dA = await deaths(current, kindsP, KILLS);
  const deathsA = deathSummary(DEFAULT_MIN_MS, dA.samples, (now() - t) / 1000);
  const afterDeaths = memorySample(memoryOf(current.child.pid));
  await current.child.stop();

  // 2. the same specs with health probing off: the containers adopted, an idle window
  let idleB: Awaited<ReturnType<typeof idleWindow>> | null = null;
  if (NO_PROBE_IDLE_S > 0) {
    current = await bring(
      `${PRIMARY}_no_probe`,
      runnerConfig(PRIMARY, DEFAULT_MIN_MS, NO_PROBE_HEALTH_MS),
      false,
    );
    idleB = await idleWindow(current, NO_PROBE_IDLE_S, baselines);
    await current.child.stop();
  }

  // 3. restart min 100 ms: a new spec hash, every container replaced; deaths
  current = await bring(labelC, runnerConfig(PRIMARY, FAST_MIN_MS));
  t = now();
  const dC = await deaths(current, kindsP, KILLS);
  const deathsC = deathSummary(FAST_MIN_MS, dC.samples, (now() - t) / 1000);
  await current.child.stop();

  // 4. cln instead of lnd: idle, deaths
  const labelD = `cln_min${DEFAULT_MIN_MS}`;
  let idleD: Awaited<ReturnType<typeof idleWindow>> | null = null;
  let deathsD: ReturnType<typeof deathSummary> | null = null;
  let floorD: FloorSample[] = [];
  if (WITH_CLN) {
    const kindsD = stackKinds("cln");
    current = await bring(labelD, runnerConfig("cln", DEFAULT_MIN_MS));
    idleD = await idleWindow(current, IDLE_S, baselines);
    if (CLN_KILLS > 0) {
      t = now();
      const dD = await deaths(current, kindsD, CLN_KILLS);
      deathsD = deathSummary(DEFAULT_MIN_MS, dD.samples, (now() - t) / 1000);
      floorD = dD.floor;
    }
    await current.child.stop();
  }
  current = null;

  // ---- the report
  const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a) ? round(a / b, 2) : null);
  const restartResults: Record<string, ReturnType<typeof deathSummary>> = {
    [labelA]: deathsA,
    [labelC]: deathsC,
    ...(deathsD === null ? {} : { [labelD]: deathsD }),
  };
  const floorResults: Record<string, ReturnType<typeof floorSummary>> = {
    [labelA]: floorSummary(dA.floor),
    [labelC]: floorSummary(dC.floor),
    ...(deathsD === null ? {} : { [labelD]: floorSummary(floorD) }),
  };
  const restartRatios = Object.fromEntries(
    Object.entries(restartResults).map(([label, d]) => {
      const f = floorResults[label] as ReturnType<typeof floorSummary>;
      return [
        label,
        {
          running_p50_over_podman_start: ratio(d.running_ms.p50, f.running_ms.p50),
          running_p99_over_podman_start: ratio(d.running_ms.p99, f.running_ms.p99),
          healthy_p50_over_podman_start: ratio(d.healthy_ms.p50, f.healthy_ms.p50),
          healthy_p99_over_podman_start: ratio(d.healthy_ms.p99, f.healthy_ms.p99),
          running_p50_added_ms: round(d.running_ms.p50 - f.running_ms.p50, 1),
          running_p50_added_beyond_backoff_ms: round(
            d.running_minus_backoff_ms.p50 - f.running_ms.p50,
            1,
          ),
        },
      ];
    }),
  );
  const idleResults: Record<string, unknown> = {
    [PRIMARY]: {
      supervisor: idleA.supervisor,
      podman_service: idleA.podman_service,
      health_ms: HEALTH_MS,
    },
    ...(idleB === null
      ? {}
      : {
          [`${PRIMARY}_no_probe`]: {
            supervisor: idleB.supervisor,
            podman_service: idleB.podman_service,
            health_ms: NO_PROBE_HEALTH_MS,
            adopted_without_restart: !(
              `service.started` in (bringUp[`${PRIMARY}_no_probe`]?.events ?? {})
            ),
          },
        }),
    ...(idleD === null
      ? {}
      : {
          cln: {
            supervisor: idleD.supervisor,
            podman_service: idleD.podman_service,
            health_ms: HEALTH_MS,
          },
        }),
  };
  const idleBaselines: Record<string, unknown> = {};
  const windows: [string, Awaited<ReturnType<typeof idleWindow>> | null][] = [
    [PRIMARY, idleA],
    [`${PRIMARY}_no_probe`, idleB],
    ["cln", idleD],
  ];
  for (const [label, w] of windows) {
    if (w === null) continue;
    idleBaselines[label] = { trivial_node: w.baselines[0], import_only: w.baselines[1] };
  }
  const cpuRatios: Record<string, unknown> = {};
  for (const [label, w] of windows) {
    if (w === null) continue;
    cpuRatios[label] = {
      cpu_over_trivial_node: ratio(w.supervisor.cpu_s, (w.baselines[0] as CpuWindow).cpu_s),
      cpu_over_import_only: ratio(w.supervisor.cpu_s, (w.baselines[1] as CpuWindow).cpu_s),
    };
  }
  if (idleB !== null) {
    (cpuRatios as Record<string, unknown>).probes_on_over_off = ratio(
      idleA.supervisor.cpu_s_per_min,
      idleB.supervisor.cpu_s_per_min,
    );
  }
  const memTrivial = idleA.baselineMemory[0] as MemorySample;
  const memImport = idleA.baselineMemory[1] as MemorySample;
  const goals = Object.fromEntries(
    Object.entries(restartResults).map(([label, d]) => [
      `running_p99_ms_${label}`,
      {
        goal: `< ${GOAL_RESTART_P99_MS}`,
        value: d.running_ms.p99,
        met: d.deaths > 0 && d.running_ms.p99 < GOAL_RESTART_P99_MS,
      },
    ]),
  );
  report = {
    bench: "supervisor",
    machine,
    config: {
      kills: KILLS,
      cln_kills: WITH_CLN ? CLN_KILLS : 0,
      idle_s: IDLE_S,
      no_probe_idle_s: NO_PROBE_IDLE_S,
      lightning: LIGHTNING,
      seed: SEED,
      stacks: {
        [PRIMARY]: kindsP,
        ...(WITH_CLN ? { cln: stackKinds("cln") } : {}),
      },
      podman: {
        version: podmanVersion,
        api: "Docker Engine API on a private podman system service (test/support/podman.ts)",
        storage_driver: podman.driver,
        events_logger: "file",
      },
      image_build: lastImageBuild,
      setup_s: round(setupS, 1),
      bring_up: bringUp,
      supervisor: {
        resync_ms: RESYNC_MS,
        health_ms: HEALTH_MS,
        restart: { min_ms: [DEFAULT_MIN_MS, FAST_MIN_MS], max_ms: 60_000, crashloop: "5 in 600 s" },
        failure_history:
          "cleared after each death (an operator's start), as a minute of running would",
      },
      death: `SIGKILL after a random 0–${PRE_KILL_MAX_MS} ms pause, a random kind (seeded)`,
      kill_methods: killMethods,
      poll_ms: POLL_MS,
      node: NODE,
      node_flags: NODE_FLAGS,
      runner: "bench/supervisor/runner.ts, from source (type stripping)",
      loadavg_1m_end: round(loadavg()[0] ?? 0, 2),
    },
    results: {
      restart: restartResults,
      idle: idleResults,
      memory: {
        [`${PRIMARY}_idle`]: idleA.memory,
        [`${PRIMARY}_after_deaths`]: afterDeaths,
        ...(idleD === null ? {} : { cln_idle: idleD.memory }),
      },
    },
    baseline: {
      podman_start: floorResults,
      idle: idleBaselines,
      memory: { trivial_node: memTrivial, import_only: memImport },
    },
    ratios: {
      restart: restartRatios,
      cpu: cpuRatios,
      memory: {
        rss_over_trivial_node: ratio(idleA.memory.rss_mib, memTrivial.rss_mib),
        rss_over_import_only: ratio(idleA.memory.rss_mib, memImport.rss_mib),
        rss_minus_import_only_mib: round(idleA.memory.rss_mib - memImport.rss_mib, 1),
        anon_minus_import_only_mib: round(idleA.memory.anon_mib - memImport.anon_mib, 1),
      },
    },
    goals,
  };
} catch (err) {
  process.stderr.write(`bench/supervisor: ${(err as Error).stack ?? String(err)}\n`);
  if (current !== null) {
    process.stderr.write(`--- supervisor stderr:\n${current.child.stderrTail()}\n`);
  }
  await cleanup();
  process.exit(1);
}
await cleanup();

async function cleanup() {
  if (current !== null) await current.child.stop().catch(() => null);
  for (const c of children) await c.stop().catch(() => null);
  await podman?.stop();
  rmSync(work, { recursive: true, force: true });
}

process.stdout.write(`${JSON.stringify(report)}\n`);
if (!JSON_ONLY) printTable(report);

function printTable(r: Record<string, unknown>): void {
  const res = r.results as {
    restart: Record<string, ReturnType<typeof deathSummary>>;
    idle: Record<
      string,
      {
        supervisor: CpuWindow & {
          driver_calls: Record<string, number>;
          driver_events: number;
        };
        podman_service: { cpu_s_per_min: number; pct_of_one_core: number };
      }
    >;
    memory: Record<string, MemorySample>;
  };
  const base = r.baseline as {
    podman_start: Record<string, ReturnType<typeof floorSummary>>;
    idle: Record<string, { trivial_node: CpuWindow; import_only: CpuWindow }>;
    memory: { trivial_node: MemorySample; import_only: MemorySample };
  };
  const cfg = r.config as {
    loadavg_1m_end: number;
    bring_up: Record<string, { seconds: number }>;
  };
  const row = (name: string, s: MsSummary) => [name, s.p50, s.p90, s.p99, s.max, s.mean, s.count];
  const restartRows: (string | number)[][] = [];
  for (const [label, d] of Object.entries(res.restart)) {
    const f = base.podman_start[label] as ReturnType<typeof floorSummary>;
    restartRows.push(
      row(`${label}: (a) kill → supervisor sees the exit`, d.exit_seen_ms),
      row(`${label}:     kill → Podman says exited`, d.podman_exited_ms),
      row(`${label}:     backoff scheduled`, d.backoff_scheduled_ms),
      row(`${label}:     kill → supervisor's start call answered`, d.start_returned_ms),
      row(`${label}: (b) kill → Podman says running`, d.running_ms),
      row(`${label}: (c) kill → health probe answers`, d.healthy_ms),
      row(`${label}:     (b) minus the backoff`, d.running_minus_backoff_ms),
      row(`${label}: floor: docker start → running`, f.running_ms),
      row(`${label}: floor: docker start → probe answers`, f.healthy_ms),
    );
  }
  const idleRows: (string | number | null)[][] = [];
  for (const [label, w] of Object.entries(res.idle)) {
    const s = w.supervisor;
    const b = base.idle[label];
    idleRows.push([
      `supervisor, ${label}`,
      s.window_s,
      s.cpu_s_per_min,
      s.pct_of_one_core,
      Object.entries(s.driver_calls)
        .map(([k, v]) => `${k} ${v}`)
        .join(", "),
      s.driver_events,
      w.podman_service.cpu_s_per_min,
    ]);
    if (b !== undefined) {
      idleRows.push([
        "  baseline: trivial node",
        b.trivial_node.window_s,
        b.trivial_node.cpu_s_per_min,
        b.trivial_node.pct_of_one_core,
        null,
        null,
        null,
      ]);
      idleRows.push([
        "  baseline: modules imported only",
        b.import_only.window_s,
        b.import_only.cpu_s_per_min,
        b.import_only.pct_of_one_core,
        null,
        null,
        null,
      ]);
    }
  }
  const memRow = (name: string, m: MemorySample) => [
    name,
    m.rss_mib,
    m.anon_mib,
    m.file_mib,
    m.hwm_mib,
  ];
  const goals = r.goals as Record<string, { goal: string; value: number; met: boolean }>;
  process.stdout.write(
    `\nmachine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, load ${machine.loadavg_1m} at start, ${cfg.loadavg_1m_end} at end\n` +
      `supervisor (bench/supervisor/runner.ts, own process) on a private Podman service; simulated services in containers; bring-up ${Object.entries(
        cfg.bring_up,
      )
        .map(([k, v]) => `${k} ${v.seconds} s`)
        .join(", ")}\n\n` +
      table(["death → restart, ms", "p50", "p90", "p99", "max", "mean", "n"], restartRows) +
      "\n" +
      table(
        [
          "idle, nothing happening",
          "window s",
          "CPU s/min",
          "% of a core",
          "driver calls",
          "events",
          "podman service CPU s/min",
        ],
        idleRows,
      ) +
      "\n" +
      table(
        ["memory, MiB", "VmRSS", "RssAnon", "RssFile", "VmHWM"],
        [
          ...Object.entries(res.memory).map(([k, m]) => memRow(`supervisor, ${k}`, m)),
          memRow("baseline: modules imported only", base.memory.import_only),
          memRow("baseline: trivial node (setInterval)", base.memory.trivial_node),
        ],
      ) +
      "\n" +
      Object.entries(goals)
        .map(([k, g]) => `goal ${k} ${g.goal}: ${g.met ? "met" : "NOT met"} (${g.value})`)
        .join("\n") +
      "\n",
  );
}
