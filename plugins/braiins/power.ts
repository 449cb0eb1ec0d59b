/**
 * The power targets the driver asks Braiins OS for. The miner's own bounds come from its
 * ConfigurationService.GetConstraints, which bos.proto does not carry (yet): these are wide
 * sanity bounds (no ASIC it runs on draws under 100 W or over 20 kW), and a target the
 * miner clamps or refuses inside them is caught by the read-back, never reported as done.
 */
import { AgentdError } from "../../lib/errors.ts";

export const POWER_TARGET_RANGE = Object.freeze({ minW: 100, maxW: 20_000 });

export function checkWatts(watts: number): void {
  const { minW, maxW } = POWER_TARGET_RANGE;
  if (!Number.isInteger(watts) || watts < minW || watts > maxW) {
    throw new AgentdError(
      "AGENTD_E_USAGE",
      `setPowerTarget: a whole number of watts from ${minW} to ${maxW}, got ${watts}`,
    );
  }
}
