import type { HeartbeatFleet } from "../control-plane/protocol/schemas/heartbeat.ts";
import { type FleetActionEvent, FleetExecutor } from "../fleet/executor.ts";
import { fleetFacts } from "../fleet/facts.ts";
import { Inventory } from "../fleet/inventory.ts";
import { EMPTY_HISTORY, type FleetHistory, plan } from "../fleet/planner.ts";
import { FleetReader } from "../fleet/reader.ts";
import type { FleetMiner, FleetPolicy } from "../fleet/types.ts";
import { AgentdError, isAgentdError } from "../lib/errors.ts";
import { loadCredentials } from "../plugins/credentials.ts";
import {
  type Credentials,
  DEFAULT_LIMITS,
  FAMILIES,
  type Family,
  type MinerEndpoint,
} from "../plugins/driver.ts";
import type { AgentContext } from "./agent-context.ts";
import type { AgentDrivers } from "./drivers.ts";

/**
 * The fleet manager in `agentd run` (fleet/, issue 18): the adopted miners read every
 * `fleet.read_interval_s` through the driver host, their facts (measured watts, the hottest
 * chip) given to the policy guard, and after every round and every change of the decision the
 * planner's actions applied by the executor — sleep when mining is denied, wake when allowed,
 * the pool slots kept on the agent, power and temperature caps held. What it does is audited
 * (`fleet.*`). With nothing adopted it reads nothing and gives no facts.
 */
export interface AgentFleet {
  /** `{watts?, temp_c?}` for the policy guard, when there is a fleet. */
  facts(): Record<string, unknown>;
  /** GET /v1/fleet: every adopted miner with its last reading and unconfirmed actions. */
  view(): Record<string, unknown>;
  adopt(request: AdoptRequest): Promise<Record<string, unknown>>;
  forget(id: string): Promise<Record<string, unknown>>;
  /** For status and heartbeats: miners by mode, measured watts, hottest chip, unconfirmed. */
  summary(): FleetSummary;
  /** The heartbeat's `fleet`, while miners are adopted. */
  forHeartbeat(): HeartbeatFleet | undefined;
  /** Plans now (the decision changed). */
  replan(why: string): void;
  stop(): Promise<void>;
}

export interface FleetSummary {
  readonly adopted: number;
  /** By the mode last read (`unread` when never read or failing). */
  readonly modes: Readonly<Record<string, number>>;
  /** The measured watts the policy guard sees, or null when the fleet gives none. */
  readonly measured_watts: number | null;
  readonly max_temp_c: number | null;
  readonly unconfirmed: number;
  /** Miners whose slots the agent cannot own: they may hash elsewhere when denied. */
  readonly slots_not_owned: readonly string[];
  readonly reasons: readonly string[];
}

export interface AdoptRequest {
  readonly address: string;
  readonly firmware: Family | "auto";
  readonly credentialsFile: string | null;
  readonly apiPort?: number;
  readonly webPort?: number;
  readonly grpcPort?: number;
}

