import type { Clock } from "../lib/clock.ts";
import { fail } from "../lib/errors.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";

/**
 * The heartbeat counter: strictly increasing and never reused — across crashes, restarts and
 * a restore of the state directory from a backup (docs/protocol.md, "Heartbeats").
 *
 * A counter is `epoch · 2^20 + n`. The epoch is a number of seconds, chosen when the counter
 * is opened as max(now, the last epoch + 1) and written durably (fsync, rename, fsync) before
 * any counter of it is handed out; `n` then counts 1, 2, 3… in memory only. So:
 *
 * - after a crash, whenever it happened, the next start takes a larger epoch: every counter
 *   of the new epoch is above every counter of the old one, used or not (the "range" reserved
 *   durably before use is the whole rest of the epoch);
 * - after a restore from an older backup, the file holds an older epoch, but the clock has
 *   moved on: now is above every epoch used since (as long as the clock moves forward — the
 *   same bet the control plane's time-based versions make);
 * - if the control plane still answers a heartbeat with a replay (the clock was behind after
 *   a restore), `advancePast(last)` takes the epoch above the control plane's last counter.
 *
 * 2^20 heartbeats per epoch is a year at one per 30 s; the epoch moves on (durably) when `n`
 * runs out. Counters stay below 2^53 until the year 2242. One gap per start: the control plane
 * flags it (`counter_gap`), which is what a restart is.
 */

export const COUNTER_FILE = "heartbeat-counter.json";
const FORMAT = 1;
const N_BITS = 20;
const N_MAX = 2 ** N_BITS - 1;
const EPOCH_MAX = Math.floor(Number.MAX_SAFE_INTEGER / 2 ** N_BITS);

export interface HeartbeatCounter {
  /** The next counter; the first of an epoch only after its epoch is durable. */
  next(): number;
  /** The last counter handed out (0: none since opening). */
  last(): number;
  /** The epoch in use. */
  epoch(): number;
  /** Moves to an epoch whose counters are all above `counter` (after a replay answer). */
  advancePast(counter: number): void;
}

export function openHeartbeatCounter(path: string, clock: Clock): HeartbeatCounter {
  const stored = readEpoch(path);
  let epoch = 0;
  let n = 0;
  const begin = (floor: number) => {
    const next = Math.max(Math.floor(clock.now() / 1000), floor);
    if (next > EPOCH_MAX) {
      throw fail("AGENTD_E_INTERNAL", `heartbeat counter epoch ${next} is out of range`);
    }
    // Durable before any counter of it leaves this process.
    writeStateFile(path, FORMAT, { epoch: next });
    epoch = next;
    n = 0;
  };
  begin(stored + 1);
  return {
    next() {
      if (n >= N_MAX) begin(epoch + 1);
      n += 1;
      return epoch * 2 ** N_BITS + n;
    },
    last: () => (n === 0 ? 0 : epoch * 2 ** N_BITS + n),
    epoch: () => epoch,
    advancePast(counter) {
      if (!Number.isSafeInteger(counter) || counter < 0) {
        throw fail("AGENTD_E_INTERNAL", "advancePast needs a non-negative safe integer");
      }
      const above = Math.floor(counter / 2 ** N_BITS) + 1;
      if (above > epoch) begin(above);
    },
  };
}

function readEpoch(path: string): number {
  const file = readStateFile(path, { format: FORMAT });
  if (file === undefined) return 0;
  const data = file.data as { epoch?: unknown } | null;
  const epoch = data?.epoch;
  if (typeof epoch !== "number" || !Number.isSafeInteger(epoch) || epoch < 0) {
    throw fail("AGENTD_E_FILE_CORRUPT", `${path}: no valid heartbeat counter epoch`, { path });
  }
  return epoch;
}
