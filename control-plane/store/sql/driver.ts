import type { StreamSubscription, Unsubscribe } from "../store.ts";
import type { Dialect, Op } from "./op.ts";

/**
 * What a backend provides to the shared store: running an operation as one transaction, and
 * delivering committed stream events.
 */
export interface Driver {
  readonly dialect: Dialect;
  /**
   * Runs `op()` in one transaction and commits; rolls back and rethrows (AgentdErrors as they
   * are, driver errors as AGENTD_E_STORE) if it throws. `read` transactions take no write
   * lock. The factory may be called again for a retry.
   */
  transact<T>(op: () => Op<T>, mode: "read" | "write"): Promise<T>;
  subscribe(subscription: StreamSubscription): Promise<Unsubscribe>;
  close(): Promise<void>;
}

/** Group-commit settings, per driver. */
export interface BatchSettings {
  /** Heartbeats per transaction, at most. */
  readonly maxBatch: number;
  /** Transactions in flight at once (SQLite serialises writers anyway: 1). */
  readonly maxInFlight: number;
}
