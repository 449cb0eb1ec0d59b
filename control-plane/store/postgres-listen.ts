import pg from "pg";
import { backgroundTimers, type TimerHandle, type Timers } from "../../lib/timers.ts";
import { storeError } from "./errors.ts";
import type { StreamEvent, StreamSubscription, Unsubscribe } from "./store.ts";

/** The NOTIFY channel of stream events (per database). */
export const STREAM_CHANNEL = "agentd_stream";

/**
 * One LISTEN connection per Store, opened at the first subscription. Events come from
 * `pg_notify` inside the writing transaction, so PostgreSQL delivers them only once committed,
 * to every listening process (the push fan-out between `agentd cp serve` instances). A lost
 * connection is re-opened with backoff; because notifications sent meanwhile are lost,
 * subscribers are then told to resync from the database.
 */
export class PgListener {
  readonly #config: pg.ClientConfig;
  readonly #timers: Timers;
  readonly #subscribers = new Set<StreamSubscription>();
  #client: pg.Client | null = null;
  #connecting: Promise<void> | null = null;
  #retry: TimerHandle | null = null;
  #backoffMs = 100;
  #closed = false;

  /**
   * `timers` runs the reconnection backoff; `backgroundTimers` by default, so that a pending
   * reconnection never keeps a closing process alive.
   */
  constructor(config: pg.ClientConfig, timers: Timers = backgroundTimers) {
    this.#config = config;
    this.#timers = timers;
  }

  async subscribe(subscription: StreamSubscription): Promise<Unsubscribe> {
    this.#subscribers.add(subscription);
    try {
      await this.#ensure();
    } catch (e) {
      this.#subscribers.delete(subscription);
      throw storeError("postgres", e);
    }
    return async () => {
      this.#subscribers.delete(subscription);
    };
  }

  #ensure(): Promise<void> {
    if (this.#client !== null) return Promise.resolve();
    if (this.#connecting === null) {
      this.#connecting = this.#connect().finally(() => {
        this.#connecting = null;
      });
    }
    return this.#connecting;
  }

  async #connect(): Promise<void> {
    const client = new pg.Client(this.#config);
    client.on("notification", (msg) => {
      if (msg.channel === STREAM_CHANNEL && msg.payload !== undefined) this.#dispatch(msg.payload);
    });
    client.on("error", () => this.#lost(client));
    client.on("end", () => this.#lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${STREAM_CHANNEL}`);
    } catch (e) {
      client.end().catch(() => {});
      throw e;
    }
    if (this.#closed) {
      await client.end().catch(() => {});
      return;
    }
    this.#client = client;
    this.#backoffMs = 100;
  }

  #dispatch(payload: string): void {
    let event: StreamEvent;
    try {
      event = JSON.parse(payload) as StreamEvent;
    } catch {
      return;
    }
    for (const s of this.#subscribers) {
      try {
        s.onEvent(event);
      } catch {
        // A subscriber's failure is its own.
      }
    }
  }

  #lost(client: pg.Client): void {
    if (this.#client !== client) return;
    this.#client = null;
    client.end().catch(() => {});
    if (!this.#closed) this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#retry !== null) return;
    this.#retry = this.#timers.setTimeout(() => {
      this.#retry = null;
      if (this.#closed) return;
      this.#ensure().then(
        () => {
          for (const s of this.#subscribers) {
            try {
              s.onResync?.();
            } catch {
              // as above
            }
          }
        },
        () => {
          this.#backoffMs = Math.min(this.#backoffMs * 2, 5000);
          this.#scheduleReconnect();
        },
      );
    }, this.#backoffMs);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#subscribers.clear();
    if (this.#retry !== null) this.#timers.clearTimeout(this.#retry);
    await this.#connecting?.catch(() => {});
    const c = this.#client;
    this.#client = null;
    if (c !== null) await c.end().catch(() => {});
  }
}
