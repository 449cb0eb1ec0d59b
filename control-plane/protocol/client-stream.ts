import type { ClientRequest, IncomingMessage } from "node:http";
import WebSocket from "ws";
import { type AgentdError, fail, isAgentdError } from "../../lib/errors.ts";
import { parseJsonStrict } from "../../lib/json/strict-parse.ts";
import { backgroundTimers, type TimerHandle, type Timers } from "../../lib/timers.ts";
import { errorFromReply } from "./client-http.ts";
import type { StreamServerMessage, WorkerEvent } from "./schemas/api-worker.ts";
import { pinnedClientTlsOptions } from "./tls.ts";
import { validate } from "./validate.ts";

/**
 * The push stream (docs/protocol.md section 7) as the agent holds it: a WebSocket upgrade
 * authenticated like any machine call (access token + a proof for the `https://` form of the
 * URL, fresh on every connection), `hello` with the last event id processed, then events in
 * id order.
 *
 * Resumable: an event counts as processed when `onEvent` has returned (or its promise
 * resolved), and every reconnection asks for what comes after the last processed id, so a
 * dropped connection loses nothing and an event is handed over once (ids at or below the
 * last processed one are skipped; ids may have gaps, docs/protocol.md section 7). A stream
 * that stays silent — no message, no ping — for `idleTimeoutMs` is presumed dead (a NAT
 * dropped it) and replaced. Reconnections back off exponentially with jitter and reset once
 * a stream is ready. Failures, including a refused upgrade (the server's error code: an
 * expired token, quarantine…), go to `onError` and the stream keeps trying until `close`: the
 * caller decides when to give up (and re-attests in between, which the next connection picks
 * up).
 *
 * A message that fails the schema (not JSON, not an object the schema describes, a binary
 * frame) is skipped and the stream stays open: ending it would make the control plane send
 * the same message again on the next connection, forever, and nothing after it would ever
 * arrive. It goes to `onInvalid` (in order with the events) with its id when one can be read,
 * and the position moves past that id, so it is not asked for again.
 */

export interface StreamOptions {
  /** The last event id already processed (0: none). */
  readonly after: number;
  /** Each new event once, in id order; the next waits until this one returns or resolves. */
  readonly onEvent: (event: WorkerEvent) => void | Promise<void>;
  /** After the backlog: the server's last event id (every earlier one was handed over). */
  readonly onReady?: (lastEventId: number) => void;
  readonly onError?: (err: AgentdError) => void;
  /**
   * A message skipped because it fails the schema: its event id if it has a readable one above
   * the position (null otherwise), and why. Called in order with `onEvent`; once it returns
   * (or its promise resolves), the position is past that id. A throw is reported to
   * `onError` and the position still moves (the message is invalid whatever happens).
   */
  readonly onInvalid?: (invalid: InvalidMessage) => void | Promise<void>;
  /** Default 60 s (the server pings every 25 s). */
  readonly idleTimeoutMs?: number;
  /** Reconnection delays: first and largest. Default 1 s and 30 s. */
  readonly reconnectMinMs?: number;
  readonly reconnectMaxMs?: number;
  /**
   * The idle deadline, the reconnection backoff and the close's grace. `backgroundTimers` by
   * default: an open stream's socket keeps the process alive, a pending reconnection must not.
   */
  readonly timers?: Timers;
}

export interface InvalidMessage {
  readonly id: number | null;
  /** The schema's (or the parser's) complaint, at most 200 characters. */
  readonly why: string;
}

export interface StreamHandle {
  /** The last event id processed. */
  lastEventId(): number;
  /** Whether a stream is open and past its backlog now. */
  ready(): boolean;
  /** Stops for good: closes the stream and waits for the event in hand to finish. */
  close(): Promise<void>;
}

export interface StreamTarget {
  readonly origin: string;
  readonly caPem: string;
  readonly path: string;
  /** Authorization and proof for one upgrade request (called per connection). */
  readonly headers: () => Record<string, string>;
}

/** Incoming messages are bounded like the server's (64 KiB) plus room for a consent. */
const MAX_MESSAGE_BYTES = 256 * 1024;

/** The event id of a message that failed the schema, if it has a plausible one. */
function idOf(parsed: unknown): number | null {
  const m = parsed as { type?: unknown; id?: unknown } | null | undefined;
  if (typeof m !== "object" || m === null || m.type !== "event") return null;
  return typeof m.id === "number" && Number.isSafeInteger(m.id) && m.id > 0 ? m.id : null;
}

