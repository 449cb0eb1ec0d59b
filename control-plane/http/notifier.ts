/**
 * "Something changed for key K": published by whoever writes (a new publication for a
 * worker, a queued command) and awaited by long polls. Listeners are kept per key and removed
 * by the function `subscribe` returns, so a poll that ends for any reason leaves nothing
 * behind. Across processes the lead feeds this from PostgreSQL LISTEN/NOTIFY.
 */

export interface Notifier {
  subscribe(key: string, listener: () => void): () => void;
}

export class KeyedNotifier implements Notifier {
  readonly #listeners = new Map<string, Set<() => void>>();

  subscribe(key: string, listener: () => void): () => void {
    let set = this.#listeners.get(key);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(key, set);
    }
    // A wrapper per subscription, so one function subscribed twice is two subscriptions.
    const entry = () => listener();
    set.add(entry);
    return () => {
      const s = this.#listeners.get(key);
      if (s === undefined) return;
      s.delete(entry);
      if (s.size === 0) this.#listeners.delete(key);
    };
  }

  notify(key: string): void {
    const set = this.#listeners.get(key);
    if (set === undefined) return;
    for (const listener of [...set]) listener();
  }

  /** Listeners currently waiting on `key` (all keys when omitted). */
  listenerCount(key?: string): number {
    if (key !== undefined) return this.#listeners.get(key)?.size ?? 0;
    let n = 0;
    for (const s of this.#listeners.values()) n += s.size;
    return n;
  }
}
