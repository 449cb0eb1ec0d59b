import { describe, expect, it } from "vitest";
import { type FleetActionEvent, FleetExecutor } from "../../fleet/executor.ts";
import { Inventory } from "../../fleet/inventory.ts";
import { FleetReader } from "../../fleet/reader.ts";
import type { FleetMiner } from "../../fleet/types.ts";
import { AgentdError } from "../../lib/errors.ts";
import { AntminerS19Driver } from "../../plugins/antminer/s19.ts";
import type { MeterSpec, MinerDriver } from "../../plugins/driver.ts";
import {
  context,
  type SimAntminer,
  type SteppedTime,
  steppedTime,
  useSimAntminers,
} from "../plugins/antminer-sim.ts";
import { useTmpDir } from "../support/tmp.ts";

let time: SteppedTime = steppedTime();
const sim = useSimAntminers(() => time);
const tmp = useTmpDir("agentd-fleet-reader-");

async function adopt(inv: Inventory, s: SimAntminer): Promise<FleetMiner> {
  const d = new AntminerS19Driver(s.endpoint, context(time));
  return inv.adopt({
    identity: await d.detect(),
    endpoint: s.endpoint,
    credentialsFile: null,
    ownerWorker: "alice",
    previousSlots: [],
  }).miner;
}

const METER: MeterSpec = { id: "m1", url: "http://meter", pointer: "/w", feeds: ["x"] };

describe("fleet reader", () => {
  it("reads each adopted miner and meter: the reading, when, no error", async () => {
    time = steppedTime();
    const s = await sim("s19", { id: "s19-r1" });
    const inv = Inventory.open(tmp(), time.clock);
    const m = await adopt(inv, s);
    let meterCalls = 0;
    const reader = new FleetReader({
      miners: () => inv.list(),
      driverFor: (x) => new AntminerS19Driver(x.endpoint, context(time)),
      meters: () => [METER, { ...METER, id: "m2" }],
      readMeter: async (spec) => {
        meterCalls++;
        if (spec.id === "m2") throw new AgentdError("AGENTD_E_METER_READ", "no watts");
        return {
          id: spec.id,
          at: time.clock.now(),
          watts: 3100,
          provenance: "measured",
          feeds: ["x"],
        };
      },
      pending: () => [{ miner: m.id, kind: "sleep", why: "t" }],
      clock: time.clock,
      timers: time.timers,
      intervalMs: 30_000,
    });
    await reader.readOnce();
    const st = reader.state(m.id);
    expect(st.lastError).toBeNull();
    expect(st.readAt).toBe(time.clock.now());
    expect(st.reading?.hashrateGhs).toBe(95_000);
    expect(st.pending).toEqual([{ miner: m.id, kind: "sleep", why: "t" }]);
    expect(reader.blocked(m.id)).toBeNull();
    const view = reader.view();
    expect(view.miners.map((x) => x.id)).toEqual([m.id]);
    expect(
      view.meters.map((x) => [x.spec.id, x.reading?.watts ?? null, x.lastError?.code ?? null]),
    ).toEqual([
      ["m1", 3100, null],
      ["m2", null, "AGENTD_E_METER_READ"],
    ]);
    // The interval reads again on (fake) time.
    reader.start();
    await reader.readOnce();
    await time.advance(30_000);
    await reader.readOnce();
    await reader.stop();
    expect(meterCalls).toBeGreaterThanOrEqual(6);
    expect(reader.state(m.id).readAt).toBe(time.clock.now());
  });

  it("another miner at the address: error state, old reading kept, never acted on", async () => {
    time = steppedTime();
    const a = await sim("s19", { id: "s19-adopted" });
    const b = await sim("s19", { id: "s19-stranger" });
    const inv = Inventory.open(tmp(), time.clock);
    const m = await adopt(inv, a);
    const reader = new FleetReader({
      miners: () => inv.list(),
      driverFor: (x) => new AntminerS19Driver(x.endpoint, context(time)),
      clock: time.clock,
      timers: time.timers,
      intervalMs: 30_000,
    });
    await reader.readOnce();
    const goodAt = reader.state(m.id).readAt;
    expect(goodAt).not.toBeNull();
    // The lease moved: the stranger now answers where the adopted miner was.
    inv.updateEndpoint(m.id, b.endpoint);
    await time.advance(30_000);
    await reader.readOnce();
    const st = reader.state(m.id);
    expect(st.lastError?.code).toBe("AGENTD_E_MINER_IDENTITY_CHANGED");
    expect(st.lastError?.message).toContain(b.miner.mac);
    expect(st.readAt).toBe(goodAt);
    expect(reader.blocked(m.id)?.code).toBe("AGENTD_E_MINER_IDENTITY_CHANGED");

    const events: FleetActionEvent[] = [];
    const sent: string[] = [];
    const exec = new FleetExecutor({
      store: inv,
      miner: (id) => inv.get(id),
      driverFor: (x): MinerDriver => {
        sent.push(x.id);
        return new AntminerS19Driver(x.endpoint, context(time));
      },
      clock: time.clock,
      timers: time.timers,
      blocked: (id) => reader.blocked(id),
      onEvent: (e) => events.push(e),
    });
    exec.submit([{ miner: m.id, kind: "sleep", why: "denied" }]);
    for (let i = 0; i < 10 && events.length === 0; i++) await new Promise((r) => setImmediate(r));
    expect(events[0]).toMatchObject({ result: "failed", code: "AGENTD_E_MINER_IDENTITY_CHANGED" });
    expect(sent).toEqual([]);
    expect(b.web.writes).toBe(0);
    expect(b.miner.hashing).toBe(true);
    exec.close();

    // Unreachable now: still blocked, a timeout does not vouch for the machine.
    inv.updateEndpoint(m.id, { host: "127.0.0.1", apiPort: 1, webPort: 1 });
    await reader.readOnce();
    expect(reader.state(m.id).lastError?.code).not.toBe("AGENTD_E_MINER_IDENTITY_CHANGED");
    expect(reader.blocked(m.id)?.code).toBe("AGENTD_E_MINER_IDENTITY_CHANGED");

    // The adopted miner found again (adopt by its MAC at its new address): readable again.
    inv.updateEndpoint(m.id, a.endpoint);
    await reader.readOnce();
    expect(reader.state(m.id).lastError).toBeNull();
    expect(reader.blocked(m.id)).toBeNull();
  });
});
