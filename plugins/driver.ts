/**
 * The one interface every ASIC firmware family is driven through (plugins/README.md).
 *
 * A driver sees one miner through the management surfaces its firmware really has (the
 * cgminer API on TCP 4028, the web UI's CGI, a REST API) and reports what it reads; it carries
 * out actions the agent asks for and proves each one by reading it back. It decides nothing:
 * the policy guard decides, the fleet manager (issue 18) plans, a driver only reports and acts.
 *
 * Failures are `AgentdError`s with the `AGENTD_E_MINER_*` codes (docs/errors.md): one miner's
 * failure is that miner's error and never touches another.
 */
import type { Clock } from "../lib/clock.ts";
import type { Timers } from "../lib/timers.ts";

/**
 * The firmware families with a driver. Part 1 (issue 16): stock Antminer S9 and S19; part 2
 * (issue 17): Braiins OS (bosminer/BOSer), LuxOS, VNish, and ESP-Miner (Bitaxe, HTTP only).
 */
export const FAMILIES = [
  "antminer-s9",
  "antminer-s19",
  "braiins-os",
  "luxos",
  "vnish",
  "bitaxe",
] as const;
export type Family = (typeof FAMILIES)[number];

/** Where a miner answers. Ports default to the firmware's (4028, 80). */
export interface MinerEndpoint {
  readonly host: string;
  /** The cgminer-style API (4028 on hardware). */
  readonly apiPort?: number;
  /** The web UI (80 on hardware). */
  readonly webPort?: number;
  /** Braiins OS's gRPC API (50051 on hardware). */
  readonly grpcPort?: number;
}

/**
 * What a web UI or API wants. Comes from a 0600 file per miner, or the family's default
 * (plugins/credentials.ts); never logged (the logger redacts `password` and `token` by name).
 */
export interface Credentials {
  readonly username: string;
  readonly password: string;
}

/**
 * Whether the agent can do something on this miner: `yes`; `no` (the firmware has no such
 * thing: the stock S9 cannot sleep); `not_owned` (the firmware has it but refuses this host:
 * 4028 "access denied", code 45).
 */
export type Support = "yes" | "no" | "not_owned";

export type PowerMode = "normal" | "low" | "high";

export interface Capabilities {
  readonly pools: Support;
  readonly sleep: Support;
  /** The power modes the firmware offers (empty: none). */
  readonly powerModes: readonly PowerMode[];
  /** A power target in watts, when the firmware takes one (null: it does not). */
  readonly powerTarget: { readonly minW: number; readonly maxW: number } | null;
  readonly reboot: Support;
  /** Whether the firmware reports power, and how (stock Antminers report none). */
  readonly power: PowerProvenance | "none";
}

/** Who the miner is: MAC and serial identify it, never its address (DHCP moves it). */
export interface Identity {
  readonly family: Family;
  /** As the firmware names it: "Antminer S9", "Antminer S19 Pro". */
  readonly model: string;
  /** The firmware's own version string(s), as it reports them. */
  readonly firmware: string;
  /** Lower-case, colon-separated; null when the firmware does not say. */
  readonly mac: string | null;
  readonly serial: string | null;
  readonly capabilities: Capabilities;
  /**
   * Whether every request and reply this driver relies on was checked against replies
   * captured from real hardware (plugins/README.md): false says so in `agentd miners`.
   */
  readonly verifiedOnHardware: boolean;
}

/** `measured` by a meter or a PSU; `estimated` by firmware arithmetic. Never summed together. */
export type PowerProvenance = "measured" | "estimated";

export interface Power {
  readonly watts: number;
  readonly provenance: PowerProvenance;
  /** What measured or estimated it: "firmware", or a meter's id. */
  readonly source: string;
}

export interface Board {
  /** The firmware's chain number (the S9's are 6–8, the S19's 1–3). */
  readonly index: number;
  readonly hashrateGhs: number | null;
  readonly chips: number | null;
  readonly pcbTempC: readonly number[];
  readonly chipTempC: readonly number[];
}

export interface Fan {
  readonly index: number;
  readonly rpm: number;
}

export type PoolStatus = "alive" | "dead" | "disabled" | "unknown";

/** One of the firmware's pool slots, in priority order (index 0 first). */
export interface PoolSlot {
  readonly index: number;
  readonly url: string;
  readonly user: string;
  readonly status: PoolStatus;
  /** The slot it is hashing to now. */
  readonly active: boolean;
}

/** What the agent asks a slot to hold. */
export interface PoolTarget {
  readonly url: string;
  readonly user: string;
  readonly password: string;
}

