import type { MachineClient } from "../control-plane/protocol/client-machine.ts";
import type { Clock } from "../lib/clock.ts";
import type { AgentdConfig } from "../lib/config/schema.ts";
import type { Logger } from "../lib/log/logger.ts";
import type { Timers } from "../lib/timers.ts";
import type { EnforcementEngine } from "../policy-guard/engine.ts";
import type { AgentMetrics } from "./agent-metrics.ts";
import type { AgentStates } from "./agent-state.ts";
import type { AgentAudit } from "./audit-log.ts";
import type { DataPath } from "./data-path.ts";
import type { KeySetHolder } from "./key-set.ts";

/**
 * What every part of `agentd run` shares, built by daemon.ts in two steps: the base (what
 * exists before the enforcement engine: the machine, time, the log, the audit log, the state)
 * and the whole context (the engine, the data path with its holds, the protocol client and the
 * control plane's key set). Parts take the context and the few other parts they call; none
 * reaches into another's variables.
 */
export interface AgentBase {
  readonly stateDir: string;
  readonly workerId: string;
  readonly config: AgentdConfig;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly log: Logger;
  /** Aborted when the agent begins to stop: no part starts new work after it. */
  readonly signal: AbortSignal;
  readonly audit: AgentAudit;
  readonly metrics: AgentMetrics;
  readonly states: AgentStates;
}

export interface AgentContext extends AgentBase {
  readonly engine: EnforcementEngine;
  readonly dataPath: DataPath;
  readonly client: MachineClient;
  readonly keys: KeySetHolder;
}
