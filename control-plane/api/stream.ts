import type { WebSocket } from "ws";
import { decodeJwsUnverified } from "../../lib/crypto/jws.ts";
import { fail } from "../../lib/errors.ts";
import { parseJsonStrict } from "../../lib/json/strict-parse.ts";
import type { Timers } from "../../lib/timers.ts";
import type { AuthorizeContext } from "../http/route.ts";
import type { WsContext, WsRoute } from "../http/ws.ts";
import {
  MAX_EVENTS_PER_PAGE,
  STREAM_HELLO_TIMEOUT_S,
  type StreamServerMessage,
  type WorkerEvent,
} from "../protocol/schemas/api-worker.ts";
import { validate } from "../protocol/validate.ts";
import type { Store, StreamEvent, Unsubscribe, Worker } from "../store/store.ts";
import type { ApiContext, ApiGroup } from "./context.ts";

/**
 * The push stream, `WS /v1/workers/{id}/stream` (docs/protocol.md section 7), and what its
 * poll twin (`GET /v1/workers/{id}/commands`, commands.ts) shares with it: turning a stored
 * stream event into the event a worker receives, with the signed document it refers to.
 *
 * The store is the only source of truth for what a stream sends: live notifications (from
 * `store.subscribe`: this process's writes, and with PostgreSQL every instance's, through
 * LISTEN/NOTIFY) only say "something after id N exists". Each connection keeps a cursor (the
 * last id it sent) and one pump that sends events strictly in id order, so a live event that
 * arrives while the replay is still running is neither sent twice nor ahead of older ones,
 * and a lost notification (resync) costs one read from the cursor.
 */

export interface StreamOptions {
  /** How long a new stream may stay silent before its hello (default 10 s, then 1008). */
  readonly helloTimeoutMs?: number;
  /** The hello deadline's timer; `backgroundTimers` by default (the listener owns the lifetime). */
  readonly timers?: Timers;
}

/** The kinds whose event also changes the policy a long poll waits for. */
const POLICY_KINDS: ReadonlySet<string> = new Set(["publication", "revocation", "decommission"]);

/**
 * The worker a machine call acts on, if it may act at all (docs/protocol.md section 3):
 * unknown → 404, decommissioned → 403 AGENTD_E_CP_FORBIDDEN, quarantined → 403
 * AGENTD_E_CP_QUARANTINED (the heartbeat and attest routes do not use this).
 */
export async function servableWorker(
  store: Store,
  workerId: string,
  o: {
    /**
     * The stream and its poll twin: a decommissioned machine may still read its events, so
     * that the owner's decommission reaches it (it then wipes its credentials and stops).
     */
    readonly allowDecommissioned?: boolean;
  } = {},
): Promise<Worker> {
  const w = await store.getWorker(workerId);
  if (w === null) throw fail("AGENTD_E_CP_NOT_FOUND", "no such worker", { worker: workerId });
  if (w.decommissioned_at !== null && o.allowDecommissioned !== true) {
    throw fail("AGENTD_E_CP_FORBIDDEN", "this worker is decommissioned", { worker: workerId });
  }
  if (w.quarantine !== null) {
    throw fail("AGENTD_E_CP_QUARANTINED", "this worker is quarantined", { worker: workerId });
  }
  return w;
}

/**
 * The event as the worker receives it, or null when there is nothing to send for it: a
 * publication superseded by a newer one (whose own event is sent too, earlier or later, so
 * the worker always gets the latest) or a document that cannot be found. The store keeps only
 * the latest publication per worker reachable by version, which is also all an agent wants.
 */
export async function renderEvent(store: Store, e: StreamEvent): Promise<WorkerEvent | null> {
  switch (e.kind) {
    case "command": {
      const c = await store.getCommand(e.ref);
      if (c === null || c.worker_id !== e.worker_id) return null;
      return { id: e.id, kind: "command", jws: c.jws };
    }
    case "publication": {
      const p = await store.latestPublication(e.worker_id);
      if (p === null || String(p.version) !== e.ref) return null;
      const identity = p.consent_identity ?? consentOfPublication(p.jws);
      const consent = identity === null ? null : await store.getConsent(identity);
      if (consent === null) return null;
      return { id: e.id, kind: "publication", jws: p.jws, consent: consent.jws };
    }
    case "revocation":
    case "decommission": {
      const r = (await store.listRevocations(e.worker_id)).find((x) => String(x.id) === e.ref);
      if (r === undefined || r.kind !== e.kind) return null;
      return { id: e.id, kind: e.kind, jws: r.jws };
    }
    case "owner_rotation": {
      const r = (await store.listOwnerRotations(e.worker_id)).find((x) => String(x.id) === e.ref);
      if (r === undefined) return null;
      return { id: e.id, kind: "owner_rotation", jws: r.jws };
    }
    default:
      return null;
  }
}

