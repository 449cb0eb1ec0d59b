import type { DriverHostStatus } from "../plugins/host/launcher.ts";
import type { AgentContext } from "./agent-context.ts";
import type { Attestation } from "./attestation.ts";
import type { FleetSummary } from "./fleet.ts";
import type { Heartbeats } from "./heartbeats.ts";
import type { PauseHold, Pauses } from "./pause-state.ts";

/**
 * What `GET /v1/status` answers (and `agentd status` shows): the machine, its state and why,
 * what the data path was given (the holds applied) next to what the documents alone decide,
 * the documents in force, the control plane's side (key set, attestation, heartbeats), the
 * data path's telemetry and whether it reaches its upstream, the audit log and the process's
 * memory, and whether the ASIC drivers can run (`drivers`: state, user, why not). `pause` says who paused and since when: `local` (on the machine, lifted only there)
 * and `remote` (a `mining.pause` command), each `{"by", "since"}` (Unix ms) or null.
 */
export function statusView(
  ctx: AgentContext,
  o: {
    readonly agentVersion: string;
    readonly stratum: { readonly host: string; readonly port: number };
    readonly attestation: Attestation;
    readonly heartbeats: Heartbeats;
    readonly pauses: () => Pauses;
    readonly drivers: () => DriverHostStatus;
    readonly fleet: () => FleetSummary;
  },
): () => Record<string, unknown> {
  const pause = (p: PauseHold | null) => (p === null ? null : { by: p.by, since: p.at });
  return () => {
    const s = ctx.states.current();
    const d = ctx.engine.current();
    const e = ctx.dataPath.effective();
    const docs = ctx.engine.documents();
    const record = ctx.keys.record();
    return {
      worker_id: ctx.workerId,
      url: record.url,
      owner_id: record.owner_id,
      agent_version: o.agentVersion,
      state: s.state,
      since: s.since,
      reason: s.reason,
      decision: { mining: e.allow, reasons: e.reasons },
      policy_decision: { mining: d.mining.allow, reasons: d.mining.reasons },
      holds: ctx.dataPath.gate.holds(),
      pause: { local: pause(o.pauses().local), remote: pause(o.pauses().remote) },
      policy: {
        version: docs.publication?.payload.version ?? null,
        consent_sha256: docs.consent?.identity ?? null,
      },
      keyset_seq: ctx.keys.current().seq,
      attestation: o.attestation.last(),
      heartbeats: { ...o.heartbeats.stats(), last_accepted_at: o.heartbeats.lastAcceptedAt() },
      miners: ctx.dataPath.proxy.miners,
      telemetry: ctx.dataPath.telemetry(),
      upstream: ctx.dataPath.proxy.upstreamStatus(),
      stratum: o.stratum,
      drivers: o.drivers(),
      fleet: o.fleet(),
      audit: { writable: ctx.audit.writable, head: ctx.audit.head() },
      memory: memoryMib(),
    };
  };
}

/** The process's memory in MiB (status and doctor). */
export function memoryMib(): Record<string, number> {
  const m = process.memoryUsage();
  const mib = (n: number) => Math.round((n / 1048576) * 10) / 10;
  return {
    rss: mib(m.rss),
    heap_used: mib(m.heapUsed),
    heap_total: mib(m.heapTotal),
    external: mib(m.external),
    array_buffers: mib(m.arrayBuffers),
  };
}
