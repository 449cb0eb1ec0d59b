/**
 * What each simulated firmware says and how it looks (PROTOCOLS.md section 1 "Handshake
 * dialects", section 2 for the API). Data only: miner.ts runs the steps, api-sections.ts
 * renders the hardware.
 */

export const PROFILE_NAMES = ["s9", "s19", "bosminer", "bitaxe", "cpuminer"] as const;
export type ProfileName = (typeof PROFILE_NAMES)[number];

/**
 * One handshake message. `wait`: the firmware waits for the reply before sending the next
 * one (cgminer's subscribe and authorize do; Bitaxe pipelines everything).
 */
export type HandshakeStep =
  | { readonly kind: "configure"; readonly wait: boolean }
  | { readonly kind: "subscribe"; readonly wait: boolean }
  /** mining.extranonce.subscribe, only when the pool URL carries #xnsub. */
  | { readonly kind: "xnsub"; readonly wait: boolean }
  | { readonly kind: "authorize"; readonly wait: boolean }
  /** mining.suggest_difficulty, only when a difficulty to suggest is configured. */
  | { readonly kind: "suggest"; readonly wait: boolean }
  /** Bitmain's legacy rolling switch: mining.multi_version [1]. */
  | { readonly kind: "multi_version"; readonly wait: boolean };

/**
 * How the 6th mining.submit parameter carries the rolled version: BIP 310 `masked`
 * (rolled & mask), ESP-Miner's `xor` (rolled ^ job version), Bitmain multi_version `full`.
 */
export type VersionEncoding = "masked" | "xor" | "full";

/** Which 4028 API the firmware serves; null: none (Bitaxe has AxeOS HTTP, cpuminer its own). */
export type ApiFlavour = "bmminer-s9" | "bmminer-s19" | "bosminer" | null;

/** How the firmware stops hashing on request; "none": it cannot (stock S9). */
export type SleepKind = "none" | "sleep" | "pause";

export interface Profile {
  readonly name: ProfileName;
  /** VERSION[0].Type / STATS[0].Type. */
  readonly model: string;
  readonly userAgent: string;
  readonly handshake: readonly HandshakeStep[];
  /** mining.configure params, when the handshake has a configure step. */
  readonly configureParams?: readonly [readonly string[], Readonly<Record<string, unknown>>];
  /** cgminer 4.x: drop the pool when configure does not grant version rolling with a mask. */
  readonly requireRollingGrant: boolean;
  /** bosminer subscribes `[agent, null]`. */
  readonly subscribeNullSecond: boolean;
  /** cgminer family: a reconnect to the same pool subscribes `[agent, session id]`. */
  readonly resumesSession: boolean;
  /** The version bits the firmware would roll, before the pool's answer narrows them. */
  readonly requestedMask: number;
  readonly versionEncoding: VersionEncoding;
  /** ESP-Miner always sends the 6th submit parameter (0 when not rolling). */
  readonly alwaysSendVersion: boolean;
  /** Sent as mining.suggest_difficulty unless the user sets one (undefined: not sent). */
  readonly defaultSuggestDifficulty?: number;
  /** Nominal hashrate in GH/s: what the API reports while hashing. */
  readonly nominalGhs: number;
  readonly powerW: number;
  /** Hash boards: API slot numbers, chips per chain, board frequency (MHz). */
  readonly chains: {
    readonly slots: readonly number[];
    readonly chips: number;
    readonly freq: number;
  };
  /** Fan positions in the API (fan1..N) that carry a speed, and the RPM at rest. */
  readonly fans: {
    readonly slots: readonly number[];
    readonly total: number;
    readonly rpm: number;
  };
  /** Normal board (PCB) and chip temperatures in °C; the overheat fault raises these. */
  readonly temps: { readonly pcb: number; readonly chip: number; readonly limitChip: number };
  readonly api: ApiFlavour;
  /** STATUS[0].Description and VERSION fields. */
  readonly firmware: {
    readonly description: string;
    readonly version: Readonly<Record<string, string>>;
  };
  readonly sleep: SleepKind;
  /** S19: shares whose job difficulty is below the difficulty in force are counted as rejects. */
  readonly countsOldDifficultyAsReject: boolean;
}

const CGMINER_ORDER: readonly HandshakeStep[] = [
  { kind: "subscribe", wait: true },
  { kind: "xnsub", wait: false },
  { kind: "authorize", wait: true },
  { kind: "suggest", wait: false },
];

