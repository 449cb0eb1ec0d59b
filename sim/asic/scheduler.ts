/**
 * Shares one CPU among the simulated miners of a process: each turn of the event loop hashes
 * one small batch for the next miner that has work (round-robin), so sockets, timers and the
 * management API keep being served however many miners there are.
 */
import { type Clock, systemClock } from "../../lib/clock.ts";

export interface HashTask {
  /** Whether the miner has work to hash right now (connected, a job, not asleep…). */
  active(): boolean;
  /** Hashes up to `n` nonces. */
  step(n: number): void;
}

export interface SchedulerOptions {
  /** Nonces per turn; a few thousand keep one turn at a few milliseconds. */
  readonly batch?: number;
  /** Caps the process's hashing, so that a large cluster does not hold a core at 100 %. */
  readonly maxHashesPerSecond?: number;
  readonly clock?: Clock;
}

const WINDOW_MS = 100;

export class HashScheduler {
  readonly #tasks: HashTask[] = [];
  readonly #batch: number;
  readonly #max: number | undefined;
  readonly #clock: Clock;
  #cursor = 0;
  #scheduled = false;
  #stopped = false;
  #windowStart = 0;
  #windowHashes = 0;
  #timer: NodeJS.Timeout | undefined;
  #hashes = 0;

  constructor(options: SchedulerOptions = {}) {
    this.#batch = options.batch ?? 2000;
    this.#max = options.maxHashesPerSecond;
    this.#clock = options.clock ?? systemClock;
  }

  /** Registers a miner; returns the function that removes it. */
  add(task: HashTask): () => void {
    this.#tasks.push(task);
    this.wake();
    return () => {
      const i = this.#tasks.indexOf(task);
      if (i >= 0) this.#tasks.splice(i, 1);
    };
  }

  /** A task may have become active: make sure a turn is scheduled. */
  wake(): void {
    if (this.#scheduled || this.#stopped) return;
    this.#scheduled = true;
    setImmediate(() => this.#turn());
  }

  /** Total nonces hashed so far (for benchmarks). */
  get hashes(): number {
    return this.#hashes;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  #turn(): void {
    this.#scheduled = false;
    if (this.#stopped) return;
    const n = this.#tasks.length;
    for (let i = 0; i < n; i++) {
      const idx = (this.#cursor + i) % n;
      const task = this.#tasks[idx];
      if (task?.active()) {
        this.#cursor = (idx + 1) % n;
        task.step(this.#batch);
        this.#hashes += this.#batch;
        this.#next();
        return;
      }
    }
    // Nothing to do: sleep until a miner calls wake().
  }

  #next(): void {
    if (this.#max !== undefined) {
      const now = this.#clock.now();
      if (now - this.#windowStart >= WINDOW_MS) {
        this.#windowStart = now;
        this.#windowHashes = 0;
      }
      this.#windowHashes += this.#batch;
      if (this.#windowHashes >= (this.#max * WINDOW_MS) / 1000) {
        this.#scheduled = true;
        this.#timer = setTimeout(
          () => {
            this.#timer = undefined;
            this.#turn();
          },
          Math.max(1, WINDOW_MS - (now - this.#windowStart)),
        );
        return;
      }
    }
    this.wake();
  }
}
