/**
 * The fleet manager's vocabulary (issue 18): what the agent knows about each adopted miner,
 * what it read, and what the planner asks the executor to do. Data only: the planner is a pure
 * function of these, the executor applies its actions through the drivers, the inventory
 * persists the miners (ARCHITECTURE.md, `fleet/`).
 */
import type {
  Capabilities,
  Family,
  MeterReading,
  MeterSpec,
  MinerEndpoint,
  PoolTarget,
  PowerMode,
  Reading,
} from "../plugins/driver.ts";

/** One adopted miner, as the inventory keeps it (persisted). */
export interface FleetMiner {
  /** Stable id the operator sees (`agentd miners forget ID`): derived from MAC or serial. */
  readonly id: string;
  readonly family: Family;
  readonly endpoint: MinerEndpoint;
  /** What identifies it (plugins/identity.ts): a DHCP move keeps these. */
  readonly mac: string | null;
  readonly serial: string | null;
  readonly model: string;
  readonly firmware: string;
  readonly capabilities: Capabilities;
  /** The worker name its slots carry (`<owner worker>.<id>`). */
  readonly worker: string;
  /** A 0600 credentials file, or null for the family's default. */
  readonly credentialsFile: string | null;
  /**
   * `owned`: every slot points at the agent; `not_owned`: the firmware refuses this host
   * (it may hash elsewhere when denied, and status says so).
   */
  readonly slots: "owned" | "not_owned";
  /** The model's nameplate power in watts (wake only with this much measured headroom). */
  readonly nameplateW: number | null;
  /** The model's nameplate efficiency, J/TH (least efficient sleep first); null: unknown. */
  readonly nameplateJth: number | null;
  readonly adoptedAt: number;
  /**
   * Whether its driver was checked against replies captured from real hardware
   * (plugins/README.md); `agentd miners` says "not verified on hardware" otherwise.
   */
  readonly verifiedOnHardware?: boolean;
}

/** The last read of one miner. */
export interface MinerState {
  readonly reading: Reading | null;
  /** When the last successful read was taken (ms); null: never. */
  readonly readAt: number | null;
  readonly lastError: {
    readonly code: string;
    readonly message: string;
    readonly at: number;
  } | null;
  /** Actions taken but not confirmed yet (the executor's pending list survives restarts). */
  readonly pending: readonly FleetAction[];
}

export interface MeterState {
  readonly spec: MeterSpec;
  readonly reading: MeterReading | null;
  readonly lastError: { readonly code: string; readonly at: number } | null;
}

/** What the planner sees of the fleet at one instant. */
export interface FleetView {
  readonly miners: readonly FleetMiner[];
  readonly states: Readonly<Record<string, MinerState>>;
  readonly meters: readonly MeterState[];
}

/** The parts of the owner's policy the fleet acts on, from the decision and the consent. */
export interface FleetPolicy {
  /** The policy guard's decision for mining (the local holds applied). */
  readonly mining: { readonly allow: boolean; readonly reasons: readonly string[] };
  /** When the decision changes by time alone (a window opens or closes), ms; null: never. */
  readonly nextChangeAt: number | null;
  /** Whether mining will be allowed at `nextChangeAt` (a window opening), when known. */
  readonly allowAfterNextChange: boolean | null;
  readonly maxWatts: number | null;
  readonly maxTempC: number | null;
  /**
   * Where every slot of every owned miner must point: the agent's own Stratum endpoints, in
   * order (the miner's worker name is set per miner). Nothing else stays in any slot.
   */
  readonly agentEndpoints: readonly string[];
}

/** A proposal from a plugin (an electricity-price scheduler): it may only ask for less. */
export interface Proposal {
  readonly source: string;
  /** Miners it wants asleep (or all: "*"). */
  readonly sleep?: readonly string[] | "*";
  /** A lower power cap than the consent's, in watts. */
  readonly maxWatts?: number;
}

export type FleetAction =
  | { readonly miner: string; readonly kind: "sleep"; readonly why: string }
  | { readonly miner: string; readonly kind: "wake"; readonly why: string }
  | {
      readonly miner: string;
      readonly kind: "setPools";
      readonly slots: readonly PoolTarget[];
      readonly why: string;
    }
  | {
      readonly miner: string;
      readonly kind: "setPowerMode";
      readonly mode: PowerMode;
      readonly why: string;
    }
  | {
      readonly miner: string;
      readonly kind: "setPowerTarget";
      readonly watts: number;
      readonly why: string;
    };

/** The facts the fleet gives the policy guard (DOCUMENTS.md section 6 shapes). */
export interface FleetFacts {
  /** Present only when every adopted miner not confirmed asleep is covered by one measurement. */
  readonly watts?: { readonly value: number; readonly source: "measured"; readonly at: string };
  /** The hottest chip of the fleet. */
  readonly temp_c?: { readonly max: number; readonly at: string };
  /** Why a fact is absent or stale, naming the miners (e.g. `fleet.watts_uncovered: s19-a`). */
  readonly reasons: readonly string[];
}
