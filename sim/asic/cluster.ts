/**
 * N simulated miners of one profile in one process: one hashing scheduler shared round-robin,
 * one management API per miner (for the profiles that have one) and, for the stock Antminers
 * (s9, s19), one web UI per miner (web-ui.ts). This is the programmatic
 * API end-to-end tests use; `agentd sim asic` is a thin wrapper around it.
 */
import type { Clock } from "../../lib/clock.ts";
import type { Timers } from "../../lib/timers.ts";
import { AxeOsApi } from "./axeos.ts";
import { BosGrpcServer } from "./bos-grpc.ts";
import type { FaultSpec } from "./faults.ts";
import { MgmtApi } from "./mgmt-api.ts";
import { type MinerEvent, SimMiner } from "./miner.ts";
import { PROFILES, type ProfileName } from "./profiles.ts";
import { HashScheduler } from "./scheduler.ts";
import { WebUi } from "./web-ui.ts";

export interface ClusterOptions {
  readonly count: number;
  readonly profile: ProfileName;
  /** Pool URLs for slots 1–3 (every miner gets all of them, in this order). */
  readonly pools: readonly string[];
  /** Account name; each miner authorizes as `${user}.${id}`. Default "sim". */
  readonly user?: string;
  readonly pass?: string;
  /** Where the management APIs listen (default 127.0.0.1). */
  readonly apiHost?: string;
  /** First API port (miner i gets apiPort + i); 0 (default): each a free port. */
  readonly apiPort?: number;
  /** cgminer --api-allow entries (mgmt-api.ts); default W:* as stock Antminer firmware. */
  readonly apiAllow?: readonly string[];
  readonly faults?: readonly FaultSpec[];
  /** Where the Antminer web UIs listen (default: apiHost). */
  readonly webHost?: string;
  /** First web UI port (miner i gets webPort + i); 0 (default): each a free port. */
  readonly webPort?: number;
  /** The web UI password (default root, as shipped). */
  readonly webPassword?: string;
  /** How long set_miner_conf takes to apply (default 20 s, as hardware). */
  readonly webApplyDelayMs?: number;
  /** What the web UI's apply delay waits on (default Node's timers). */
  readonly webTimers?: Timers;
  readonly silenceTimeoutMs?: number;
  readonly retryDelayMs?: number;
  readonly rebootMs?: number;
  readonly suggestDifficulty?: number;
  /** Nonces per scheduler turn. */
  readonly batch?: number;
  readonly maxHashesPerSecond?: number;
  readonly clock?: Clock;
  readonly onEvent?: (event: MinerEvent & { miner: string }) => void;
  /** Start mining at once (default); false: call startMining() (after printing a ready line). */
  readonly start?: boolean;
}

export interface ClusterMiner {
  readonly id: string;
  readonly profile: ProfileName;
  readonly worker: string;
  readonly miner: SimMiner;
  /** null for profiles without a cgminer API (bitaxe, cpuminer). */
  readonly api: MgmtApi | null;
  /** The stock Antminer web UI; null for other profiles. */
  readonly web: WebUi | null;
  /** Braiins OS's gRPC API (bosminer); null for other profiles. */
  readonly grpc: BosGrpcServer | null;
  /** The Bitaxe's AxeOS HTTP API (axeos.ts); null for other profiles. */
  readonly axeos: AxeOsApi | null;
}

/** The CLI's ready line (sim/README.md). */
export interface ClusterReady {
  readonly ready: true;
  readonly miners: readonly {
    readonly id: string;
    readonly profile: ProfileName;
    readonly worker: string;
    readonly api: { readonly host: string; readonly port: number } | null;
    readonly web: { readonly host: string; readonly port: number } | null;
    /** bosminer only: its gRPC API (a free port on the web UI's host). */
    readonly grpc?: { readonly host: string; readonly port: number };
    /** The miner's hardware identity: the same after a reboot or an address change. */
    readonly mac: string;
    readonly serial: string;
  }[];
}

export class SimCluster {
  readonly miners: readonly ClusterMiner[];
  readonly scheduler: HashScheduler;

  private constructor(miners: ClusterMiner[], scheduler: HashScheduler) {
    this.miners = miners;
    this.scheduler = scheduler;
  }

