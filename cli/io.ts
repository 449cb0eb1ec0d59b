import type { Clock } from "../lib/clock.ts";
import type { Timers } from "../lib/timers.ts";

/**
 * Everything a command touches outside its arguments, injected so that commands run
 * in-process in tests exactly as they do from `./bin/agentd`.
 */
export interface CliIo {
  /** Machine-readable output only: results, JSON, the daemon ready line. */
  readonly stdout: (text: string) => void;
  /** Human messages and logs. */
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly clock: Clock;
  /** What commands wait on (`systemTimers` from the binary: a CLI's waits keep it alive). */
  readonly timers: Timers;
}
