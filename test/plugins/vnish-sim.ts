/** A simulated VNish miner (REST and 4028) on real sockets, on the test's fake time. */
import { afterEach } from "vitest";
import type { MinerEndpoint } from "../../plugins/driver.ts";
import { type VnishFault, VnishSim } from "../../sim/asic/vnish-rest.ts";
import type { SteppedTime } from "./antminer-sim.ts";

export function useVnishSims(time: () => SteppedTime) {
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const s of stops.splice(0)) await s();
  });
  return async (
    o: { fault?: VnishFault; password?: string } = {},
  ): Promise<{ sim: VnishSim; endpoint: MinerEndpoint }> => {
    const sim = new VnishSim({ clock: time().clock, ...o });
    await sim.listen();
    stops.push(() => sim.close());
    return { sim, endpoint: { host: "127.0.0.1", apiPort: sim.apiPort, webPort: sim.webPort } };
  };
}