/** The consent a stored publication countersigns, read from its own (trusted) payload. */
function consentOfPublication(jws: string): string | null {
  try {
    const payload = decodeJwsUnverified(jws).payload as { consent_sha256?: unknown };
    return typeof payload.consent_sha256 === "string" ? payload.consent_sha256 : null;
  } catch {
    return null;
  }
}

/**
 * Up to `max` events after `after`, rendered, for the poll. Events with nothing to send are
 * skipped without ending the page early, so `last` — the id up to which this answer is
 * complete — is safe to pass as the next `after`. An `after` above the worker's highest id
 * (a database restored from a backup) is clamped, so that the answer's `last` goes down and
 * the agent sees the reset.
 */
export async function eventsAfter(
  store: Store,
  worker: Worker,
  after: number,
  max = MAX_EVENTS_PER_PAGE,
): Promise<{ events: WorkerEvent[]; last: number }> {
  let cursor = Math.min(after, worker.last_event_id);
  const events: WorkerEvent[] = [];
  while (events.length < max) {
    const page = await store.streamEventsSince(worker.worker_id, cursor, max);
    for (const e of page) {
      if (events.length >= max) return { events, last: cursor };
      const rendered = await renderEvent(store, e);
      if (rendered !== null) events.push(rendered);
      cursor = e.id;
    }
    if (page.length < max) break;
  }
  return { events, last: cursor };
}

/** One open stream: its cursor and the pump that moves it. */
class Connection {
  readonly workerId: string;
  readonly #ctx: ApiContext;
  readonly #ws: WebSocket;
  /** Last id sent; null until the hello. */
  cursor: number | null = null;
  closed = false;
  #ready = false;
  #running = false;
  #again = false;
  /** The store must be read from the cursor (hello, resync, a gap in what was notified). */
  #mustRead = false;
  /** Notified events not yet sent, by id: sent without a read when they continue the cursor. */
  readonly #known = new Map<number, StreamEvent>();

  constructor(ctx: ApiContext, ws: WebSocket, workerId: string) {
    this.#ctx = ctx;
    this.#ws = ws;
    this.workerId = workerId;
  }

  start(after: number): void {
    this.cursor = after;
    this.#mustRead = true;
    this.pump();
  }

  offer(e: StreamEvent): void {
    if (this.cursor === null || e.id <= this.cursor) return;
    this.#known.set(e.id, e);
    this.pump();
  }

  resync(): void {
    if (this.cursor === null) return;
    this.#mustRead = true;
    this.pump();
  }

  pump(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    void (async () => {
      try {
        do {
          this.#again = false;
          await this.#drain();
          if (!this.#ready && !this.closed) {
            this.#ready = true;
            this.#send({ type: "ready", last_event_id: this.cursor ?? 0 });
          }
        } while (this.#again && !this.closed);
      } catch (err) {
        this.#ctx.logger.error({ err, worker: this.workerId }, "stream push failed");
        if (!this.closed) this.#ws.close(1011, "internal error");
      } finally {
        this.#running = false;
      }
    })();
  }

  async #drain(): Promise<void> {
    while (!this.closed) {
      const run = this.#takeKnownRun();
      if (run.length > 0) {
        await this.#sendEvents(run);
        continue;
      }
      if (this.#known.size > 0) this.#mustRead = true; // a gap: read what is missing
      if (!this.#mustRead) return;
      this.#mustRead = false;
      const page = await this.#ctx.store.streamEventsSince(
        this.workerId,
        this.cursor ?? 0,
        MAX_EVENTS_PER_PAGE,
      );
      await this.#sendEvents(page);
      if (page.length === MAX_EVENTS_PER_PAGE) this.#mustRead = true;
      // The store has been read up to its end: what was notified and not in it is not
      // readable (yet); its notification, or the next one, brings it.
      else this.#known.clear();
    }
  }

  /** The notified events continuing the cursor, in order; older ones are dropped. */
  #takeKnownRun(): StreamEvent[] {
    const cursor = this.cursor ?? 0;
    for (const id of this.#known.keys()) if (id <= cursor) this.#known.delete(id);
    const run: StreamEvent[] = [];
    for (let id = cursor + 1; ; id++) {
      const e = this.#known.get(id);
      if (e === undefined) break;
      this.#known.delete(id);
      run.push(e);
    }
    return run;
  }

  async #sendEvents(events: readonly StreamEvent[]): Promise<void> {
    for (const e of events) {
      if (this.closed) return;
      if (e.id <= (this.cursor ?? 0)) continue;
      const rendered = await renderEvent(this.#ctx.store, e);
      if (this.closed) return;
      if (rendered !== null) this.#send({ type: "event", ...rendered });
      this.cursor = e.id;
    }
  }

  #send(message: StreamServerMessage): void {
    if (!this.#ctx.hub.sendTo(this.workerId, this.#ws, JSON.stringify(message))) {
      this.closed = true; // dropped by the hub's backpressure bound (terminated)
    }
  }
}

