/**
 * The executor against simulated stock S19s through the real driver: the web UI answers a
 * write at once and applies it 5 s later, so every confirmation is a read-back on fake time.
 */
import { describe, expect, it } from "vitest";
import { type FleetActionEvent, FleetExecutor } from "../../fleet/executor.ts";
import { Inventory } from "../../fleet/inventory.ts";
import type { FleetMiner } from "../../fleet/types.ts";
import { AntminerS19Driver } from "../../plugins/antminer/s19.ts";
import {
  context,
  LIMITS,
  type SimAntminer,
  type SteppedTime,
  steppedTime,
  useSimAntminers,
} from "../plugins/antminer-sim.ts";
import { useTmpDir } from "../support/tmp.ts";

let time: SteppedTime = steppedTime();
const sim = useSimAntminers(() => time);
const tmp = useTmpDir("agentd-fleet-sim-");

async function setup(sims: readonly SimAntminer[]) {
  const inv = Inventory.open(tmp(), time.clock);
  const ids: string[] = [];
  for (const s of sims) {
    const d = new AntminerS19Driver(s.endpoint, context(time));
    const identity = await d.detect();
    const previousSlots = (await d.read()).pools;
    ids.push(
      inv.adopt({
        identity,
        endpoint: s.endpoint,
        credentialsFile: null,
        ownerWorker: "alice",
        previousSlots,
      }).miner.id,
    );
  }
  const events: FleetActionEvent[] = [];
  let notify = () => {};
  const exec = new FleetExecutor({
    store: inv,
    miner: (id) => inv.get(id),
    driverFor: (m: FleetMiner) => new AntminerS19Driver(m.endpoint, context(time)),
    clock: time.clock,
    timers: time.timers,
    concurrency: 2,
    backoff: { minMs: 7_000, maxMs: 60_000 },
    onEvent: (e) => {
      events.push(e);
      notify();
    },
  });
  /** Moves time one read-back interval each time a driver goes to sleep, until `done`. */
  const until = async (done: () => boolean) => {
    for (let i = 0; i < 500 && !done(); i++) {
      const event = new Promise<"event">((r) => {
        notify = () => r("event");
      });
      const slept = time.nextTimer(LIMITS.confirmIntervalMs).then(() => "sleep" as const);
      if ((await Promise.race([event, slept])) === "sleep") {
        await time.advance(LIMITS.confirmIntervalMs);
      }
    }
    expect(done()).toBe(true);
  };
  return { inv, ids, events, exec, until };
}

describe("fleet executor with simulated S19s", () => {
  it("pools then sleep on one miner, a sleep on another in parallel, each read back", async () => {
    time = steppedTime();
    const a = await sim("s19", { id: "s19-a" });
    const b = await sim("s19", { id: "s19-b" });
    const { ids, events, exec, until, inv } = await setup([a, b]);
    const [ia, ib] = ids as [string, string];
    const slots = [
      { url: "stratum+tcp://127.0.0.1:3333", user: `alice.${ia}`, password: "x" },
      { url: "stratum+tcp://127.0.0.1:3334", user: `alice.${ia}`, password: "x" },
    ];
    exec.submit([
      { miner: ia, kind: "setPools", slots, why: "own the slots" },
      { miner: ia, kind: "sleep", why: "denied" },
      { miner: ib, kind: "sleep", why: "denied" },
    ]);
    await until(() => events.length === 3);
    expect(events.every((e) => e.result === "confirmed" && e.attempts === 1)).toBe(true);
    const ofA = events.filter((e) => e.miner === ia).map((e) => e.kind);
    expect(ofA).toEqual(["setPools", "sleep"]);
    // b did not wait for a's two actions: both miners were worked on together.
    expect(events.findIndex((e) => e.miner === ib)).toBeLessThan(2);
    expect(a.miner.hashing).toBe(false);
    expect(b.miner.hashing).toBe(false);
    const read = await new AntminerS19Driver(a.endpoint, context(time)).read();
    expect(read.pools.map((p) => p.url)).toEqual(slots.map((s) => s.url));
    expect(read.mode).toBe("sleep");
    expect(inv.allPending()).toEqual({});
    // What the owner had before is what forget will give back.
    expect(inv.savedSlots(ia)?.slots).toEqual([{ index: 0, url: a.pool.url, user: "owner.rig1" }]);
  });

  it("a firmware that acknowledges and ignores: failed, unconfirmed, retried until it holds", async () => {
    time = steppedTime();
    const s = await sim("s19", { id: "s19-liar" });
    const { ids, events, exec, until, inv } = await setup([s]);
    const [id] = ids as [string];
    s.miner.setCondition("write-ignored", true);
    exec.submit([{ miner: id, kind: "sleep", why: "denied" }]);
    await until(() => events.length === 1);
    expect(events[0]).toMatchObject({
      result: "failed",
      code: "AGENTD_E_MINER_NOT_CONFIRMED",
      attempts: 1,
      retryInMs: 7_000,
    });
    expect(s.miner.hashing).toBe(true);
    expect(exec.unconfirmed()).toMatchObject([{ miner: id, kind: "sleep", attempts: 1 }]);
    expect(inv.pending(id)).toHaveLength(1);
    // The firmware behaves again: the retry after the backoff holds.
    s.miner.setCondition("write-ignored", false);
    await time.advance(7_000);
    await until(() => events.length === 2);
    expect(events[1]).toMatchObject({ result: "confirmed", attempts: 2 });
    expect(s.miner.hashing).toBe(false);
    expect(exec.unconfirmed()).toEqual([]);
    await new Promise((r) => setImmediate(r)); // the write that clears it is coalesced per turn
    expect(inv.pending(id)).toEqual([]);
  });

  it("another machine at the adopted address is asked who it is and never written to", async () => {
    time = steppedTime();
    const a = await sim("s19", { id: "s19-owned" });
    const b = await sim("s19", { id: "s19-neighbour" });
    const { ids, events, exec, until, inv } = await setup([a]);
    const [id] = ids as [string];
    inv.updateEndpoint(id, b.endpoint);
    exec.submit([{ miner: id, kind: "sleep", why: "denied" }]);
    await until(() => events.length === 1);
    expect(events[0]).toMatchObject({ result: "failed", code: "AGENTD_E_MINER_IDENTITY_CHANGED" });
    expect(b.web.writes).toBe(0);
    expect(b.miner.hashing).toBe(true);
    expect(exec.unconfirmed()).toMatchObject([
      { miner: id, lastCode: "AGENTD_E_MINER_IDENTITY_CHANGED" },
    ]);
  });
});
