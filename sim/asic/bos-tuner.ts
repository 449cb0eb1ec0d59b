/**
 * The Braiins OS tuner as the simulator keeps it: the power target (gRPC SetPowerTarget,
 * bos-grpc.ts) and what 4028 `tunerstatus` prints of it — `PowerLimit`, the firmware's
 * estimate `ApproximateMinerPowerConsumption`, and `TunerChainStatus` per board (the fields
 * pyasic reads, pyasic/miners/backends/braiins_os.py). With `ignoreRaises` (a fault seen on
 * some releases, PROTOCOLS.md section 4), or the `write-ignored` fault, a raise is acknowledged
 * and not applied.
 */
import type { SimMiner } from "./miner.ts";

export interface BosTuner {
  powerLimitW: number;
  ignoreRaises: boolean;
}

const tuners = new WeakMap<SimMiner, BosTuner>();

export function tunerOf(m: SimMiner): BosTuner {
  let t = tuners.get(m);
  if (!t) {
    t = { powerLimitW: m.profile.powerW, ignoreRaises: false };
    tuners.set(m, t);
  }
  return t;
}

/** Applies a target as the tuner does; returns what the firmware answers (always the ask). */
export function setPowerTarget(m: SimMiner, watts: number): number {
  const t = tunerOf(m);
  // The `write-ignored` fault (faults.ts) does the same from the CLI.
  const ignoring = t.ignoreRaises || m.conditions.has("write-ignored");
  if (!(ignoring && watts > t.powerLimitW)) t.powerLimitW = watts;
  return watts;
}

export function tunerStatusSection(m: SimMiner): Record<string, unknown>[] {
  const t = tunerOf(m);
  const hashing = m.hashing;
  // The firmware's arithmetic, not a meter: the nominal draw capped by the limit; idle, none.
  const base = hashing ? Math.min(m.profile.powerW, t.powerLimitW) : 0;
  const approx = hashing && m.varyPerRead ? base + (m.drift % 7) : base;
  return [
    {
      PowerLimit: t.powerLimitW,
      ApproximateMinerPowerConsumption: approx,
      TunerChainStatus: m.profile.chains.slots.map((slot) => ({
        HashchainIndex: slot,
        Status: m.conditions.has("overheat") ? "Overheated {chip 12}" : "Stable",
      })),
    },
  ];
}
