import { AgentdError } from "../lib/errors.ts";
import type { Identity } from "./driver.ts";

/** What a miner is known by: its MAC and serial, never its address. */
export interface KnownMiner {
  readonly mac: string | null;
  readonly serial: string | null;
}

/**
 * Whether the miner that answered is the one known at that address: the same MAC, or the same
 * serial, where either side reports one (firmware that reports neither cannot be told apart,
 * and a known miner without either proves nothing: both are refused, fail closed). A DHCP move
 * changes the address, not this; another machine behind a known address is
 * AGENTD_E_MINER_IDENTITY_CHANGED.
 */
export function assertSameMiner(known: KnownMiner, found: Identity): void {
  const mac = known.mac !== null && found.mac !== null ? known.mac === found.mac : null;
  const serial =
    known.serial !== null && found.serial !== null ? known.serial === found.serial : null;
  if (mac === true || serial === true) {
    if (mac !== false && serial !== false) return;
  }
  throw new AgentdError(
    "AGENTD_E_MINER_IDENTITY_CHANGED",
    mac === null && serial === null
      ? "the miner reports no MAC or serial the known one can be matched by"
      : `another miner answers there (MAC ${found.mac ?? "unknown"}, serial ${found.serial ?? "unknown"})`,
    { context: { known_mac: known.mac, found_mac: found.mac } },
  );
}