export const PROFILES: Readonly<Record<ProfileName, Profile>> = Object.freeze({
  s9: {
    name: "s9",
    model: "Antminer S9",
    userAgent: "bmminer/2.0.0",
    handshake: [...CGMINER_ORDER, { kind: "multi_version", wait: false }],
    requireRollingGrant: false,
    subscribeNullSecond: false,
    resumesSession: true,
    requestedMask: 0x1fffe000,
    versionEncoding: "full",
    alwaysSendVersion: false,
    nominalGhs: 13_500,
    powerW: 1323,
    chains: { slots: [6, 7, 8], chips: 63, freq: 650 },
    fans: { slots: [3, 6], total: 8, rpm: 5880 },
    temps: { pcb: 63, chip: 79, limitChip: 95 },
    api: "bmminer-s9",
    firmware: {
      description: "bmminer 2.0.0",
      version: {
        BMMiner: "2.0.0",
        API: "3.1",
        Miner: "16.8.1.3",
        CompileTime: "Fri Nov 17 17:37:49 CST 2017",
        Type: "Antminer S9",
      },
    },
    sleep: "none",
    countsOldDifficultyAsReject: false,
  },
  s19: {
    name: "s19",
    model: "Antminer S19",
    userAgent: "bmminer/1.0.0",
    handshake: [{ kind: "configure", wait: true }, ...CGMINER_ORDER],
    configureParams: [
      ["version-rolling"],
      { "version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2 },
    ],
    requireRollingGrant: true,
    subscribeNullSecond: false,
    resumesSession: true,
    requestedMask: 0x1fffe000,
    versionEncoding: "masked",
    alwaysSendVersion: false,
    nominalGhs: 95_000,
    powerW: 3250,
    chains: { slots: [1, 2, 3], chips: 76, freq: 675 },
    fans: { slots: [1, 2, 3, 4], total: 4, rpm: 4920 },
    temps: { pcb: 58, chip: 73, limitChip: 95 },
    api: "bmminer-s19",
    firmware: {
      description: "bmminer 1.0.0",
      version: {
        BMMiner: "1.0.0",
        API: "3.1",
        Miner: "uart_trans.1.3",
        CompileTime: "Mon Jun 15 14:25:45 CST 2020",
        Type: "Antminer S19",
      },
    },
    sleep: "sleep",
    countsOldDifficultyAsReject: true,
  },
  bosminer: {
    name: "bosminer",
    model: "Antminer S9",
    userAgent: "bOS_am1-s9-2022.09.27",
    handshake: [
      { kind: "configure", wait: true },
      { kind: "subscribe", wait: true },
      { kind: "authorize", wait: true },
      { kind: "suggest", wait: false },
    ],
    // The old BIP 310 draft's key, as bosminer still sends it.
    configureParams: [
      ["version-rolling"],
      { "version-rolling.bit-count": 2, "version-rolling.mask": "ffffffff" },
    ],
    requireRollingGrant: false,
    subscribeNullSecond: true,
    resumesSession: false,
    requestedMask: 0xffffffff,
    versionEncoding: "masked",
    alwaysSendVersion: false,
    nominalGhs: 13_500,
    powerW: 1250,
    chains: { slots: [6, 7, 8], chips: 63, freq: 650 },
    fans: { slots: [1, 2], total: 2, rpm: 4800 },
    temps: { pcb: 60, chip: 75, limitChip: 95 },
    api: "bosminer",
    firmware: {
      description: "BOSminer bosminer-plus 0.2.0",
      version: { BOSminer: "0.2.0-2022.09.27", API: "3.7", Type: "Antminer S9" },
    },
    sleep: "pause",
    countsOldDifficultyAsReject: false,
  },
  bitaxe: {
    name: "bitaxe",
    model: "Bitaxe Gamma",
    userAgent: "bitaxe/BM1370/v2.4.2",
    handshake: [
      { kind: "configure", wait: false },
      { kind: "subscribe", wait: false },
      { kind: "authorize", wait: false },
      { kind: "suggest", wait: false },
    ],
    configureParams: [["version-rolling"], { "version-rolling.mask": "ffffffff" }],
    requireRollingGrant: false,
    subscribeNullSecond: false,
    resumesSession: false,
    requestedMask: 0xffffffff,
    versionEncoding: "xor",
    alwaysSendVersion: true,
    // ESP-Miner's default stratum difficulty.
    defaultSuggestDifficulty: 1000,
    nominalGhs: 1_200,
    powerW: 17,
    chains: { slots: [1], chips: 1, freq: 525 },
    fans: { slots: [1], total: 1, rpm: 3600 },
    temps: { pcb: 48, chip: 55, limitChip: 70 },
    api: null,
    firmware: { description: "ESP-Miner v2.4.2", version: { "ESP-Miner": "v2.4.2" } },
    // ESP-Miner v2.14.0+ pauses (POST /api/system/pause, sim/asic/axeos.ts).
    sleep: "pause",
    countsOldDifficultyAsReject: false,
  },
  cpuminer: {
    name: "cpuminer",
    model: "cpuminer",
    userAgent: "cpuminer/2.5.1",
    handshake: [
      { kind: "configure", wait: true },
      { kind: "subscribe", wait: true },
      { kind: "authorize", wait: true },
    ],
    // min-bit-count as a string: the quirk a server must tolerate.
    configureParams: [
      ["version-rolling"],
      { "version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": "2" },
    ],
    requireRollingGrant: false,
    subscribeNullSecond: false,
    resumesSession: false,
    requestedMask: 0x1fffe000,
    versionEncoding: "masked",
    alwaysSendVersion: false,
    nominalGhs: 0.005,
    powerW: 65,
    chains: { slots: [0], chips: 1, freq: 0 },
    fans: { slots: [], total: 0, rpm: 0 },
    temps: { pcb: 45, chip: 55, limitChip: 90 },
    api: null,
    firmware: { description: "cpuminer 2.5.1", version: { cpuminer: "2.5.1" } },
    sleep: "none",
    countsOldDifficultyAsReject: false,
  },
});

export function isProfileName(s: string): s is ProfileName {
  return (PROFILE_NAMES as readonly string[]).includes(s);
}
