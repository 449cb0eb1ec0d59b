import { join } from "node:path";
import type { Clock } from "../lib/clock.ts";
import type { AgentdConfig } from "../lib/config/schema.ts";
import { componentLogger, type Logger } from "../lib/log/logger.ts";
import type { Timers } from "../lib/timers.ts";
import { defaultSpecs } from "./defaults.ts";
import { dockerClient, dockerDriver } from "./docker-driver.ts";
import type { ServiceDriver } from "./driver.ts";
import { type ProcessDriver, processDriver } from "./process-driver.ts";
import type { SupervisorEvent } from "./reconciler.ts";
import { loadServicesFile } from "./specs-file.ts";
import { type Supervisor, startSupervisor } from "./supervisor.ts";

/**
 * The supervisor as `agentd run` starts it, from the configuration: `supervisor.driver`
 * chooses the driver — `docker` (the Docker Engine API at `docker.host`), `process` (native
 * processes, their records under `<stateDir>/services`) or `off` (no supervisor: null) — and
 * `supervisor.services_file` the specs (the built-in ones over `supervisor.data_dir` when it is
 * ""). A services file that does not load throws here, before anything starts. Choosing the
 * driver is the supervisor's business, so the agent only calls this and registers the gate.
 */

export interface SupervisorDeps {
  /** Like the worker label of containers: only this worker's services are seen and touched. */
  readonly workerId: string;
  /** The agent's state directory; the process driver keeps its records in `services/`. */
  readonly stateDir: string;
  readonly clock: Clock;
  /** Every wait of the supervisor and its drivers (the agent: backgroundTimers). */
  readonly timers: Timers;
  /** The agent's logger; the supervisor logs as component "supervisor", processes as "processes". */
  readonly logger: Logger;
  /** Services started, stopped, exited, restarts, crash loops, the driver's reachability. */
  readonly onEvent: (e: SupervisorEvent) => void;
  /** Injected by tests: used as it is, whatever `supervisor.driver` says (even "off"). */
  readonly driver?: ServiceDriver;
}

export function createSupervisor(
  config: Pick<AgentdConfig, "supervisor" | "docker">,
  deps: SupervisorDeps,
): Supervisor | null {
  const chosen = config.supervisor.driver;
  if (deps.driver === undefined && chosen === "off") return null;
  const dataDir = config.supervisor.data_dir;
  const specs =
    config.supervisor.services_file === ""
      ? defaultSpecs(dataDir)
      : loadServicesFile(config.supervisor.services_file, dataDir);
  const logger = componentLogger(deps.logger, "supervisor");
  let processes: ProcessDriver | null = null;
  let driver = deps.driver;
  if (driver === undefined && chosen === "process") {
    processes = processDriver({
      stateDir: join(deps.stateDir, "services"),
      worker: deps.workerId,
      clock: deps.clock,
      timers: deps.timers,
      specs: () => Object.values(specs),
      logger: componentLogger(deps.logger, "processes"),
    });
    driver = processes;
  }
  if (driver === undefined) {
    const { docker, name } = dockerClient(config.docker.host);
    driver = dockerDriver(docker, { worker: deps.workerId, name, timers: deps.timers, logger });
  }
  let supervisor: Supervisor;
  try {
    supervisor = startSupervisor({
      driver,
      specs,
      dataDir,
      clock: deps.clock,
      timers: deps.timers,
      logger,
      onEvent: deps.onEvent,
    });
  } catch (err) {
    processes?.close();
    throw err;
  }
  const driverOwned = processes;
  return {
    ...supervisor,
    // The process driver's poll and child handlers go with the supervisor; its processes stay
    // (they outlive an agent restart and are adopted by the next one).
    async close() {
      try {
        await supervisor.close();
      } finally {
        driverOwned?.close();
      }
    },
  };
}