export function openStream(o: StreamTarget & StreamOptions): StreamHandle {
  const url = `${o.origin.replace(/^https:/, "wss:")}${o.path}`;
  const idleMs = o.idleTimeoutMs ?? 60_000;
  const minMs = o.reconnectMinMs ?? 1_000;
  const maxMs = Math.max(minMs, o.reconnectMaxMs ?? 30_000);
  const timers = o.timers ?? backgroundTimers;
  let lastId = o.after;
  let closed = false;
  let isReady = false;
  let attempt = 0;
  let current: WebSocket | undefined;
  let idle: TimerHandle | undefined;
  let retry: TimerHandle | undefined;
  let queue: Promise<void> = Promise.resolve();

  const report = (err: unknown) => {
    const e = isAgentdError(err)
      ? err
      : fail("AGENTD_E_HTTP", `stream: ${(err as Error)?.message ?? String(err)}`, {}, err);
    try {
      o.onError?.(e);
    } catch {
      // the caller's reporting must not stop the stream
    }
  };

  const schedule = () => {
    if (closed || retry !== undefined) return;
    const base = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 20));
    attempt += 1;
    retry = timers.setTimeout(
      () => {
        retry = undefined;
        connect();
      },
      Math.round(base * (0.5 + Math.random() / 2)),
    );
  };

  const connect = () => {
    if (closed) return;
    let headers: Record<string, string>;
    try {
      headers = o.headers();
    } catch (err) {
      report(err);
      schedule();
      return;
    }
    const ws = new WebSocket(url, {
      ...pinnedClientTlsOptions(o.caPem),
      headers,
      perMessageDeflate: false,
      maxPayload: MAX_MESSAGE_BYTES,
      handshakeTimeout: 30_000,
      followRedirects: false,
    });
    current = ws;
    // A refused upgrade is reported once, with the server's code, not again as its echo.
    let refused = false;
    const live = () => ws === current && !closed;
    const arm = () => {
      if (idle !== undefined) timers.clearTimeout(idle);
      idle = timers.setTimeout(() => {
        if (live()) ws.terminate();
      }, idleMs);
    };
    ws.on("unexpected-response", (req: ClientRequest, res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        refused = true;
        report(
          errorFromReply(
            {
              status: res.statusCode ?? 0,
              headers: res.headers,
              text: Buffer.concat(chunks).toString("utf8"),
            },
            `GET ${o.path}`,
          ),
        );
        req.destroy();
        ws.terminate();
      });
    });
    ws.on("open", () => {
      arm();
      ws.send(JSON.stringify({ type: "hello", v: 1, after: lastId }));
    });
    ws.on("ping", arm);
    ws.on("message", (data: WebSocket.RawData, isBinary: boolean) => {
      if (!live()) return;
      arm();
      let msg: StreamServerMessage;
      let parsed: unknown;
      try {
        if (isBinary) throw fail("AGENTD_E_HTTP", "stream: a binary message");
        parsed = parseJsonStrict(String(data));
        msg = validate("stream-server-message", parsed);
      } catch (err) {
        const why = (isAgentdError(err) ? `${err.code}: ${err.message}` : String(err)).slice(
          0,
          200,
        );
        queue = queue.then(() => skip(ws, idOf(parsed), why));
        return;
      }
      queue = queue.then(() => handle(ws, msg));
    });
    ws.on("error", (err: Error) => {
      if (!refused) report(err);
    });
    ws.on("close", () => {
      if (ws !== current) return;
      current = undefined;
      isReady = false;
      if (idle !== undefined) timers.clearTimeout(idle);
      schedule();
    });
  };

  const skip = async (ws: WebSocket, id: number | null, why: string) => {
    if (ws !== current || closed) return;
    // At or below the position: handed over before (or skipped before); nothing to say.
    const above = id !== null && id > lastId ? id : null;
    if (id !== null && above === null) return;
    try {
      await o.onInvalid?.({ id: above, why });
    } catch (err) {
      report(err);
    }
    if (above !== null) lastId = above;
  };

  const handle = async (ws: WebSocket, msg: StreamServerMessage) => {
    if (ws !== current || closed) return;
    if (msg.type === "ready") {
      // A control plane restored from a backup has fewer events than we processed; its new
      // events continue from its own last id, so that is where "after" must stand now or
      // they would be skipped. Replays are harmless: documents carry their own seq/version.
      if (msg.last_event_id < lastId) lastId = msg.last_event_id;
      isReady = true;
      attempt = 0;
      o.onReady?.(msg.last_event_id);
      return;
    }
    if (msg.id <= lastId) return;
    const { type: _type, ...event } = msg;
    try {
      await o.onEvent(event as WorkerEvent);
      lastId = msg.id;
    } catch (err) {
      // Not processed: the next connection hands it over again.
      report(err);
      ws.terminate();
    }
  };

  connect();
  return {
    lastEventId: () => lastId,
    ready: () => isReady,
    async close() {
      if (closed) return queue;
      closed = true;
      isReady = false;
      if (retry !== undefined) timers.clearTimeout(retry);
      if (idle !== undefined) timers.clearTimeout(idle);
      const ws = current;
      current = undefined;
      if (ws !== undefined && ws.readyState !== WebSocket.CLOSED) {
        await new Promise<void>((resolve) => {
          const timer = timers.setTimeout(() => ws.terminate(), 1_000);
          ws.once("close", () => {
            timers.clearTimeout(timer);
            resolve();
          });
          if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
          else ws.close(1000, "closing");
        });
      }
      await queue;
    },
  };
}
