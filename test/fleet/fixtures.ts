import type { FleetMiner, FleetPolicy, FleetView, MinerState } from "../../fleet/types.ts";
import type { Capabilities, MeterReading, Reading } from "../../plugins/driver.ts";

/** Small builders for fleet views: a miner, its reading, a meter, a policy. */

export const T0 = Date.parse("2025-06-01T12:00:00Z");
export const AGENT = ["stratum+tcp://10.0.0.2:3333", "stratum+tcp://10.0.0.3:3333"];

export const CAPS: Capabilities = {
  pools: "yes",
  sleep: "yes",
  powerModes: [],
  powerTarget: null,
  reboot: "yes",
  power: "none",
};

export function miner(id: string, over: Partial<FleetMiner> = {}): FleetMiner {
  return {
    id,
    family: "antminer-s19",
    endpoint: { host: `10.0.1.${id.length}` },
    mac: null,
    serial: null,
    model: "Antminer S19",
    firmware: "x",
    capabilities: CAPS,
    worker: `owner.${id}`,
    credentialsFile: null,
    slots: "owned",
    nameplateW: 3000,
    nameplateJth: 30,
    adoptedAt: 0,
    ...over,
  };
}

export function reading(m: FleetMiner, at: number, over: Partial<Reading> = {}): Reading {
  return {
    at,
    hashrateGhs: 100_000,
    boards: [{ index: 1, hashrateGhs: 100_000, chips: 76, pcbTempC: [60], chipTempC: [70, 72] }],
    fans: [],
    power: null,
    mode: "normal",
    pools: AGENT.map((url, index) => ({
      index,
      url,
      user: m.worker,
      status: "alive" as const,
      active: index === 0,
    })),
    uptimeS: 100,
    errors: [],
    ...over,
  };
}

export const ASLEEP: Partial<Reading> = { mode: "sleep", hashrateGhs: 0, boards: [] };

export function state(r: Reading | null, over: Partial<MinerState> = {}): MinerState {
  return { reading: r, readAt: r?.at ?? null, lastError: null, pending: [], ...over };
}

export function meter(id: string, feeds: string[], watts: number, at: number) {
  const reading: MeterReading = { id, at, watts, provenance: "measured", feeds };
  return { spec: { id, url: `http://m/${id}`, pointer: "/w", feeds }, reading, lastError: null };
}

export function view(
  pairs: [FleetMiner, MinerState][],
  meters: FleetView["meters"] = [],
): FleetView {
  return {
    miners: pairs.map(([m]) => m),
    states: Object.fromEntries(pairs.map(([m, s]) => [m.id, s])),
    meters,
  };
}

export function policy(over: Partial<FleetPolicy> = {}): FleetPolicy {
  return {
    mining: { allow: true, reasons: [] },
    nextChangeAt: null,
    allowAfterNextChange: null,
    maxWatts: null,
    maxTempC: null,
    agentEndpoints: AGENT,
    ...over,
  };
}

export const measured = (watts: number) =>
  ({ watts, provenance: "measured", source: "firmware" }) as const;
export const estimated = (watts: number) =>
  ({ watts, provenance: "estimated", source: "firmware" }) as const;
