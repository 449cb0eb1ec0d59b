import type { Clock } from "../lib/clock.ts";
import type { Logger } from "../lib/log/logger.ts";
import type { Timers } from "../lib/timers.ts";
import type { ServiceDriver } from "./driver.ts";
import { type ProbeResult, probe } from "./health.ts";
import { Reconciler, type ServiceStatus, type SupervisorEvent } from "./reconciler.ts";
import { type SupervisorGate, supervisorGate } from "./services-gate.ts";
import type { ServiceKind, ServiceSpec } from "./spec.ts";

/**
 * The supervisor on a given driver (create-supervisor.ts chooses it from the configuration):
 * the reconciler, the services gate for the policy guard, and what the rest of the agent reads
 * from it — service health for heartbeats, bitcoind's sync and the Lightning channel to the
 * treasury for eligibility.
 */

export interface Supervisor {
  readonly gate: SupervisorGate;
  readonly reconciler: Reconciler;
  readonly driverName: string;
  status(): {
    /** The driver: its name and whether it answers (the local API's /v1/services). */
    readonly driver: { readonly name: string; readonly up: boolean };
    readonly services: readonly ServiceStatus[];
    readonly refused: Readonly<Partial<Record<ServiceKind, string>>>;
  };
  /** For heartbeats: the status of each kind allowed or present. */
  heartbeatServices(): Partial<Record<ServiceKind, "running" | "stopped" | "unhealthy" | "absent">>;
  bitcoind(): "synced" | "syncing" | "unknown";
  lightning(treasuryPubkey: string): "open" | "none" | "unknown";
  close(): Promise<void>;
}

export function startSupervisor(o: {
  readonly driver: ServiceDriver;
  readonly specs: Readonly<Record<ServiceKind, ServiceSpec>>;
  readonly dataDir: string;
  readonly clock: Clock;
  /** The reconciler's waits and the probes' deadlines (production: backgroundTimers). */
  readonly timers: Timers;
  readonly logger: Logger;
  readonly onEvent?: (e: SupervisorEvent) => void;
  readonly resyncMs?: number;
  readonly healthMs?: number;
}): Supervisor {
  const probes = new Map<ServiceKind, ProbeResult>();
  const reconciler = new Reconciler({
    driver: o.driver,
    clock: o.clock,
    timers: o.timers,
    logger: o.logger,
    probe: async (kind, d) => {
      const r = await probe(d.spec.health, o.timers);
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
    driverName: o.driver.name,
    status: () => ({
      driver: { name: o.driver.name, up: reconciler.driverUp },
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
