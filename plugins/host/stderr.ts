/**
 * The host's stderr, forwarded to the agent's log: line by line, each line cut at a bound,
 * at most so many lines per interval (the rest counted, and the count logged). The host's
 * logs are useful; its stderr is also the one thing besides stdout a compromised host writes
 * into the agent, so it is neither trusted (each line is logged as the host's text, under
 * `host_stderr`, never merged into the agent's own records) nor allowed to cost unbounded
 * memory or log volume.
 */
import { StringDecoder } from "node:string_decoder";
import type { Logger } from "../../lib/log/logger.ts";

export class StderrForwarder {
  readonly #logger: Logger;
  readonly #lineBytes: number;
  readonly #perInterval: number;
  readonly #decoder = new StringDecoder("utf8");
  #partial = "";
  #cut = false;
  #logged = 0;
  #dropped = 0;
  /** The last lines, for a host that dies before its hello (why it died). */
  readonly tail: string[] = [];

  constructor(logger: Logger, lineBytes: number, perInterval: number) {
    this.#logger = logger;
    this.#lineBytes = lineBytes;
    this.#perInterval = perInterval;
  }

  push(chunk: Buffer): void {
    const text = this.#decoder.write(chunk);
    let start = 0;
    for (let nl = text.indexOf("\n"); nl !== -1; nl = text.indexOf("\n", start)) {
      this.#take(text.slice(start, nl));
      this.#line();
      start = nl + 1;
    }
    this.#take(text.slice(start));
  }

  /** A new interval: logs how many lines were dropped in the last one. */
  tick(): void {
    if (this.#dropped > 0) {
      this.#logger.warn({ dropped: this.#dropped }, "driver host stderr: lines dropped (too many)");
    }
    this.#logged = 0;
    this.#dropped = 0;
  }

  #take(piece: string): void {
    if (this.#cut) return;
    const room = this.#lineBytes - this.#partial.length;
    if (piece.length > room) {
      this.#partial += piece.slice(0, Math.max(0, room));
      this.#cut = true;
    } else {
      this.#partial += piece;
    }
  }

  #line(): void {
    const line = this.#cut ? `${this.#partial}…` : this.#partial;
    this.#partial = "";
    this.#cut = false;
    if (line.length === 0) return;
    this.tail.push(line);
    if (this.tail.length > 5) this.tail.shift();
    if (this.#logged >= this.#perInterval) {
      if (this.#dropped++ === 0) {
        this.#logger.warn(
          { limit: this.#perInterval },
          "driver host stderr: too many lines, dropping them until the next interval",
        );
      }
      return;
    }
    this.#logged++;
    this.#logger.info({ host_stderr: line }, "driver host stderr");
  }
}
