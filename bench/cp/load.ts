/**
 * The load generator of bench/cp-heartbeats.ts: N simulated agents, each with its own Ed25519
 * machine key and access token, sending signed heartbeats (a fresh JWS per request, counters
 * strictly increasing per agent; no separate request proof: like the protocol client, since
 * the heartbeat is its own proof, docs/protocol.md section 3) over TLS 1.3 keep-alive
 * connections, C requests in flight. Agents are divided among the C slots, each slot sending
 * for its agents in turn, so an agent never has two heartbeats in flight (its counters
 * arrive in order, as from a real agent) and every agent sends about equally.
 */
import { Agent, request } from "node:https";
import { signHeartbeat } from "../../control-plane/protocol/documents/heartbeat.ts";
import { type Clock, systemClock } from "../../lib/clock.ts";
import type { SimAgent } from "./provision.ts";

export interface LoadResult {
  readonly sent: number;
  readonly ok: number;
  /** Non-2xx answers by `status code`. */
  readonly refused: Record<string, number>;
  readonly errors: number;
  readonly seconds: number;
  readonly latenciesNs: Float64Array;
  /** CPU the generator itself used (this process), in cores: it shares the machine. */
  readonly clientCores: number;
  /** Heartbeats signed during the run because the presigned ones ran out. */
  readonly signedLive: number;
}

/**
 * Heartbeat bodies signed ahead, per agent, in counter order. Why: the generator shares this
 * machine's two cores with the server, and signing (plus its schema check) costs it about as
 * much as verifying costs the server; signed before the measured window, the server's work
 * per request is unchanged while the generator leaves it the CPU. Each stays fresh: the run
 * is short enough (at most 30 s) that every `iat` is within the server's 60 s skew.
 */
export function presign(
  agents: readonly SimAgent[],
  perAgent: number,
  clock: Clock = systemClock,
): Map<SimAgent, string[]> {
  const out = new Map<SimAgent, string[]>();
  for (const a of agents) {
    const q: string[] = [];
    for (let i = 0; i < perAgent; i++) q.push(body(a, clock));
    out.set(a, q);
  }
  return out;
}

export interface LoadOptions {
  readonly url: string;
  readonly caPem: string;
  readonly agents: readonly SimAgent[];
  readonly concurrency: number;
  readonly seconds: number;
  /** Bodies signed ahead (presign); when an agent's run out, it signs live. */
  readonly presigned?: Map<SimAgent, string[]>;
  /** Skip signing: send a fixed body (the transport-only baseline). */
  readonly fixedBody?: string;
  readonly clock?: Clock;
}

const BINARY = "ab".repeat(32);

function body(a: SimAgent, clock: Clock): string {
  a.counter++;
  const jws = signHeartbeat({
    privateKey: a.privateKey,
    clock,
    body: {
      counter: a.counter,
      state: "MINING",
      policy: { version: null, consent_sha256: null },
      decision: { mining: true, reasons: [] },
      telemetry: {
        asics: 4,
        hashrate_hs: 4 * 13.5e12 + (a.counter % 997) * 1e9,
        shares_accepted: a.counter * 6,
        shares_rejected: a.counter % 7,
        uptime_s: 30 * a.counter,
      },
      services: { bitcoind: "running", translator: "running" },
      agent: { version: "0.1.0", binary_sha256: BINARY },
      audit_head: null,
    },
  });
  return JSON.stringify({ heartbeat: jws });
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const clock = o.clock ?? systemClock;
  const agent = new Agent({
    keepAlive: true,
    maxSockets: o.concurrency,
    ca: o.caPem,
    minVersion: "TLSv1.3",
  });
  const latencies: number[] = [];
  const refused: Record<string, number> = {};
  let sent = 0;
  let ok = 0;
  let errors = 0;
  let signedLive = 0;
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  const endAt = start + BigInt(Math.round(o.seconds * 1e9));

  const one = (a: SimAgent): Promise<void> => {
    const path = `/v1/workers/${a.workerId}/heartbeat`;
    let payload = o.fixedBody ?? o.presigned?.get(a)?.shift();
    if (payload === undefined) {
      signedLive++;
      payload = body(a, clock);
    }
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(payload)),
      authorization: `AgentD ${a.accessToken}`,
    };
    const t0 = process.hrtime.bigint();
    sent++;
    return new Promise((resolve) => {
      const req = request(`${o.url}${path}`, { method: "POST", headers, agent }, (res) => {
        res.resume();
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            ok++;
            latencies.push(Number(process.hrtime.bigint() - t0));
          } else refused[String(status)] = (refused[String(status)] ?? 0) + 1;
          resolve();
        });
      });
      req.on("error", () => {
        errors++;
        resolve();
      });
      req.end(payload);
    });
  };

  const slots = Array.from({ length: o.concurrency }, (_, s) =>
    (async () => {
      const mine = o.agents.filter((_, i) => i % o.concurrency === s);
      if (mine.length === 0) return;
      for (let i = 0; process.hrtime.bigint() < endAt; i++) {
        await one(mine[i % mine.length] as SimAgent);
      }
    })(),
  );
  await Promise.all(slots);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  agent.destroy();
  return {
    sent,
    ok,
    refused,
    errors,
    seconds,
    latenciesNs: Float64Array.from(latencies),
    clientCores: (cpu.user + cpu.system) / 1e6 / seconds,
    signedLive,
  };
}
