import type { Logger } from "../lib/log/logger.ts";

/**
 * The agent's parts stop through one AbortSignal and one ordered list (balena-supervisor's
 * composition root, control-plane/server.ts): every part that started something registers how
 * to undo it, right after starting it; stopping aborts the signal first — every loop, timer
 * and retry of every part sees it at once, so none starts new work — then undoes the parts in
 * reverse order of their start, each once, a failure logged and the next stopped anyway.
 */
export class Parts {
  readonly #stops: { readonly name: string; readonly stop: () => void | Promise<void> }[] = [];
  readonly #aborter = new AbortController();
  readonly #log: Logger;
  #stopping: Promise<void> | undefined;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Aborted when stopping begins: what a part must not start any more. */
  get signal(): AbortSignal {
    return this.#aborter.signal;
  }

  /** Registers the undoing of something just started. */
  add(name: string, stop: () => void | Promise<void>): void {
    this.#stops.push({ name, stop });
  }

  /** Stops everything registered, in reverse; once (later calls get the same promise). */
  stopAll(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#aborter.abort();
      for (const { name, stop } of this.#stops.splice(0).reverse()) {
        try {
          await stop();
          this.#log.debug({ part: name }, "stopped");
        } catch (err) {
          this.#log.error({ err, part: name }, "stopping a part failed");
        }
      }
    })();
    return this.#stopping;
  }
}
