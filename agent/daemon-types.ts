import type { HostFacts } from "../control-plane/protocol/schemas/attestation.ts";
import type { Clock } from "../lib/clock.ts";
import type { AgentdConfig } from "../lib/config/schema.ts";
import type { Logger } from "../lib/log/logger.ts";
import type { Timers } from "../lib/timers.ts";
import type { ServiceDriver } from "../supervisor/driver.ts";
import type { AgentState } from "./state-machine.ts";

/** What `agentd run` (daemon.ts startAgent) is given, and what it gives back. */

export interface AgentDaemonOptions {
  readonly stateDir: string;
  readonly clock: Clock;
  /** Timers every part waits on (default: Node's, unref'd); fake time in tests. */
  readonly timers?: Timers;
  readonly logger: Logger;
  readonly agentVersion: string;
  readonly heartbeatIntervalS: number;
  /** The host's facts, collected afresh at every attestation. */
  readonly hostFacts: () => HostFacts;
  /** Longest wait of one policy long poll (default 25 s). */
  readonly longPollS?: number;
  /** The local API's unix socket (config api.socket); its directory is made if missing. */
  readonly apiSocket: string;
  /**
   * The configuration: `stratum.*` and `metrics.max_worker_series` for the Stratum proxy,
   * `api.listen`/`api.token` for the local API's TCP listener, `metrics.listen`, `supervisor.*`.
   */
  readonly config: AgentdConfig;
  /** Where the Stratum proxy listens for ASICs (config stratum.listen; port 0 allowed). */
  readonly stratum: { readonly host: string; readonly port: number };
  /** The agent's last log lines (the local API's /v1/logs); none kept when absent. */
  readonly recentLogs?: (n: number) => string[];
  /** Attestation with fresh host facts at least this often (default 15 min). */
  readonly attestIntervalMs?: number;
  /** The driver the supervisor runs services with, injected by tests (default from config). */
  readonly serviceDriver?: ServiceDriver;
  /**
   * Run the ASIC drivers as the agent's own user instead of `drivers.user`: the devnet only
   * (no separate user on a developer's machine); the driver host warns when it does.
   */
  readonly driversAsInvokingUser?: boolean;
  /** How often the audit log is probed while it cannot be written (default 2 s). */
  readonly auditProbeMs?: number;
  /** Free space the audit log's disk needs before mining resumes after it was full (1 MiB). */
  readonly auditMinFreeBytes?: number;
}

export interface RunningAgent {
  readonly workerId: string;
  readonly url: string;
  readonly apiSocket: string;
  /** The local API's TCP listener, when api.listen is set. */
  readonly apiTcp: { readonly host: string; readonly port: number } | null;
  /** The metrics endpoint, when metrics.listen is set. */
  readonly metrics: { readonly host: string; readonly port: number } | null;
  /** The Stratum proxy's bound address. */
  readonly stratum: { readonly host: string; readonly port: number };
  /** What `GET /v1/status` of the local API answers. */
  status(): Record<string, unknown>;
  /**
   * Resolves after an owner-signed decommission was accepted and the credentials wiped:
   * the caller then stops the agent (`agentd run` exits 0).
   */
  readonly terminated: Promise<void>;
  state(): AgentState;
  close(): Promise<void>;
}
