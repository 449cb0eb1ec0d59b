/**
 * Whether ESP-Miner answers at an address: `GET /api/system/info` is JSON with `ASICModel`
 * (as pyasic's factory tells a Bitaxe, pyasic/miners/factory.py `get_miner_model_bitaxe`).
 * It has no 4028 API, so the registry asks this when 4028 is closed.
 */
import { isAgentdError } from "../../lib/errors.ts";
import type { DriverContext, MinerEndpoint } from "../driver.ts";
import { AxeIo } from "./io.ts";

export async function isBitaxe(endpoint: MinerEndpoint, ctx: DriverContext): Promise<boolean> {
  try {
    await new AxeIo(endpoint, ctx).info();
    return true;
  } catch (err) {
    // Another firmware's web UI (404, a digest challenge, HTML) is simply not ESP-Miner.
    if (isAgentdError(err) && err.code !== "AGENTD_E_MINER_REPLY_TOO_LARGE") return false;
    throw err;
  }
}
