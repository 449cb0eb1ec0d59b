/** Identities and a miner record for the fleet tests. */
import type { Identity, PoolSlot } from "../../plugins/driver.ts";

export const S19_CAPS: Identity["capabilities"] = {
  pools: "yes",
  sleep: "yes",
  powerModes: ["normal", "low"],
  powerTarget: null,
  reboot: "yes",
  power: "none",
};

export function s19Identity(over: Partial<Identity> = {}): Identity {
  return {
    family: "antminer-s19",
    model: "Antminer S19",
    firmware: "BMMiner 1.0.0",
    mac: "02:11:22:3f:2a:1c",
    serial: "JYZZA1234567",
    capabilities: S19_CAPS,
    verifiedOnHardware: false,
    ...over,
  };
}

export const OWNER_SLOTS: readonly PoolSlot[] = [
  {
    index: 0,
    url: "stratum+tcp://pool.example:3333",
    user: "owner.rig1",
    status: "alive",
    active: true,
  },
  {
    index: 1,
    url: "stratum+tcp://backup.example:443",
    user: "owner.rig1",
    status: "alive",
    active: false,
  },
];