export type MinerMode = "normal" | "sleep" | "low" | "high" | "unknown";

export interface Reading {
  /** When it was read, ms since the epoch on the injected clock. */
  readonly at: number;
  /** The firmware's short-window hashrate (5 s on bmminer). */
  readonly hashrateGhs: number | null;
  readonly boards: readonly Board[];
  readonly fans: readonly Fan[];
  /** null: the firmware reports none (stock Antminers: a meter must measure it). */
  readonly power: Power | null;
  readonly mode: MinerMode;
  readonly pools: readonly PoolSlot[];
  readonly uptimeS: number | null;
  /** What the firmware itself reports as wrong: dead chips, a stopped fan, hardware errors. */
  readonly errors: readonly string[];
}

/** A write that was read back and held. */
export interface Confirmed {
  readonly action: ActionName;
  /** When the read-back first showed it. */
  readonly confirmedAt: number;
  /** How many read-backs it took. */
  readonly reads: number;
}

export type ActionName =
  | "setPools"
  | "sleep"
  | "wake"
  | "setPowerMode"
  | "setPowerTarget"
  | "reboot";

export interface MinerDriver {
  readonly family: Family;
  detect(): Promise<Identity>;
  read(): Promise<Reading>;
  /**
   * Actions resolve only once read back (`Confirmed`); an action the firmware lacks rejects
   * `AGENTD_E_MINER_UNSUPPORTED`, one it acknowledged but did not apply before the deadline
   * `AGENTD_E_MINER_NOT_CONFIRMED`.
   */
  setPools(slots: readonly PoolTarget[]): Promise<Confirmed>;
  sleep(): Promise<Confirmed>;
  wake(): Promise<Confirmed>;
  setPowerMode(mode: PowerMode): Promise<Confirmed>;
  setPowerTarget(watts: number): Promise<Confirmed>;
  reboot(): Promise<Confirmed>;
}

/** Bounds every driver applies to every request. */
export interface DriverLimits {
  /** A reply longer than this is cut off unread (AGENTD_E_MINER_REPLY_TOO_LARGE). */
  readonly maxReplyBytes: number;
  /** Connect plus the whole reply. */
  readonly requestTimeoutMs: number;
  /** How long a write may take to show in a read-back (the S19 can take ~20 s). */
  readonly confirmDeadlineMs: number;
  /** Between read-backs. */
  readonly confirmIntervalMs: number;
}

export const DEFAULT_LIMITS: DriverLimits = Object.freeze({
  maxReplyBytes: 1024 * 1024,
  requestTimeoutMs: 10_000,
  confirmDeadlineMs: 60_000,
  confirmIntervalMs: 2_000,
});

/** What a driver is given: the clock and timers are injected, as everywhere (lib/timers.ts). */
export interface DriverContext {
  readonly clock: Clock;
  readonly timers: Timers;
  readonly limits: DriverLimits;
  /** null: the family's default (plugins/credentials.ts). */
  readonly credentials: Credentials | null;
}

/**
 * How a meter is read: `http-json` (the default) a GET and a JSON pointer; `shelly-gen2` a
 * Shelly Gen2+ switch's `Switch.GetStatus` (plugins/meter/shelly.ts).
 */
export const METER_KINDS = ["http-json", "shelly-gen2"] as const;
export type MeterKind = (typeof METER_KINDS)[number];

/** A generic HTTP JSON power meter: a URL, a JSON pointer to watts, the miners it feeds. */
export interface HttpJsonMeterSpec {
  readonly kind?: "http-json";
  readonly id: string;
  readonly url: string;
  /** RFC 6901, e.g. "/emeters/0/power". */
  readonly pointer: string;
  /** The miners (by id) whose power this meter measures, together. */
  readonly feeds: readonly string[];
  /** Multiplies the number read (a meter reporting mW: 0.001). Default 1. */
  readonly scale?: number;
}

/** A Shelly Gen2+ smart plug or relay: its base URL and which switch feeds the miners. */
export interface ShellyMeterSpec {
  readonly kind: "shelly-gen2";
  readonly id: string;
  /** The device, `http://host[:port]`: the RPC path is the driver's. */
  readonly url: string;
  /** The Switch component's id (default 0; a Pro 4PM has 0–3). */
  readonly channel?: number;
  readonly feeds: readonly string[];
}

export type MeterSpec = HttpJsonMeterSpec | ShellyMeterSpec;

export interface MeterReading {
  readonly id: string;
  readonly at: number;
  readonly watts: number;
  readonly provenance: "measured";
  readonly feeds: readonly string[];
}
