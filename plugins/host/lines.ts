/**
 * Newline-delimited messages from a stream, with a bound on one message: bytes are kept only
 * until their line ends, and a line that grows past `maxBytes` is never assembled — the
 * reader stops and reports it (on the agent's side: the host is flooding and is killed). So
 * what a peer sends costs at most `maxBytes` plus one chunk of memory, however much it sends.
 */
export class LineReader {
  readonly #maxBytes: number;
  readonly #onLine: (line: string) => void;
  readonly #onOverflow: (bytes: number) => void;
  #parts: Buffer[] = [];
  #held = 0;
  #stopped = false;
  /** The most bytes ever held at once (tests check the bound holds). */
  peak = 0;

  constructor(
    maxBytes: number,
    onLine: (line: string) => void,
    onOverflow: (bytes: number) => void,
  ) {
    this.#maxBytes = maxBytes;
    this.#onLine = onLine;
    this.#onOverflow = onOverflow;
  }

  /** Drops what is held and ignores what comes after (the peer is being killed). */
  stop(): void {
    this.#stopped = true;
    this.#parts = [];
    this.#held = 0;
  }

  push(chunk: Buffer): void {
    let start = 0;
    while (!this.#stopped) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? chunk.length : nl;
      if (this.#held + (end - start) > this.#maxBytes) {
        const bytes = this.#held + (end - start);
        this.stop();
        this.#onOverflow(bytes);
        return;
      }
      if (nl === -1) {
        if (end > start) this.#hold(chunk.subarray(start));
        return;
      }
      const piece = chunk.subarray(start, nl);
      const line =
        this.#parts.length === 0
          ? piece
          : Buffer.concat([...this.#parts, piece], this.#held + piece.length);
      this.#parts = [];
      this.#held = 0;
      start = nl + 1;
      if (line.length > 0) this.#onLine(line.toString("utf8"));
    }
  }

  #hold(piece: Buffer): void {
    // A copy: a subarray would keep the whole chunk (up to 64 KiB) alive for a few bytes.
    this.#parts.push(Buffer.from(piece));
    this.#held += piece.length;
    this.peak = Math.max(this.peak, this.#held);
  }
}
