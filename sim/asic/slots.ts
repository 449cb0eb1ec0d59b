/**
 * A miner's pool slots (firmware has three; the API's addpool may add more) and the share
 * counters the management API reports per pool and in total.
 */
import { type PoolUrl, parsePoolUrl } from "./pool-url.ts";

export interface PoolConfig {
  readonly url: string;
  readonly user: string;
  readonly pass?: string;
}

export interface ShareCounters {
  accepted: number;
  rejected: number;
  stale: number;
  /** Shares the pool never answered because the connection went away. */
  discarded: number;
  diffAccepted: number;
  diffRejected: number;
  diffStale: number;
  /** Jobs received (cgminer counts a notify as a getwork). */
  getworks: number;
  lastShareTime: number;
  lastShareDifficulty: number;
  bestShare: number;
}

export function newCounters(): ShareCounters {
  return {
    accepted: 0,
    rejected: 0,
    stale: 0,
    discarded: 0,
    diffAccepted: 0,
    diffRejected: 0,
    diffStale: 0,
    getworks: 0,
    lastShareTime: 0,
    lastShareDifficulty: 0,
    bestShare: 0,
  };
}

export interface Slot {
  readonly url: PoolUrl;
  readonly user: string;
  readonly pass: string;
  /** Where the next connection goes: client.reconnect may move it within the domain. */
  host: string;
  port: number;
  enabled: boolean;
  /** null until tried. */
  alive: boolean | null;
  /** The session id the pool gave at subscribe, for a resuming subscribe. */
  sessionId: string | null;
  /** The last difficulty the pool set on this slot. */
  difficulty: number;
  counters: ShareCounters;
}

export function newSlot(config: PoolConfig): Slot {
  const url = parsePoolUrl(config.url);
  return {
    url,
    user: config.user,
    pass: config.pass ?? "x",
    host: url.host,
    port: url.port,
    enabled: true,
    alive: null,
    sessionId: null,
    difficulty: 0,
    counters: newCounters(),
  };
}

/** The next enabled slot after `from`, wrapping around (may be `from` itself). */
export function nextEnabled(slots: readonly Slot[], from: number): number | null {
  for (let i = 1; i <= slots.length; i++) {
    const idx = (from + i) % slots.length;
    if (slots[idx]?.enabled) return idx;
  }
  return null;
}

/** Adds a share's outcome to pool and total counters. */
export function countOutcome(
  targets: readonly ShareCounters[],
  outcome: "accepted" | "rejected" | "stale",
  difficulty: number,
  at: number,
): void {
  for (const c of targets) {
    if (outcome === "accepted") {
      c.accepted++;
      c.diffAccepted += difficulty;
    } else if (outcome === "stale") {
      c.stale++;
      c.diffStale += difficulty;
    } else {
      c.rejected++;
      c.diffRejected += difficulty;
    }
    c.lastShareTime = at;
    c.lastShareDifficulty = difficulty;
  }
}
