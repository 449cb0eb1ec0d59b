import { createServer as createNetServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import { afterEach } from "vitest";

/**
 * A tiny Stratum V1 pool for the upstream tests, written from PROTOCOLS.md with node:net
 * (independent of sim/ on purpose). It records every message it receives, per connection,
 * and answers the handshake like a BIP 310 pool unless told otherwise.
 */

export interface Received {
  readonly conn: number;
  readonly id: unknown;
  readonly method: string;
  readonly params: unknown[];
}

export interface FakeClient {
  readonly index: number;
  readonly socket: Socket;
  send(message: unknown): void;
  notify(method: string, params: unknown[]): void;
}

type Reply = { result: unknown; error?: unknown } | { raw: Record<string, unknown> } | "ignore";

export interface FakePoolOptions {
  readonly tls?: { readonly key: string; readonly cert: string };
  readonly configure?: (params: unknown[]) => Reply;
  readonly authorize?: (params: unknown[], client: FakeClient) => boolean;
  /** Called after a successful authorize reply. Default: difficulty 8 and a clean job "j1". */
  readonly onAuthorized?: (client: FakeClient) => void;
  readonly submit?: (params: unknown[], client: FakeClient) => Reply;
  /** Close each connection as soon as it is accepted. */
  readonly closeOnAccept?: boolean;
}

export const PREVHASH = "00".repeat(32);

export function notifyParams(jobId: string, clean: boolean): unknown[] {
  return [jobId, PREVHASH, "01000000", "ffffffff", [], "20000000", "1d00ffff", "5f5e1000", clean];
}

export class FakePool {
  readonly received: Received[] = [];
  /** Replies the client sent to our requests (ping, get_version, reconnect). */
  readonly replies: { conn: number; id: unknown; result: unknown; error: unknown }[] = [];
  readonly clients: FakeClient[] = [];
  port = 0;
  readonly #server: Server;
  readonly #options: FakePoolOptions;

  constructor(options: FakePoolOptions = {}) {
    this.#options = options;
    const onSocket = (socket: Socket) => this.#accept(socket);
    this.#server =
      options.tls === undefined
        ? createNetServer(onSocket)
        : createTlsServer({ key: options.tls.key, cert: options.tls.cert }, onSocket);
    // A client refusing our certificate makes the TLS server emit this; it is expected.
    this.#server.on("tlsClientError", () => {});
  }

  async listen(port = 0): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(port, "127.0.0.1", () => resolve());
    });
    const a = this.#server.address();
    if (a === null || typeof a === "string") throw new Error("no port");
    this.port = a.port;
    return this;
  }

  get url(): string {
    return `stratum+${this.#options.tls === undefined ? "tcp" : "ssl"}://127.0.0.1:${this.port}`;
  }

  methods(conn?: number): string[] {
    return this.received.filter((r) => conn === undefined || r.conn === conn).map((r) => r.method);
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(socket: Socket): void {
    socket.on("error", () => {});
    const client: FakeClient = {
      index: this.clients.length,
      socket,
      send: (m) => {
        if (!socket.destroyed) socket.write(`${JSON.stringify(m)}\n`);
      },
      notify: (method, params) => client.send({ id: null, method, params }),
    };
    this.clients.push(client);
    if (this.#options.closeOnAccept === true) {
      socket.destroy();
      return;
    }
    let buffer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const m = JSON.parse(line) as {
          id: unknown;
          method?: string;
          params?: unknown[];
          result?: unknown;
          error?: unknown;
        };
        if (typeof m.method !== "string") {
          this.replies.push({ conn: client.index, id: m.id, result: m.result, error: m.error });
          continue;
        }
        const params = m.params ?? [];
        this.received.push({ conn: client.index, id: m.id, method: m.method, params });
        this.#answer(client, m.id, m.method, params);
      }
    });
  }

  #answer(client: FakeClient, id: unknown, method: string, params: unknown[]): void {
    const r = this.#replyFor(client, method, params);
    if (r !== "ignore") {
      if ("raw" in r) client.send({ id, ...r.raw });
      else client.send({ id, result: r.result, error: r.error ?? null });
    }
    if (method !== "mining.authorize" || r === "ignore" || !("result" in r) || r.result !== true) {
      return;
    }
    const o = this.#options;
    if (o.onAuthorized !== undefined) {
      o.onAuthorized(client);
      return;
    }
    client.notify("mining.set_difficulty", [8]);
    client.notify("mining.notify", notifyParams("j1", true));
  }

  #replyFor(client: FakeClient, method: string, params: unknown[]): Reply {
    const o = this.#options;
    switch (method) {
      case "mining.configure":
        return (
          o.configure?.(params) ?? {
            result: { "version-rolling": true, "version-rolling.mask": "1fffe000" },
          }
        );
      case "mining.subscribe":
        return {
          result: [
            [
              ["mining.set_difficulty", "s1"],
              ["mining.notify", "s1"],
            ],
            "f000000d",
            4,
          ],
        };
      case "mining.extranonce.subscribe":
        return { result: true };
      case "mining.authorize":
        return { result: o.authorize?.(params, client) ?? true };
      case "mining.submit":
        return o.submit?.(params, client) ?? { result: true };
      default:
        return { result: null, error: [20, "unknown method", null] };
    }
  }
}

/** Fake pools closed after each test. */
export function usePools(): (options?: FakePoolOptions, port?: number) => Promise<FakePool> {
  const pools: FakePool[] = [];
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close()));
  });
  return async (options = {}, port = 0) => {
    const pool = new FakePool(options);
    pools.push(pool);
    return pool.listen(port);
  };
}
