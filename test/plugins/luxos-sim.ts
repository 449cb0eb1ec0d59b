/** A simulated LuxOS miner on a real socket (port 0), on the test's fake time. */
import { join } from "node:path";
import { afterEach } from "vitest";
import type { MinerEndpoint } from "../../plugins/driver.ts";
import { type LuxosFault, LuxosSim } from "../../sim/asic/luxos-api.ts";
import type { SteppedTime } from "./antminer-sim.ts";

export const LUXOS_CAPTURES = join(import.meta.dirname, "../fixtures/captures/luxos");

export function useLuxosSims(time: () => SteppedTime) {
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const s of stops.splice(0)) await s();
  });
  return async (
    fault: LuxosFault | null = null,
  ): Promise<{ sim: LuxosSim; endpoint: MinerEndpoint }> => {
    const sim = new LuxosSim({ clock: time().clock, capturesDir: LUXOS_CAPTURES, fault });
    await sim.listen();
    stops.push(() => sim.close());
    return { sim, endpoint: { host: "127.0.0.1", apiPort: sim.port } };
  };
}