export function startFleet(
  ctx: AgentContext,
  o: {
    readonly drivers: AgentDrivers;
    /** Where the Stratum proxy is bound (the default for the slots). */
    readonly stratum: { readonly host: string; readonly port: number };
  },
): AgentFleet {
  const log = ctx.log.child({ component: "fleet" });
  const inventory = Inventory.open(ctx.stateDir, ctx.clock);
  const intervalMs = ctx.config.fleet.read_interval_s * 1000;
  const credentialsOf = (m: FleetMiner): Credentials | null =>
    m.credentialsFile === null ? null : loadCredentials(m.credentialsFile);
  const driverFor = (m: FleetMiner) =>
    o.drivers.host.driver(m.family, m.endpoint, credentialsOf(m), DEFAULT_LIMITS);
  const endpoints = agentEndpoints(ctx, o.stratum);
  if (endpoints.length === 0) {
    log.warn(
      "fleet.endpoints is empty and stratum.listen names no address: adopted miners' pool slots are left as they are",
    );
  }

  let history: FleetHistory = EMPTY_HISTORY;
  let stopped = false;
  const executor = new FleetExecutor({
    store: inventory,
    miner: (id) => inventory.get(id),
    driverFor,
    clock: ctx.clock,
    timers: ctx.timers,
    blocked: (id) => reader.blocked(id),
    onEvent: (e: FleetActionEvent) => {
      ctx.audit.append({ ...e });
      if (e.result === "failed") log.warn({ ...e }, "a fleet action was not confirmed");
    },
    onWriteError: (err) => log.error({ err }, "the fleet's pending actions could not be written"),
  });
  const reader: FleetReader = new FleetReader({
    miners: () => inventory.list(),
    driverFor,
    pending: (id) => inventory.pending(id).map((p) => p.action),
    clock: ctx.clock,
    timers: ctx.timers,
    intervalMs,
    onRound: () => {
      // Nothing adopted: no facts changed, nothing to decide again.
      if (inventory.list().length === 0) return;
      // fresh facts first, then the machines follow the decision made on them
      void ctx.engine.refresh("fleet read").finally(() => replan("read"));
    },
  });

  const policy = (): FleetPolicy => {
    const e = ctx.dataPath.effective();
    const rules = ctx.engine.documents().consent?.payload.rules;
    return {
      mining: { allow: e.allow, reasons: e.reasons },
      nextChangeAt: ctx.engine.current().nextChangeAt,
      allowAfterNextChange: null,
      maxWatts: rules?.max_watts ?? null,
      maxTempC: rules?.max_temp_c ?? null,
      agentEndpoints: endpoints,
    };
  };

  const replan = (why: string) => {
    if (stopped || inventory.list().length === 0) return;
    const p = plan(policy(), reader.view(), ctx.clock.now(), {
      history,
      readIntervalMs: intervalMs,
    });
    history = p.history;
    // Without the agent's own address there is nothing safe to write into a slot.
    const actions =
      endpoints.length === 0 ? p.actions.filter((a) => a.kind !== "setPools") : p.actions;
    if (actions.length > 0) {
      log.info({ why, actions: actions.map((a) => `${a.kind} ${a.miner}`) }, "fleet plan");
      executor.submit(actions);
    }
  };

  executor.resume();
  reader.start();
  ctx.dataPath.onChange(() => replan("decision"));

  function summarize(): FleetSummary {
    const v = reader.view();
    const f = fleetFacts(v, ctx.clock.now(), intervalMs);
    const modes: Record<string, number> = {};
    for (const m of inventory.list()) {
      const st = v.states[m.id];
      const mode = st?.reading == null || st.lastError !== null ? "unread" : st.reading.mode;
      modes[mode] = (modes[mode] ?? 0) + 1;
    }
    return {
      adopted: inventory.list().length,
      modes,
      measured_watts: f.watts?.value ?? null,
      max_temp_c: f.temp_c?.max ?? null,
      unconfirmed: executor.unconfirmed().length,
      slots_not_owned: inventory
        .list()
        .filter((m) => m.slots === "not_owned")
        .map((m) => m.id),
      reasons: f.reasons,
    };
  }

  return {
    facts: () => {
      if (inventory.list().length === 0) return {};
      const f = fleetFacts(reader.view(), ctx.clock.now(), intervalMs);
      return {
        ...(f.watts === undefined ? {} : { watts: f.watts }),
        ...(f.temp_c === undefined ? {} : { temp_c: f.temp_c }),
      };
    },
    view: () => {
      const v = reader.view();
      const f = fleetFacts(v, ctx.clock.now(), intervalMs);
      return {
        endpoints,
        miners: inventory.list().map((m) => ({ ...m, state: v.states[m.id] ?? null })),
        unconfirmed: executor.unconfirmed(),
        facts: f,
      };
    },
    adopt: async (r) => {
      const endpoint: MinerEndpoint = {
        host: r.address,
        ...(r.apiPort === undefined ? {} : { apiPort: r.apiPort }),
        ...(r.webPort === undefined ? {} : { webPort: r.webPort }),
        ...(r.grpcPort === undefined ? {} : { grpcPort: r.grpcPort }),
      };
      const credentials = r.credentialsFile === null ? null : loadCredentials(r.credentialsFile);
      const identity = await o.drivers.host.detect(endpoint, credentials, r.firmware);
      const reading = await o.drivers.host
        .driver(identity.family, endpoint, credentials, DEFAULT_LIMITS)
        .read();
      const adopted = inventory.adopt({
        identity,
        endpoint,
        credentialsFile: r.credentialsFile,
        ownerWorker: ctx.workerId,
        previousSlots: reading.pools,
      });
      ctx.audit.append({
        type: "fleet.adopted",
        miner: adopted.miner.id,
        family: adopted.miner.family,
        model: adopted.miner.model,
        mac: adopted.miner.mac,
        address: r.address,
        created: adopted.created,
        moved: adopted.moved,
        slots: adopted.miner.slots,
      });
      await reader.readOnce();
      replan("adopted");
      return { miner: adopted.miner, created: adopted.created, moved: adopted.moved };
    },
    forget: async (id) => {
      const miner = inventory.get(id);
      if (miner === undefined) {
        throw new AgentdError("AGENTD_E_API_NOT_FOUND", `no adopted miner ${JSON.stringify(id)}`);
      }
      executor.forget(id);
      const saved = inventory.forget(id);
      // The slots it had before adoption go back (their passwords were never readable: "x").
      let restored: string = "nothing saved";
      if (saved !== null && saved.slots.length > 0 && miner.slots === "owned") {
        try {
          await driverFor(miner).setPools(
            saved.slots.map((s) => ({ url: s.url, user: s.user, password: "x" })),
          );
          restored = "restored";
        } catch (err) {
          restored = `not restored: ${isAgentdError(err) ? err.code : "error"}`;
        }
      }
      ctx.audit.append({ type: "fleet.forgotten", miner: id, slots: restored });
      return { forgotten: id, previous_slots: restored };
    },
    summary: () => summarize(),
    forHeartbeat: () => {
      if (inventory.list().length === 0) return undefined;
      const f = summarize();
      return {
        adopted: f.adopted,
        modes: f.modes,
        measured_watts: f.measured_watts,
        max_temp_c: f.max_temp_c,
        unconfirmed: f.unconfirmed,
        slots_not_owned: f.slots_not_owned.length,
      };
    },
    replan,
    stop: async () => {
      stopped = true;
      await reader.stop();
      executor.close();
    },
  };
}

/** `fleet.endpoints`, else the proxy's bound address when it is one miners can reach. */
function agentEndpoints(
  ctx: AgentContext,
  bound: { readonly host: string; readonly port: number },
): string[] {
  const given = ctx.config.fleet.endpoints
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (given.length > 0) return given;
  const { host, port } = bound;
  if (host === "0.0.0.0" || host === "::" || port === 0) return [];
  return [`stratum+tcp://${host.includes(":") ? `[${host}]` : host}:${port}`];
}

export function isFamilyOrAuto(v: unknown): v is Family | "auto" {
  return v === "auto" || (FAMILIES as readonly unknown[]).includes(v);
}
