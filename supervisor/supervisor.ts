import Dockerode from "dockerode";
import type { Clock } from "../lib/clock.ts";
import { fail } from "../lib/errors.ts";
import type { Logger } from "../lib/log/logger.ts";
import { dockerEngine } from "./docker-engine.ts";
import type { ServiceEngine } from "./engine.ts";
import { type ProbeResult, probe } from "./health.ts";
import { Reconciler, type ServiceStatus, type SupervisorEvent } from "./reconciler.ts";
import { type SupervisorGate, supervisorGate } from "./services-gate.ts";
import type { ServiceKind, ServiceSpec } from "./spec.ts";

/**
 * The supervisor as the agent runs it: an engine (the Docker Engine API on the configured
 * socket, or an injected one), the reconciler, the services gate for the policy guard, and
 * what the rest of the agent reads from it — service health for heartbeats, bitcoind's sync
 * and the Lightning channel to the treasury for eligibility.
 */

export interface Supervisor {
  readonly gate: SupervisorGate;
  readonly reconciler: Reconciler;
  readonly engineName: string;
  status(): {
    readonly engine: { readonly name: string; readonly up: boolean };
    readonly services: readonly ServiceStatus[];
    readonly refused: Readonly<Partial<Record<ServiceKind, string>>>;
  };
  /** For heartbeats: the status of each kind allowed or present. */
  heartbeatServices(): Partial<Record<ServiceKind, "running" | "stopped" | "unhealthy" | "absent">>;
  bitcoind(): "synced" | "syncing" | "unknown";
  lightning(treasuryPubkey: string): "open" | "none" | "unknown";
  close(): Promise<void>;
}

/** unix:///path, tcp://host:port, or "" for DOCKER_HOST or /var/run/docker.sock. */
export function dockerClient(
  host: string,
  env: NodeJS.ProcessEnv = process.env,
): { docker: Dockerode; name: string } {
  const h = host !== "" ? host : (env.DOCKER_HOST ?? "unix:///var/run/docker.sock");
  if (h.startsWith("unix://")) {
    return { docker: new Dockerode({ socketPath: h.slice("unix://".length) }), name: h };
  }
  const m = /^tcp:\/\/([^:/]+):([0-9]{1,5})$/.exec(h);
  if (m === null) {
    throw fail(
      "AGENTD_E_CONFIG_TYPE",
      `docker.host: expected unix:///path or tcp://host:port, found ${JSON.stringify(h)}`,
      {
        key: "docker.host",
      },
    );
  }
  return {
    docker: new Dockerode({ host: m[1] as string, port: Number(m[2]), protocol: "http" }),
    name: h,
  };
}

export function startSupervisor(o: {
  readonly engine: ServiceEngine;
  readonly specs: Readonly<Record<ServiceKind, ServiceSpec>>;
  readonly dataDir: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly onEvent?: (e: SupervisorEvent) => void;
  readonly resyncMs?: number;
  readonly healthMs?: number;
}): Supervisor {
  const probes = new Map<ServiceKind, ProbeResult>();
  const reconciler = new Reconciler({
    engine: o.engine,
    clock: o.clock,
    logger: o.logger,
    probe: async (kind, d) => {
      const r = await probe(d.spec.health);
      probes.set(kind, r);
      return r.healthy;
    },
    ...(o.onEvent === undefined ? {} : { onEvent: o.onEvent }),
    ...(o.resyncMs === undefined ? {} : { resyncMs: o.resyncMs }),
    ...(o.healthMs === undefined ? {} : { healthMs: o.healthMs }),
  });
  const gate = supervisorGate({ reconciler, specs: o.specs, dataDir: o.dataDir, logger: o.logger });
  reconciler.start();
  const running = (k: ServiceKind) =>
    reconciler.status().find((s) => s.kind === k)?.state === "running";
  return {
    gate,
    reconciler,
    engineName: o.engine.name,
    status: () => ({
      engine: { name: o.engine.name, up: reconciler.engineUp },
      services: reconciler.status(),
      refused: gate.refused(),
    }),
    heartbeatServices() {
      const out: Partial<Record<ServiceKind, "running" | "stopped" | "unhealthy" | "absent">> = {};
      for (const s of reconciler.status()) {
        if (s.allowed || s.state !== "absent") out[s.kind] = s.state;
      }
      return out;
    },
    bitcoind() {
      const r = probes.get("bitcoind");
      if (!running("bitcoind") || r === undefined || !r.healthy || r.synced === undefined)
        return "unknown";
      return r.synced ? "synced" : "syncing";
    },
    lightning(treasury) {
      for (const k of ["lnd", "cln"] as const) {
        const r = probes.get(k);
        if (!running(k) || r === undefined || !r.healthy || r.channelPeers === undefined) continue;
        if (treasury === "") return "unknown";
        return r.channelPeers.includes(treasury) ? "open" : "none";
      }
      return "unknown";
    },
    close: () => reconciler.close(),
  };
}

export { dockerEngine };
