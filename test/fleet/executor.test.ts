/**
 * The executor's sequencing on a fake MinerDriver whose every call the test settles: one
 * action per miner, the concurrency bound, retries on fake time, superseding, persistence.
 */
import { describe, expect, it } from "vitest";
import { type FleetActionEvent, FleetExecutor } from "../../fleet/executor.ts";
import { Inventory, type Pending } from "../../fleet/inventory.ts";
import type { FleetAction, FleetMiner } from "../../fleet/types.ts";
import { AgentdError, type ErrorCode } from "../../lib/errors.ts";
import { fakeTime } from "../../lib/timers.ts";
import type { Confirmed, MinerDriver } from "../../plugins/driver.ts";
import { useTmpDir } from "../support/tmp.ts";
import { OWNER_SLOTS, s19Identity } from "./fleet-fixtures.ts";

const tmp = useTmpDir("agentd-fleet-exec-");
const T0 = 1_750_000_000_000;

interface Call {
  readonly miner: string;
  readonly kind: string;
  readonly arg: unknown;
  /** What the inventory on disk held for this miner when the driver was called. */
  readonly onDisk: readonly Pending[];
  confirm(): void;
  fail(code: ErrorCode): void;
}

function harness(o: { miners?: number; concurrency?: number; dir?: string } = {}) {
  const time = fakeTime(T0);
  const dir = o.dir ?? tmp();
  const inv = Inventory.open(dir, time.clock);
  const ids: string[] = [];
  for (let i = 0; i < (o.miners ?? 1); i++) {
    const mac = `02:00:00:00:00:${i.toString(16).padStart(2, "0")}`;
    const found = inv.list().find((m) => m.mac === mac);
    ids.push(
      found?.id ??
        inv.adopt({
          identity: s19Identity({ mac, serial: `SN${i}` }),
          endpoint: { host: `10.0.0.${i + 1}` },
          credentialsFile: null,
          ownerWorker: "alice",
          previousSlots: OWNER_SLOTS,
        }).miner.id,
    );
  }
  const calls: Call[] = [];
  const events: FleetActionEvent[] = [];
  const blocked = new Map<string, AgentdError>();
  const driverFor = (m: FleetMiner): MinerDriver => {
    const op =
      (kind: string) =>
      (arg?: unknown): Promise<Confirmed> =>
        new Promise<Confirmed>((resolve, reject) => {
          calls.push({
            miner: m.id,
            kind,
            arg,
            onDisk: Inventory.open(dir, time.clock).pending(m.id),
            confirm: () =>
              resolve({
                action: kind as Confirmed["action"],
                confirmedAt: time.clock.now(),
                reads: 1,
              }),
            fail: (code) => reject(new AgentdError(code, `${kind} failed`)),
          });
        });
    return {
      family: m.family,
      detect: async () => s19Identity({ mac: m.mac, serial: m.serial }),
      read: () => Promise.reject(new Error("not used")),
      setPools: op("setPools"),
      sleep: op("sleep"),
      wake: op("wake"),
      setPowerMode: op("setPowerMode"),
      setPowerTarget: op("setPowerTarget"),
      reboot: op("reboot"),
    };
  };
  const exec = new FleetExecutor({
    store: inv,
    miner: (id) => inv.get(id),
    driverFor,
    clock: time.clock,
    timers: time.timers,
    concurrency: o.concurrency ?? 4,
    backoff: { minMs: 1_000, maxMs: 4_000 },
    blocked: (id) => blocked.get(id) ?? null,
    onEvent: (e) => events.push(e),
  });
  return { time, inv, ids, calls, events, exec, blocked, dir };
}

const turns = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};
const sleep = (miner: string, why = "denied"): FleetAction => ({ miner, kind: "sleep", why });
const wake = (miner: string): FleetAction => ({ miner, kind: "wake", why: "allowed" });
const pools = (miner: string): FleetAction => ({
  miner,
  kind: "setPools",
  slots: [{ url: "stratum+tcp://agent:3333", user: `alice.${miner}`, password: "s3cret-pw" }],
  why: "slots",
});

