import type { HeartbeatUpstream } from "../control-plane/protocol/schemas/heartbeat.ts";
import type { Clock } from "../lib/clock.ts";
import type { AgentdConfig } from "../lib/config/schema.ts";
import type { Logger } from "../lib/log/logger.ts";
import type { Registry } from "../lib/metrics/registry.ts";
import type { Timers } from "../lib/timers.ts";
import type { EnforcementEngine } from "../policy-guard/engine.ts";
import { StratumProxy } from "../stratum-client/proxy.ts";
import type { UpstreamView } from "../stratum-client/reachability.ts";
import type { AuditAppender } from "./audit-sink.ts";

/**
 * The Stratum proxy as the agent runs it under the policy guard, in local mode
 * (local-proxy.ts) and in `agentd run` (daemon.ts) alike: configured from `stratum.*`, its
 * audit records in the agent's log, an upstream change re-evaluating the decision, and the
 * facts the decision reads about it. The engine is given later (it needs the proxy's facts,
 * the proxy needs to wake it): `engine()` returns it once it exists.
 */
export function createGuardedProxy(o: {
  readonly host: string;
  readonly port: number;
  readonly config: AgentdConfig;
  readonly clock: Clock;
  readonly timers?: Timers;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly audit: AuditAppender;
  readonly agentVersion: string;
  readonly engine: () => EnforcementEngine | null;
}): StratumProxy {
  const s = o.config.stratum;
  return new StratumProxy({
    host: o.host,
    port: o.port,
    agentVersion: o.agentVersion,
    clock: o.clock,
    ...(o.timers === undefined ? {} : { timers: o.timers }),
    logger: o.logger.child({ component: "stratum" }),
    registry: o.registry,
    maxWorkerSeries: o.config.metrics.max_worker_series,
    limits: { maxLineBytes: s.max_line_bytes, idleTimeoutMs: s.idle_timeout_s * 1000 },
    maxConnectionsPerIp: s.max_connections_per_ip,
    maxWorkersPerConnection: s.max_workers_per_connection,
    vardiff: s.vardiff
      ? {
          targetIntervalS: s.share_interval_s,
          initial: s.initial_difficulty,
          min: s.min_difficulty,
        }
      : { initial: s.initial_difficulty, min: s.initial_difficulty, max: s.initial_difficulty },
    audit: (e) => {
      // A record the log cannot take (disk full) is counted lost by the sink, which holds
      // mining meanwhile; it must not throw into the proxy's socket handlers.
      try {
        o.audit.append({
          ...e,
          actor: "stratum-proxy",
          at: new Date(o.clock.now()).toISOString(),
        });
      } catch {
        // counted by the audit sink
      }
    },
    onUpstreamChange: () => {
      o.engine()
        ?.refresh("upstream")
        .catch((err: unknown) => o.logger.error({ err }, "re-evaluating after an upstream change"));
    },
  });
}

/**
 * The facts the decision reads about the data path: the upstream in use, or the policy's
 * first (the only one the proxy would dial first). Power and temperature come with the ASIC
 * drivers: until then a consent with max_watts or max_temp_c denies (missing facts), as it
 * must.
 */
export function proxyFacts(
  proxy: StratumProxy,
  engine: () => EnforcementEngine | null,
): () => Record<string, unknown> {
  return () => ({
    upstream:
      proxy.upstreamInUse() ?? engine()?.documents().consent?.payload.rules.upstreams?.[0]?.url,
    job_class: "sha256d",
  });
}

/** What heartbeats and the local API report about the data path. */
export interface ProxyTelemetry {
  readonly asics: number;
  readonly hashrate_hs: number;
  readonly shares_accepted: number;
  readonly shares_rejected: number;
}

/**
 * The proxy's telemetry with a hashrate estimated from the difficulty of the shares accepted
 * over the last `windowMs` (default 10 min): accepted difficulty × 2^32 per second. Reading it
 * records a sample at most every 5 s, so any number of readers see the same window. No
 * miners connected reads 0 H/s: what was hashed before they left is not hashing now.
 */
export function proxyTelemetry(
  proxy: StratumProxy,
  clock: Clock,
  windowMs = 600_000,
): () => ProxyTelemetry {
  const samples: { t: number; d: number }[] = [];
  return () => {
    const t = clock.now();
    const totals = proxy.accounting.totals;
    const last = samples.at(-1);
    if (last === undefined || t - last.t >= 5_000 || t < last.t) {
      if (last !== undefined && t < last.t) samples.length = 0; // the clock went back
      samples.push({ t, d: totals.difficulty });
    }
    while (samples.length > 2 && t - (samples[0]?.t ?? t) > windowMs) samples.shift();
    const first = samples[0];
    const seconds = first === undefined ? 0 : (t - first.t) / 1000;
    const asics = proxy.miners;
    const hashrate =
      asics === 0 || first === undefined || seconds < 1
        ? 0
        : ((totals.difficulty - first.d) * 2 ** 32) / seconds;
    return {
      asics,
      hashrate_hs: Math.min(1e21, Math.max(0, hashrate)),
      shares_accepted: totals.accepted,
      shares_rejected: totals.rejected,
    };
  };
}

/**
 * The heartbeat's account of the upstream (docs/protocol.md, "Heartbeat"): the proxy's view
 * in the units of a signed document (Unix seconds), without the pool user (the control plane
 * knows the consent), and null while no upstream is wanted.
 */
export function heartbeatUpstream(view: UpstreamView): HeartbeatUpstream | null {
  if (view.state === "idle" || view.url === null) return null;
  return {
    url: view.url,
    state: view.state,
    since: Math.max(0, Math.floor(view.since / 1000)),
    last_error: view.last_error,
  };
}
