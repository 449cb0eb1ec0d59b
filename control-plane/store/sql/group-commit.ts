import { nextTurn } from "../../../lib/timers.ts";

/**
 * Group commit: concurrent callers' items wait while a batch commits, then all go in the next
 * transaction together. Under load a commit (and its fsync) carries many items; with one
 * caller nothing waits beyond one turn of the event loop.
 */
export class GroupCommit<I, R> {
  readonly #commit: (items: I[]) => Promise<R[]>;
  readonly #maxBatch: number;
  readonly #maxInFlight: number;
  #queue: { item: I; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  #inFlight = 0;
  #scheduled = false;
  #idle: (() => void)[] = [];

  constructor(commit: (items: I[]) => Promise<R[]>, maxBatch: number, maxInFlight: number) {
    this.#commit = commit;
    this.#maxBatch = maxBatch;
    this.#maxInFlight = maxInFlight;
  }

  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      this.#schedule();
    });
  }

  /** Resolves when nothing is queued or committing. */
  drain(): Promise<void> {
    if (this.#queue.length === 0 && this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #schedule(): void {
    if (this.#scheduled || this.#queue.length === 0 || this.#inFlight >= this.#maxInFlight) return;
    this.#scheduled = true;
    // The next turn: callers that submit in this turn of the event loop join the batch.
    nextTurn(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    while (this.#queue.length > 0 && this.#inFlight < this.#maxInFlight) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      this.#inFlight += 1;
      this.#commit(batch.map((b) => b.item))
        .then(
          (results) => {
            batch.forEach((b, i) => {
              b.resolve(results[i] as R);
            });
          },
          (e: unknown) => {
            for (const b of batch) b.reject(e);
          },
        )
        .finally(() => {
          this.#inFlight -= 1;
          if (this.#queue.length === 0 && this.#inFlight === 0) {
            for (const f of this.#idle.splice(0)) f();
          }
          this.#schedule();
        });
    }
  }
}