/** The stream route and the fan-out of committed events to the streams open here. */
export function streamGroup(ctx: ApiContext, options: StreamOptions = {}): ApiGroup {
  const helloTimeoutMs = options.helloTimeoutMs ?? STREAM_HELLO_TIMEOUT_S * 1000;
  const timers = options.timers ?? ctx.timers;
  const byWorker = new Map<string, Set<Connection>>();
  let unsubscribe: Unsubscribe | undefined;

  const each = (fn: (c: Connection) => void, workerId?: string) => {
    const sets = workerId === undefined ? [...byWorker.values()] : [byWorker.get(workerId)];
    for (const set of sets) if (set !== undefined) for (const c of [...set]) fn(c);
  };

  const onOpen = (w: WsContext) => {
    const workerId = w.params.id as string;
    const conn = new Connection(ctx, w.ws, workerId);
    let set = byWorker.get(workerId);
    if (set === undefined) {
      set = new Set();
      byWorker.set(workerId, set);
    }
    set.add(conn);
    let helloSeen = false;
    const helloTimer = timers.setTimeout(() => {
      if (!helloSeen) w.ws.close(1008, "no hello");
    }, helloTimeoutMs);
    w.ws.once("close", () => {
      conn.closed = true;
      timers.clearTimeout(helloTimer);
      const s = byWorker.get(workerId);
      s?.delete(conn);
      if (s?.size === 0) byWorker.delete(workerId);
    });
    w.ws.on("message", (data, isBinary) => {
      if (helloSeen) return void w.ws.close(1008, "one hello per stream");
      helloSeen = true;
      let after: number;
      try {
        if (isBinary) throw fail("AGENTD_E_SCHEMA", "binary message");
        const text = Buffer.isBuffer(data) ? data.toString("utf8") : String(data);
        after = validate("stream-client-message", parseJsonStrict(text)).after;
      } catch {
        return void w.ws.close(1008, "expected a hello");
      }
      timers.clearTimeout(helloTimer);
      ctx.store.getWorker(workerId).then(
        (worker) => {
          if (conn.closed) return;
          if (worker === null) return void w.ws.close(1008, "no such worker");
          conn.start(Math.min(after, worker.last_event_id));
        },
        (err: unknown) => {
          ctx.logger.error({ err, worker: workerId }, "stream hello failed");
          if (!conn.closed) w.ws.close(1011, "internal error");
        },
      );
    });
  };

  const route: WsRoute = {
    path: "/v1/workers/{id}/stream",
    auth: ["machine"],
    machineParam: "id",
    hubKey: "id",
    async authorize(a: AuthorizeContext) {
      await servableWorker(ctx.store, a.params.id as string, { allowDecommissioned: true });
    },
    onOpen,
  };

  return {
    routes: [],
    wsRoutes: [route],
    async start() {
      unsubscribe = await ctx.store.subscribe({
        onEvent: (e) => {
          each((c) => c.offer(e), e.worker_id);
          if (POLICY_KINDS.has(e.kind)) ctx.policyNotifier.notify(e.worker_id);
        },
        onResync: () => {
          each((c) => c.resync());
          // A long poll whose publication arrived during the outage wakes and re-checks.
          for (const workerId of byWorker.keys()) ctx.policyNotifier.notify(workerId);
        },
      });
    },
    async stop() {
      const u = unsubscribe;
      unsubscribe = undefined;
      await u?.();
    },
  };
}
