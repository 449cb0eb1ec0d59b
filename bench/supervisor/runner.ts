/**
 * The supervisor as bench/supervisor.ts measures it, in a process of its own so that its CPU
 * time and memory are its own: `startSupervisor` (supervisor/supervisor.ts) with `dockerDriver`
 * on the Docker Engine API socket given (the bench's private Podman service), the services file
 * given (parsed by `parseServices`, as the agent loads its services file), and the consent's
 * services part applied through the gate — exactly what `agentd run` starts with
 * `supervisor.driver = docker`, minus the rest of the agent. The logger is the agent's (pino,
 * level info, on stderr).
 *
 *   node bench/supervisor/runner.ts '<json: RunnerConfig>'
 *
 * It talks to the bench over the IPC channel only: `{type:"ready"}` once the gate has been
 * applied; `{type:"event", at, event}` for every supervisor event, `at` in ms on the wall clock
 * at sub-millisecond resolution (`performance.timeOrigin + performance.now()`, as the bench
 * reads it, so the two processes' times compare); and a reply to each request: `cpu`
 * (process.cpuUsage()), `status`, `counts` (driver calls by method, driver events received),
 * `reset` (an operator's start of a kind: its failure history and backoff cleared), `close`.
 * With `importOnly` it loads the same modules, starts nothing and answers `cpu` and `close`:
 * the baseline that separates loading the code from running it.
 */
import { performance } from "node:perf_hooks";
import { systemClock } from "../../lib/clock.ts";
import { componentLogger, createLogger } from "../../lib/log/logger.ts";
import { backgroundTimers } from "../../lib/timers.ts";
import type { Upstream } from "../../policy-guard/documents.ts";
import { dockerClient, dockerDriver } from "../../supervisor/docker-driver.ts";
import type { ServiceDriver } from "../../supervisor/driver.ts";
import type { ServiceKind } from "../../supervisor/spec.ts";
import { parseServices } from "../../supervisor/specs-file.ts";
import { type Supervisor, startSupervisor } from "../../supervisor/supervisor.ts";

export interface RunnerConfig {
  readonly importOnly?: boolean;
  /** The Docker Engine API's unix socket. */
  readonly socket: string;
  readonly worker: string;
  readonly dataDir: string;
  /** The services file's content (supervisor/specs-file.ts keys). */
  readonly services: Record<string, unknown>;
  /** The kinds the consent allows, all with this image id. */
  readonly kinds: readonly ServiceKind[];
  readonly image: string;
  readonly upstreams: readonly Upstream[];
  /** Overrides of the supervisor's intervals (defaults: resync 10 s, health 5 s). */
  readonly resyncMs?: number;
  readonly healthMs?: number;
}

export interface RunnerCounts {
  /** Driver calls by method. */
  readonly calls: Record<string, number>;
  /** Container events the driver's stream delivered (agentd's own only). */
  readonly driver_events: number;
}

const config = JSON.parse(process.argv[2] ?? "{}") as RunnerConfig;
const send = (m: Record<string, unknown>) => process.send?.(m);
const now = () => performance.timeOrigin + performance.now();

let sup: Supervisor | null = null;
const calls: Record<string, number> = {};
let driverEvents = 0;

if (config.importOnly !== true) {
  const { docker, name } = dockerClient(`unix://${config.socket}`);
  const logger = componentLogger(createLogger({ level: "info" }), "supervisor");
  // the agent's timers (agent/daemon.ts): unref'd, the IPC channel keeps this process alive
  const base = dockerDriver(docker, {
    worker: config.worker,
    name,
    timers: backgroundTimers,
    logger,
  });
  const counted =
    <A extends unknown[], R>(method: string, f: (...a: A) => R) =>
    (...a: A): R => {
      calls[method] = (calls[method] ?? 0) + 1;
      return f(...a);
    };
  const driver: ServiceDriver = {
    name: base.name,
    list: counted("list", () => base.list()),
    hasImage: counted("hasImage", (i: string) => base.hasImage(i)),
    create: counted("create", (o: Parameters<ServiceDriver["create"]>[0]) => base.create(o)),
    start: counted("start", (id: string) => base.start(id)),
    stop: counted("stop", (id: string, t: number) => base.stop(id, t)),
    remove: counted("remove", (id: string) => base.remove(id)),
    logs: counted("logs", (id: string, n: number) => base.logs(id, n)),
    events: counted(
      "events",
      (
        onEvent: Parameters<ServiceDriver["events"]>[0],
        onEnd: Parameters<ServiceDriver["events"]>[1],
      ) =>
        base.events((e) => {
          driverEvents++;
          onEvent(e);
        }, onEnd),
    ),
    ping: counted("ping", () => base.ping()),
  };
  sup = startSupervisor({
    driver,
    specs: parseServices(config.services, config.dataDir),
    dataDir: config.dataDir,
    clock: systemClock,
    timers: backgroundTimers,
    logger,
    onEvent: (event) => send({ type: "event", at: now(), event }),
    ...(config.resyncMs === undefined ? {} : { resyncMs: config.resyncMs }),
    ...(config.healthMs === undefined ? {} : { healthMs: config.healthMs }),
  });
  sup.gate.apply({
    allowed: Object.fromEntries(config.kinds.map((k) => [k, config.image])),
    reasons: [],
    upstreams: config.upstreams,
  });
}

process.on("message", (m: { id: number; op: string; kind?: ServiceKind }) => {
  const reply = (body: Record<string, unknown>) => send({ type: "reply", id: m.id, ...body });
  switch (m.op) {
    case "cpu":
      reply({ cpu: process.cpuUsage(), at: now() });
      return;
    case "status":
      reply({ status: sup?.status() ?? null });
      return;
    case "counts":
      reply({ counts: { calls: { ...calls }, driver_events: driverEvents } });
      return;
    case "reset":
      sup?.reconciler.startService(m.kind as ServiceKind).then(
        () => reply({}),
        (err: unknown) => reply({ error: String(err) }),
      );
      return;
    case "close":
      void (sup?.close() ?? Promise.resolve()).then(() => {
        process.send?.({ type: "reply", id: m.id }, () => process.exit(0));
      });
      return;
    default:
      reply({ error: `unknown op ${m.op}` });
  }
});
send({ type: "ready", at: now() });
