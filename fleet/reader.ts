/**
 * Reads every adopted miner and every meter each interval, at most `concurrency` at once, and
 * keeps what it found (MinerState: the last reading, when, the last error).
 *
 * Each read is followed by an identity check (plugins/identity.ts): the reading counts only if
 * the machine that gave it is the adopted one. Another machine at the address (a DHCP lease
 * handed to someone else's miner, a swapped unit) puts the miner in error state
 * AGENTD_E_MINER_IDENTITY_CHANGED: its last good reading is kept with its old `readAt` (the
 * facts go stale, fail closed), and `blocked(id)` tells the executor not to act on it until a
 * read finds the adopted machine again (a timeout in between does not lift it).
 *
 * A round still running when the next falls due is not doubled: that tick is skipped.
 */
import type { Clock } from "../lib/clock.ts";
import { AgentdError, isAgentdError } from "../lib/errors.ts";
import type { TimerHandle, Timers } from "../lib/timers.ts";
import type { MeterReading, MeterSpec, MinerDriver } from "../plugins/driver.ts";
import { assertSameMiner } from "../plugins/identity.ts";
import type { FleetAction, FleetMiner, FleetView, MeterState, MinerState } from "./types.ts";

export interface ReaderOptions {
  readonly miners: () => readonly FleetMiner[];
  readonly driverFor: (miner: FleetMiner) => MinerDriver;
  readonly meters?: () => readonly MeterSpec[];
  /** In production, the DriverHost's `readMeter`. */
  readonly readMeter?: (spec: MeterSpec) => Promise<MeterReading>;
  /** The executor's unconfirmed actions for a miner, shown in its state. */
  readonly pending?: (id: string) => readonly FleetAction[];
  readonly clock: Clock;
  readonly timers: Timers;
  readonly intervalMs: number;
  /** Devices read at once (default 16). */
  readonly concurrency?: number;
  /** After each round (the planner runs on fresh readings). */
  readonly onRound?: () => void;
}

type Read = Omit<MinerState, "pending">;

export class FleetReader {
  readonly #o: ReaderOptions;
  readonly #states = new Map<string, Read>();
  readonly #meters = new Map<string, MeterState>();
  /** Miners where another machine answered, until the adopted one is read there again. */
  readonly #strangers = new Map<string, string>();
  #round: Promise<void> | null = null;
  #timer: TimerHandle | null = null;

  constructor(o: ReaderOptions) {
    this.#o = o;
  }

  start(): void {
    if (this.#timer !== null) return;
    this.#timer = this.#o.timers.setInterval(() => void this.readOnce(), this.#o.intervalMs);
    void this.readOnce();
  }

  stop(): Promise<void> {
    if (this.#timer !== null) this.#o.timers.clearInterval(this.#timer);
    this.#timer = null;
    return this.#round ?? Promise.resolve();
  }

  /** One round of every miner and meter (the one in progress, if a round is running). */
  readOnce(): Promise<void> {
    if (this.#round !== null) return this.#round;
    this.#round = this.#readAll().finally(() => {
      this.#round = null;
      this.#o.onRound?.();
    });
    return this.#round;
  }

  state(id: string): MinerState {
    const s = this.#states.get(id) ?? { reading: null, readAt: null, lastError: null };
    return { ...s, pending: this.#o.pending?.(id) ?? [] };
  }

  /** The identity error that forbids acting on this miner, or null. */
  blocked(id: string): AgentdError | null {
    const why = this.#strangers.get(id);
    return why === undefined ? null : new AgentdError("AGENTD_E_MINER_IDENTITY_CHANGED", why);
  }

  view(): FleetView {
    const miners = this.#o.miners();
    const states: Record<string, MinerState> = {};
    for (const m of miners) states[m.id] = this.state(m.id);
    return { miners, states, meters: [...this.#meters.values()] };
  }

  async #readAll(): Promise<void> {
    const miners = this.#o.miners();
    // Forgotten miners leave no state behind.
    const ids = new Set(miners.map((m) => m.id));
    for (const id of this.#states.keys()) if (!ids.has(id)) this.#states.delete(id);
    for (const id of this.#strangers.keys()) if (!ids.has(id)) this.#strangers.delete(id);
    const specs = this.#o.meters?.() ?? [];
    const meterIds = new Set(specs.map((s) => s.id));
    for (const id of this.#meters.keys()) if (!meterIds.has(id)) this.#meters.delete(id);
    const jobs: (() => Promise<void>)[] = [
      ...miners.map((m) => () => this.#readMiner(m)),
      ...specs.map((s) => () => this.#readMeter(s)),
    ];
    await bounded(jobs, this.#o.concurrency ?? 16);
  }

  async #readMiner(m: FleetMiner): Promise<void> {
    const prev = this.#states.get(m.id) ?? { reading: null, readAt: null, lastError: null };
    try {
      const driver = this.#o.driverFor(m);
      const reading = await driver.read();
      // After the read: a machine swapped in before it is caught here, and its reading dropped.
      assertSameMiner(m, await driver.detect());
      this.#states.set(m.id, { reading, readAt: reading.at, lastError: null });
      this.#strangers.delete(m.id);
    } catch (err) {
      const code = isAgentdError(err) ? err.code : "AGENTD_E_INTERNAL";
      const message = err instanceof Error ? err.message : String(err);
      if (code === "AGENTD_E_MINER_IDENTITY_CHANGED") this.#strangers.set(m.id, message);
      this.#states.set(m.id, {
        reading: prev.reading,
        readAt: prev.readAt,
        lastError: { code, message, at: this.#o.clock.now() },
      });
    }
  }

  async #readMeter(spec: MeterSpec): Promise<void> {
    const prev = this.#meters.get(spec.id);
    const read = this.#o.readMeter;
    if (read === undefined) return;
    try {
      this.#meters.set(spec.id, { spec, reading: await read(spec), lastError: null });
    } catch (err) {
      const code = isAgentdError(err) ? err.code : "AGENTD_E_INTERNAL";
      this.#meters.set(spec.id, {
        spec,
        reading: prev?.reading ?? null,
        lastError: { code, at: this.#o.clock.now() },
      });
    }
  }
}

/** Runs the jobs, at most `limit` at a time; never rejects (each job keeps its own errors). */
async function bounded(jobs: readonly (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < jobs.length; i = next++) {
      await jobs[i]?.().catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), jobs.length) }, worker));
}
