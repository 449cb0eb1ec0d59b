/**
 * Which driver drives which firmware family. A placeholder with the registry's exact
 * signatures, so that the driver host (plugins/host/) compiles and is tested on its own; the
 * drivers' branch replaces this file with the real one. The host depends on these two
 * functions only.
 */
import { AgentdError } from "../lib/errors.ts";
import type { DriverContext, Family, MinerDriver, MinerEndpoint } from "./driver.ts";

export function createDriver(
  family: Family,
  endpoint: MinerEndpoint,
  _ctx: DriverContext,
): MinerDriver {
  throw new AgentdError("AGENTD_E_MINER_UNKNOWN_FIRMWARE", `no driver for ${family} yet`, {
    context: { family, host: endpoint.host },
  });
}

export async function detectFamily(endpoint: MinerEndpoint, _ctx: DriverContext): Promise<Family> {
  throw new AgentdError("AGENTD_E_MINER_UNKNOWN_FIRMWARE", "no driver can detect a family yet", {
    context: { host: endpoint.host },
  });
}