describe("fleet executor (fake driver)", () => {
  it("one action per miner at a time, in submission order; each confirmed event", async () => {
    const h = harness();
    const [id] = h.ids as [string];
    h.exec.submit([pools(id), sleep(id)]);
    await turns();
    expect(h.calls.map((c) => c.kind)).toEqual(["setPools"]);
    h.calls[0]?.confirm();
    await turns();
    expect(h.calls.map((c) => c.kind)).toEqual(["setPools", "sleep"]);
    h.calls[1]?.confirm();
    await turns();
    expect(h.events.map((e) => [e.kind, e.result, e.attempts])).toEqual([
      ["setPools", "confirmed", 1],
      ["sleep", "confirmed", 1],
    ]);
    expect(h.exec.unconfirmed()).toEqual([]);
    expect(h.inv.pending(id)).toEqual([]);
  });

  it("many miners in parallel, never more than the bound", async () => {
    const h = harness({ miners: 5, concurrency: 2 });
    h.exec.submit(h.ids.map((id) => sleep(id)));
    await turns();
    expect(h.calls).toHaveLength(2);
    h.calls[0]?.confirm();
    await turns();
    expect(h.calls).toHaveLength(3);
    for (const c of h.calls.slice(1)) c.confirm();
    await turns();
    for (const c of h.calls.slice(3)) c.confirm();
    await turns();
    expect(new Set(h.calls.map((c) => c.miner))).toEqual(new Set(h.ids));
    expect(h.events.filter((e) => e.result === "confirmed")).toHaveLength(5);
  });

  it("a failure is retried after a capped exponential backoff, unconfirmed until then", async () => {
    const h = harness();
    const [id] = h.ids as [string];
    h.exec.submit([sleep(id)]);
    const delays: number[] = [];
    for (let n = 0; n < 4; n++) {
      await turns();
      expect(h.calls).toHaveLength(n + 1);
      h.calls[n]?.fail("AGENTD_E_MINER_NOT_CONFIRMED");
      await turns();
      const e = h.events.at(-1);
      expect(e).toMatchObject({ result: "failed", code: "AGENTD_E_MINER_NOT_CONFIRMED" });
      delays.push(e?.retryInMs ?? -1);
      expect(h.exec.unconfirmed()).toEqual([
        {
          miner: id,
          kind: "sleep",
          since: T0,
          attempts: n + 1,
          lastCode: "AGENTD_E_MINER_NOT_CONFIRMED",
        },
      ]);
      // Nothing is sent before the backoff ends.
      await h.time.advance((e?.retryInMs ?? 0) - 1);
      expect(h.calls).toHaveLength(n + 1);
      await h.time.advance(1);
    }
    expect(delays).toEqual([1_000, 2_000, 4_000, 4_000]);
    await turns();
    h.calls[4]?.confirm();
    await turns();
    expect(h.events.at(-1)).toMatchObject({ result: "confirmed", attempts: 5 });
    expect(h.exec.unconfirmed()).toEqual([]);
  });

  it("a newer action supersedes a waiting one of its group at once; repeats are no-ops", async () => {
    const h = harness();
    const [id] = h.ids as [string];
    h.exec.submit([sleep(id)]);
    await turns();
    h.calls[0]?.fail("AGENTD_E_MINER_TIMEOUT");
    await turns();
    // The planner repeats itself every tick: no new attempt, no reset of the backoff.
    h.exec.submit([sleep(id, "still denied")]);
    await turns();
    expect(h.calls).toHaveLength(1);
    expect(h.exec.unconfirmed()).toHaveLength(1);
    h.exec.submit([wake(id)]);
    await turns();
    expect(h.events.at(-1)).toMatchObject({ kind: "sleep", result: "superseded", attempts: 1 });
    // The wake does not wait for the sleep's backoff.
    expect(h.calls.map((c) => c.kind)).toEqual(["sleep", "wake"]);
    h.calls[1]?.confirm();
    await turns();
    await h.time.advance(10_000);
    expect(h.calls).toHaveLength(2); // the superseded sleep never comes back
    expect(h.inv.pending(id)).toEqual([]);
  });

  it("an action in flight when superseded finishes; if it fails it is not retried", async () => {
    const h = harness();
    const [id] = h.ids as [string];
    h.exec.submit([sleep(id)]);
    await turns();
    h.exec.submit([wake(id)]);
    await turns();
    expect(h.calls).toHaveLength(1); // still one at a time
    expect(h.inv.pending(id).map((p) => p.action.kind)).toEqual(["wake"]);
    h.calls[0]?.fail("AGENTD_E_MINER_NOT_CONFIRMED");
    await turns();
    expect(h.events[0]).toMatchObject({
      kind: "sleep",
      result: "superseded",
      code: "AGENTD_E_MINER_NOT_CONFIRMED",
    });
    expect(h.calls.map((c) => c.kind)).toEqual(["sleep", "wake"]);
  });

  it("a backing-off action of one group does not hold up another group's", async () => {
    const h = harness();
    const [id] = h.ids as [string];
    h.exec.submit([pools(id)]);
    await turns();
    h.calls[0]?.fail("AGENTD_E_MINER_AUTH");
    await turns();
    h.exec.submit([sleep(id)]);
    await turns();
    expect(h.calls.map((c) => c.kind)).toEqual(["setPools", "sleep"]);
  });

  it("unsupported is final; a blocked miner (identity) is never called", async () => {
    const h = harness({ miners: 2 });
    const [a, b] = h.ids as [string, string];
    h.blocked.set(b, new AgentdError("AGENTD_E_MINER_IDENTITY_CHANGED", "another miner"));
    h.exec.submit([sleep(a), sleep(b)]);
    await turns();
    expect(h.calls.map((c) => c.miner)).toEqual([a]);
    expect(h.events).toEqual([
      expect.objectContaining({
        miner: b,
        result: "failed",
        code: "AGENTD_E_MINER_IDENTITY_CHANGED",
      }),
    ]);
    h.calls[0]?.fail("AGENTD_E_MINER_UNSUPPORTED");
    await turns();
    expect(h.events.at(-1)).toMatchObject({
      miner: a,
      result: "failed",
      code: "AGENTD_E_MINER_UNSUPPORTED",
    });
    expect(h.events.at(-1)?.retryInMs).toBeUndefined();
    await h.time.advance(60_000);
    expect(h.calls.map((c) => c.miner)).toEqual([a]); // b still blocked, a dropped
    expect(h.exec.unconfirmed().map((u) => u.miner)).toEqual([b]);
  });

  it("pending is written before the call and cleared after; events carry no password", async () => {
    const h = harness();
    const [id] = h.ids as [string];
    h.exec.submit([pools(id)]);
    await turns();
    expect(h.calls).toHaveLength(1);
    expect(h.calls[0]?.onDisk).toEqual([expect.objectContaining({ action: pools(id) })]);
    h.calls[0]?.confirm();
    await turns();
    expect(Inventory.open(h.dir, h.time.clock).pending(id)).toEqual([]);
    expect(h.events[0]?.slots).toEqual([{ url: "stratum+tcp://agent:3333", user: `alice.${id}` }]);
    expect(JSON.stringify(h.events)).not.toContain("s3cret-pw");
  });

  it("a restart resumes the unconfirmed action once and never repeats a confirmed one", async () => {
    const first = harness({ miners: 2 });
    const [a, b] = first.ids as [string, string];
    first.exec.submit([sleep(a), sleep(b)]);
    await turns();
    first.calls.find((c) => c.miner === a)?.confirm();
    await turns();
    // The agent stops with b's sleep sent and unanswered.
    first.exec.close();
    const second = harness({ miners: 2, dir: first.dir });
    second.exec.resume();
    await turns();
    expect(second.calls.map((c) => [c.miner, c.kind])).toEqual([[b, "sleep"]]);
    // The planner, on its first tick, asks for the same: not sent twice.
    second.exec.submit([sleep(b), sleep(a)]);
    await turns();
    expect(second.calls.filter((c) => c.miner === b)).toHaveLength(1);
    second.calls[0]?.confirm();
    await turns();
    expect(second.events[0]).toMatchObject({ miner: b, result: "confirmed", attempts: 2 });
    await turns();
    expect(second.calls.filter((c) => c.miner === b)).toHaveLength(1);
    expect(second.exec.unconfirmed().filter((u) => u.miner === b)).toEqual([]);
  });

  it("a plan for many miners is one write; a plan that cannot be written is not sent", async () => {
    const h = harness({ miners: 5 });
    let writes = 0;
    let broken = false;
    const store = {
      pending: (id: string) => h.inv.pending(id),
      allPending: () => h.inv.allPending(),
      nextSeq: () => h.inv.nextSeq(),
      setPending: (lists: Readonly<Record<string, readonly Pending[]>>) => {
        if (broken) throw new AgentdError("AGENTD_E_IO", "disk full");
        writes++;
        h.inv.setPending(lists);
      },
    };
    const sent: string[] = [];
    const exec = new FleetExecutor({
      store,
      miner: (id) => h.inv.get(id),
      driverFor: (m) => {
        sent.push(m.id);
        return {
          detect: async () => s19Identity({ mac: m.mac, serial: m.serial }),
          sleep: () => new Promise<Confirmed>(() => {}),
        } as unknown as MinerDriver;
      },
      clock: h.time.clock,
      timers: h.time.timers,
    });
    broken = true;
    expect(() => exec.submit(h.ids.map((id) => sleep(id)))).toThrow("disk full");
    await turns();
    expect(sent).toEqual([]);
    expect(exec.unconfirmed()).toEqual([]);
    broken = false;
    exec.submit(h.ids.map((id) => sleep(id)));
    expect(writes).toBe(1);
    expect(Object.keys(h.inv.allPending()).sort()).toEqual([...h.ids].sort());
    await turns();
    expect(sent.sort()).toEqual([...h.ids].sort());
    // The five attempt counts that followed: one more write, not five.
    expect(writes).toBe(2);
  });
});
