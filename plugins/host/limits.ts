/**
 * The channel's bounds and the launcher's defaults (README.md in this folder says why each).
 */

/** The largest request the agent sends (a setPools with 8 slots is ~5 KiB). */
export const MAX_REQUEST_BYTES = 64 * 1024;

/**
 * The largest message the host may send. A Reading is a few KiB; the schema's array bounds
 * cap a valid one near 600 KiB. Past this, the host is flooding and is killed.
 */
export const MAX_REPLY_BYTES = 1024 * 1024;

export interface HostTiming {
  /** A liveness ping this often... */
  readonly pingIntervalMs: number;
  /** ...answered within this, or the host is hung (its event loop is stuck). */
  readonly pingTimeoutMs: number;
  /** Added to each request's own deadline before the host counts as hung. */
  readonly marginMs: number;
  /** From spawn to the host's hello. */
  readonly startTimeoutMs: number;
  /** From closing its stdin to SIGKILL, on a clean stop. */
  readonly stopGraceMs: number;
  /** The first restart's delay, doubled on each failure in a row, up to `maxBackoffMs`. */
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  /** A host that served this long has recovered: the next failure starts again at the first delay. */
  readonly stableAfterMs: number;
}

export const DEFAULT_TIMING: HostTiming = Object.freeze({
  pingIntervalMs: 5_000,
  pingTimeoutMs: 5_000,
  marginMs: 5_000,
  startTimeoutMs: 15_000,
  stopGraceMs: 2_000,
  initialBackoffMs: 1_000,
  maxBackoffMs: 60_000,
  stableAfterMs: 60_000,
});

/** Invalid messages per ping interval past which the host counts as flooding. */
export const MAX_INVALID_PER_INTERVAL = 20;

/** The host's stderr: one line kept up to this, and this many lines per ping interval logged. */
export const STDERR_LINE_BYTES = 2048;
export const STDERR_LINES_PER_INTERVAL = 50;

/** Requests in flight at once; past it, a request is refused rather than queued without bound. */
export const MAX_IN_FLIGHT = 4096;

/** The host's V8 heap, in MiB: a driver that leaks or hoards crashes its host, not the machine. */
export const HOST_HEAP_MB = 256;
