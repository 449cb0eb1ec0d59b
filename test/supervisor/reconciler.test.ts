import { describe, expect, it } from "vitest";
import { createLogger } from "../../lib/log/logger.ts";
import { fakeTime } from "../../lib/timers.ts";
import { defaultSpecs } from "../../supervisor/defaults.ts";
import type { DriverEvent, ServiceDriver } from "../../supervisor/driver.ts";
import type { Actual, Desired } from "../../supervisor/plan.ts";
import { Reconciler, type SupervisorEvent } from "../../supervisor/reconciler.ts";
import type { ServiceKind } from "../../supervisor/spec.ts";

/**
 * The reconciler's decisions over time — backoff, crash loop, manual stop, dependencies, a
 * driver that goes away — on an in-memory driver with fake time (a pure unit test of the
 * loop; test/supervisor/docker-driver.test.ts runs the same on a real Podman service).
 */

function memoryDriver() {
  const containers = new Map<string, Actual>();
  let seq = 0;
  let down = false;
  let emit: ((e: DriverEvent) => void) | null = null;
  const calls: string[] = [];
  const guard = () => {
    if (down) throw new Error("connect ECONNREFUSED");
  };
  const driver: ServiceDriver = {
    name: "memory",
    async list() {
      guard();
      return [...containers.values()];
    },
    async hasImage() {
      return true;
    },
    async create({ kind, image, hash }) {
      guard();
      const id = `${kind}-${++seq}`;
      containers.set(id, { id, kind, image, hash, running: false, createdAt: seq });
      calls.push(`create ${kind}`);
      return id;
    },
    async start(id) {
      guard();
      const c = containers.get(id) as Actual;
      containers.set(id, { ...c, running: true });
      calls.push(`start ${c.kind}`);
    },
    async stop(id) {
      guard();
      const c = containers.get(id) as Actual;
      containers.set(id, { ...c, running: false });
      calls.push(`stop ${c.kind}`);
      emit?.({ kind: c.kind, id, action: "die", exitCode: 143 });
    },
    async remove(id) {
      guard();
      calls.push(`remove ${containers.get(id)?.kind}`);
      containers.delete(id);
    },
    async logs() {
      return [];
    },
    events(onEvent) {
      emit = onEvent;
      return { close: () => (emit = null) };
    },
    async ping() {
      guard();
    },
  };
  return {
    driver,
    calls,
    containers,
    setDown: (v: boolean) => {
      down = v;
    },
    /** The process inside dies on its own. */
    crash(kind: ServiceKind, code = 1) {
      for (const c of containers.values()) {
        if (c.kind === kind && c.running) {
          containers.set(c.id, { ...c, running: false });
          emit?.({ kind, id: c.id, action: "die", exitCode: code });
        }
      }
    },
  };
}

function setup(healthy: (k: ServiceKind) => boolean = () => true) {
  const time = fakeTime(1_000_000);
  const mem = memoryDriver();
  const events: SupervisorEvent[] = [];
  const r = new Reconciler({
    driver: mem.driver,
    clock: time.clock,
    timers: time.timers,
    logger: createLogger({ level: "silent" }),
    probe: async (k) => healthy(k),
    random: () => 0.5,
    onEvent: (e) => events.push(e),
  });
  /** Moves time on, firing the timers due in order, then lets the loop settle. */
  const advance = async (ms: number) => {
    await time.advance(ms);
    await r.kick("test");
  };
  return { r, mem, time, events, advance };
}

const specs = defaultSpecs("/srv");
const IMG = `sha256:${"a".repeat(64)}`;
const target = (...kinds: ServiceKind[]) =>
  new Map<ServiceKind, Desired>(kinds.map((k) => [k, { spec: specs[k], image: IMG }]));

describe("the reconciler", () => {
  it("restarts a service that died, after its backoff, doubling; a crash loop ends the retries", async () => {
    const { r, mem, events, advance } = setup();
    r.start();
    await r.setTarget(target("bitcoind"));
    expect(mem.calls).toEqual(["create bitcoind", "start bitcoind"]);
    // bitcoind's restart: min 1 s, doubling, full jitter at 0.5 but never under the minimum
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      mem.crash("bitcoind");
      await r.kick("test");
      const scheduled = events.filter((e) => e.type === "service.restart_scheduled").at(-1);
      delays.push(scheduled?.type === "service.restart_scheduled" ? scheduled.inMs : -1);
      await advance(1);
      expect(r.status().find((s) => s.kind === "bitcoind")?.state).toBe("stopped");
      await advance(60_000);
      expect(r.status().find((s) => s.kind === "bitcoind")?.state).not.toBe("stopped");
    }
    expect(delays).toEqual([1000, 1000, 2000, 4000]);
    mem.crash("bitcoind"); // the fifth failure in ten minutes
    await r.kick("test");
    expect(events.some((e) => e.type === "service.crashloop")).toBe(true);
    await advance(600_000);
    expect(r.status().find((s) => s.kind === "bitcoind")).toMatchObject({
      state: "stopped",
      hold: "crashloop",
    });
    // an operator's start is a new chance
    await r.startService("bitcoind");
    expect(r.status().find((s) => s.kind === "bitcoind")?.hold).toBeNull();
    expect(mem.calls.at(-1)).toBe("start bitcoind");
    await r.close();
  });

  it("keeps a manual stop until a manual start; its own stops are not failures", async () => {
    const { r, mem, events } = setup();
    r.start();
    await r.setTarget(target("bitcoind"));
    await r.stopService("bitcoind");
    expect(mem.calls.at(-1)).toBe("stop bitcoind");
    await r.kick("resync");
    expect(mem.calls.at(-1)).toBe("stop bitcoind");
    expect(events.some((e) => e.type === "service.restart_scheduled")).toBe(false);
    await r.startService("bitcoind");
    expect(mem.calls.at(-1)).toBe("start bitcoind");
    await r.close();
  });

  it("a kind no longer allowed is stopped and removed; a newer target wins", async () => {
    const { r, mem } = setup();
    r.start();
    await r.setTarget(target("bitcoind", "translator"));
    const a = r.setTarget(target("bitcoind"));
    const b = r.setTarget(target("bitcoind", "translator"));
    await Promise.all([a, b]);
    await r.kick("settle");
    expect([...mem.containers.values()].map((c) => [c.kind, c.running]).sort()).toEqual([
      ["bitcoind", true],
      ["translator", true],
    ]);
    await r.setTarget(target("bitcoind"));
    expect([...mem.containers.values()].map((c) => c.kind)).toEqual(["bitcoind"]);
    await r.close();
  });

  it("keeps retrying while the driver is away and catches up when it returns", async () => {
    const { r, mem, events, advance } = setup();
    r.start();
    mem.setDown(true);
    await r.setTarget(target("bitcoind"));
    expect(r.driverUp).toBe(false);
    expect(events.some((e) => e.type === "driver.unreachable")).toBe(true);
    mem.setDown(false);
    await advance(10_000);
    expect(r.driverUp).toBe(true);
    expect(events.some((e) => e.type === "driver.reachable")).toBe(true);
    expect(mem.calls).toEqual(["create bitcoind", "start bitcoind"]);
    await r.close();
  });

  it("waits only on the injected timers, and leaves none behind when closed", async () => {
    const { r, mem, time } = setup();
    r.start();
    await r.setTarget(target("bitcoind"));
    mem.crash("bitcoind");
    await r.kick("test");
    // the first health round (time has not moved), the end of the backoff, the resync
    expect(time.delays()).toEqual([0, 1_005, 10_000]);
    await r.close();
    expect(time.pending()).toBe(0);
  });
});
