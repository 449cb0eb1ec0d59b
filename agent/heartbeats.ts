import type { KeyObject } from "node:crypto";
import { join } from "node:path";
import { signHeartbeat } from "../control-plane/protocol/documents/heartbeat.ts";
import type { HeartbeatFleet } from "../control-plane/protocol/schemas/heartbeat.ts";
import type { AgentContext } from "./agent-context.ts";
import type { Attestation } from "./attestation.ts";
import type { AgentCommands } from "./commands.ts";
import { heartbeatUpstream } from "./guarded-proxy.ts";
import { COUNTER_FILE, openHeartbeatCounter } from "./heartbeat-counter.ts";
import { createHeartbeatSender, type SenderStats } from "./heartbeat-sender.ts";
import type { NodeEligibility } from "./node-eligibility.ts";
import type { AgentServices } from "./services.ts";

/**
 * Signed heartbeats in `agentd run` (heartbeat-sender.ts): every `heartbeat.interval_s`, from
 * the first attestation on (they need a session), with what the agent reports — state,
 * documents in force, what the data path was given, telemetry, services, eligibility, the
 * audit head. A reply naming commands the stream has not brought starts a poll; a 401 attests
 * again; an eligibility change is sent at once.
 */
export interface Heartbeats {
  stats(): SenderStats;
  /** When the control plane last accepted one (Unix ms), or null. */
  lastAcceptedAt(): number | null;
  stop(): Promise<void>;
}

export function startHeartbeats(
  ctx: AgentContext,
  o: {
    readonly machineKey: KeyObject;
    readonly intervalS: number;
    readonly agentVersion: string;
    readonly binarySha256: string;
    readonly attestation: Attestation;
    readonly commands: AgentCommands;
    readonly services: AgentServices;
    readonly eligibility: NodeEligibility;
    /** The fleet in brief, while miners are adopted (agent/fleet.ts). */
    readonly fleet?: () => HeartbeatFleet | undefined;
  },
): Heartbeats {
  const counter = openHeartbeatCounter(join(ctx.stateDir, COUNTER_FILE), ctx.clock);
  let lastAcceptedAt: number | null = null;
  let started = false;
  const sender = createHeartbeatSender({
    sign: (body) => signHeartbeat({ privateKey: o.machineKey, body, clock: ctx.clock }),
    send: (jws) => ctx.client.sendHeartbeat(jws),
    counter,
    snapshot: () => {
      const docs = ctx.engine.documents();
      const e = ctx.dataPath.effective();
      return {
        state: ctx.states.current().state,
        policy: {
          version: docs.publication?.payload.version ?? null,
          consent_sha256: docs.consent?.identity ?? null,
        },
        decision: { mining: e.allow, reasons: [...new Set(e.reasons)].slice(0, 32) },
        telemetry: {
          ...ctx.dataPath.telemetry(),
          uptime_s: Math.floor(process.uptime()),
          upstream: heartbeatUpstream(ctx.dataPath.proxy.upstreamStatus()),
        },
        services: o.services.supervisor?.heartbeatServices() ?? {},
        agent: { version: o.agentVersion, binary_sha256: o.binarySha256 },
        audit_head: ctx.audit.head()?.hash ?? null,
        eligibility: o.eligibility.forHeartbeat(),
        ...withFleet(o.fleet?.()),
      };
    },
    timers: ctx.timers,
    intervalMs: o.intervalS * 1000,
    reauthenticate: async () => {
      await o.attestation.attest();
    },
    onReply: (reply) => {
      lastAcceptedAt = ctx.clock.now();
      // Commands the control plane still waits for that the stream has not brought (it is
      // down, or behind a proxy that cuts it): fetched by polling instead.
      if (reply.pending_commands.some((id) => !o.commands.has(id))) void o.commands.poll();
    },
    onReplay: (c) => ctx.audit.append({ type: "heartbeat.replay", counter: c }),
  });
  o.eligibility.onChange(() => {
    if (!started) return; // the first heartbeat carries it
    sender.beat();
    void sender.flush();
  });
  void o.attestation.first.then(() => {
    if (ctx.signal.aborted) return;
    sender.start();
    started = true;
  });
  return {
    stats: () => sender.stats(),
    lastAcceptedAt: () => lastAcceptedAt,
    stop: () => sender.stop(),
  };
}

const withFleet = (f: HeartbeatFleet | undefined) => (f === undefined ? {} : { fleet: f });