  static async start(o: ClusterOptions): Promise<SimCluster> {
    if (!Number.isInteger(o.count) || o.count < 1) throw new RangeError("count must be ≥ 1");
    const profile = PROFILES[o.profile];
    const scheduler = new HashScheduler({
      ...(o.batch === undefined ? {} : { batch: o.batch }),
      ...(o.maxHashesPerSecond === undefined ? {} : { maxHashesPerSecond: o.maxHashesPerSecond }),
      ...(o.clock === undefined ? {} : { clock: o.clock }),
    });
    const user = o.user ?? "sim";
    const miners: ClusterMiner[] = [];
    const cluster = new SimCluster(miners, scheduler);
    try {
      for (let i = 0; i < o.count; i++) {
        const id = `${o.profile}-${i}`;
        const worker = `${user}.${id}`;
        const miner = new SimMiner({
          id,
          profile,
          pools: o.pools.map((url) => ({ url, user: worker, pass: o.pass ?? "x" })),
          scheduler,
          ...(o.clock === undefined ? {} : { clock: o.clock }),
          ...(o.silenceTimeoutMs === undefined ? {} : { silenceTimeoutMs: o.silenceTimeoutMs }),
          ...(o.retryDelayMs === undefined ? {} : { retryDelayMs: o.retryDelayMs }),
          ...(o.rebootMs === undefined ? {} : { rebootMs: o.rebootMs }),
          ...(o.suggestDifficulty === undefined ? {} : { suggestDifficulty: o.suggestDifficulty }),
          ...(o.faults === undefined ? {} : { faults: o.faults }),
          ...(o.onEvent === undefined ? {} : { onEvent: o.onEvent }),
        });
        const api =
          profile.api === null
            ? null
            : new MgmtApi({
                miner,
                host: o.apiHost ?? "127.0.0.1",
                port: o.apiPort ? o.apiPort + i : 0,
                ...(o.apiAllow === undefined ? {} : { allow: o.apiAllow }),
              });
        const antminer = profile.api === "bmminer-s9" || profile.api === "bmminer-s19";
        const web = antminer
          ? new WebUi({
              miner,
              host: o.webHost ?? o.apiHost ?? "127.0.0.1",
              port: o.webPort ? o.webPort + i : 0,
              ...(o.webPassword === undefined ? {} : { password: o.webPassword }),
              ...(o.webApplyDelayMs === undefined ? {} : { applyDelayMs: o.webApplyDelayMs }),
              ...(o.webTimers === undefined ? {} : { timers: o.webTimers }),
            })
          : null;
        // Braiins OS's gRPC login takes the web password (root, as pyasic assumes, by default).
        const grpc =
          profile.api === "bosminer"
            ? new BosGrpcServer({
                miner,
                host: o.webHost ?? o.apiHost ?? "127.0.0.1",
                ...(o.webPassword === undefined ? {} : { password: o.webPassword }),
              })
            : null;
        const axeos =
          o.profile === "bitaxe"
            ? new AxeOsApi({
                miner,
                host: o.webHost ?? o.apiHost ?? "127.0.0.1",
                port: o.webPort ? o.webPort + i : 0,
                ...(o.webTimers === undefined ? {} : { timers: o.webTimers }),
              })
            : null;
        miners.push({ id, profile: o.profile, worker, miner, api, web, grpc, axeos });
        await api?.listen();
        await web?.listen();
        await grpc?.listen();
        await axeos?.listen();
      }
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    // APIs first, then mining: the ready line's ports answer before any share is sent.
    if (o.start !== false) cluster.startMining();
    return cluster;
  }

  /** Powers the miners on: each connects to its first pool slot. */
  startMining(): void {
    for (const m of this.miners) m.miner.start();
  }

  ready(): ClusterReady {
    return {
      ready: true,
      miners: this.miners.map((m) => ({
        id: m.id,
        profile: m.profile,
        worker: m.worker,
        api: m.api ? m.api.address : null,
        web: m.web ? m.web.address : m.axeos ? m.axeos.address : null,
        ...(m.grpc ? { grpc: m.grpc.address } : {}),
        mac: m.miner.mac,
        serial: m.miner.serial,
      })),
    };
  }

  async stop(): Promise<void> {
    this.scheduler.stop();
    await Promise.all(
      this.miners.map(async (m) =>
        Promise.all([
          m.miner.stop(),
          m.api?.close(),
          m.web?.close(),
          m.grpc?.close(),
          m.axeos?.close(),
        ]),
      ),
    );
  }
}
