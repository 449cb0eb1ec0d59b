import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { connect } from "node:tls";
import { describe, expect, it } from "vitest";
import { type RawData, WebSocket } from "ws";
import { createHttpMetrics } from "../../../control-plane/http/metrics.ts";
import { type DropReason, StreamHub } from "../../../control-plane/http/stream-hub.ts";
import {
  createWsEndpoint,
  type WsContext,
  type WsEndpoint,
} from "../../../control-plane/http/ws.ts";
import { fail } from "../../../lib/errors.ts";
import { Registry } from "../../../lib/metrics/registry.ts";
import { backgroundTimers, type Timers } from "../../../lib/timers.ts";
import {
  captureLogger,
  fakeMachineAuth,
  machineHeaders,
  makeApiKeys,
  until,
  useServers,
  useTestCert,
} from "./helpers.ts";

const cert = useTestCert();
const start = useServers();

async function setup(options: { maxMessageBytes?: number; maxBufferedBytes?: number } = {}) {
  const drops: string[] = [];
  const hub = new StreamHub({
    maxBufferedBytes: options.maxBufferedBytes ?? 1024 * 1024,
    onDrop: (key: string, reason: DropReason) => drops.push(`${key}:${reason}`),
  });
  const opened: WsContext[] = [];
  const intervals: (() => void)[] = [];
  // Pings run when the test says so; the close grace runs on real (unref'd) time.
  const timers: Timers = {
    ...backgroundTimers,
    setInterval: (fn) => intervals.push(fn),
    clearInterval: () => {},
  };
  const keys = makeApiKeys();
  const registry = new Registry();
  let endpoint: WsEndpoint | undefined;
  const { api, port } = await start({
    routes: [],
    tls: cert(),
    findApiKey: keys.findApiKey,
    authenticateMachine: fakeMachineAuth().authenticateMachine,
    logger: captureLogger().logger,
    metrics: createHttpMetrics(registry),
    onUpgrade: (shared) => {
      endpoint = createWsEndpoint(shared, {
        routes: [
          {
            path: "/v1/workers/{id}/stream",
            auth: ["machine", "admin"],
            machineParam: "id",
            hubKey: "id",
            query: ["after"],
            authorize: async (ctx) => {
              if (ctx.params.id === "quarantined") {
                throw fail("AGENTD_E_CP_QUARANTINED", "this worker is quarantined");
              }
            },
            onOpen: (ctx) => {
              if (ctx.params.id === "broken") throw new Error("onOpen bug");
              opened.push(ctx);
            },
          },
        ],
        hub,
        timers,
        ...(options.maxMessageBytes === undefined
          ? {}
          : { maxMessageBytes: options.maxMessageBytes }),
      });
      return endpoint;
    },
  });
  if (endpoint === undefined) throw new Error("no endpoint");
  return { api, port, hub, opened, intervals, keys, registry, drops, endpoint };
}

const url = (port: number, worker: string, query = "") =>
  `wss://127.0.0.1:${port}/v1/workers/${worker}/stream${query}`;

function open(
  address: string,
  headers: Record<string, string>,
  autoPong = true,
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(address, { ca: cert().cert, headers, autoPong });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

/** The HTTP status and error code of a refused upgrade. */
function refused(address: string, headers: Record<string, string>): Promise<[number, string]> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(address, { ca: cert().cert, headers });
    ws.once("open", () => reject(new Error("upgrade accepted")));
    ws.on("error", () => {});
    ws.once("unexpected-response", (_req, res: IncomingMessage) => {
      let text = "";
      res.on("data", (d: Buffer) => {
        text += d;
      });
      res.on("end", () => {
        const code = (JSON.parse(text) as { error: { code: string } }).error.code;
        expect(Object.keys(res.headers).some((h) => h.startsWith("access-control-"))).toBe(false);
        resolve([res.statusCode ?? 0, code]);
      });
    });
  });
}

function nextMessage(ws: WebSocket): Promise<string> {
  return new Promise((resolve) => ws.once("message", (d: RawData) => resolve(String(d))));
}

function closed(ws: WebSocket): Promise<number> {
  return new Promise((resolve) => ws.once("close", (code: number) => resolve(code)));
}

describe("WebSocket streams", () => {
  it("refuses upgrades without valid credentials, for another worker, or to unknown paths", async () => {
    const s = await setup();
    expect(await refused(url(s.port, "w1"), {})).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    expect(
      await refused(url(s.port, "w1"), {
        authorization: "AgentD tok-w1",
        "agentd-proof": "forged",
      }),
    ).toEqual([401, "AGENTD_E_CP_PROOF_INVALID"]);
    expect(await refused(url(s.port, "w2"), machineHeaders("w1"))).toEqual([
      403,
      "AGENTD_E_CP_FORBIDDEN",
    ]);
    expect(
      await refused(url(s.port, "w1"), { authorization: `Bearer ${s.keys.keys.operator}` }),
    ).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
    expect(await refused(`wss://127.0.0.1:${s.port}/v1/nothing`, machineHeaders("w1"))).toEqual([
      404,
      "AGENTD_E_CP_NOT_FOUND",
    ]);
    expect(await refused(url(s.port, "w1", "?x=1"), machineHeaders("w1"))).toEqual([
      400,
      "AGENTD_E_SCHEMA",
    ]);
    expect(s.opened).toEqual([]);
    expect(s.hub.count()).toBe(0);
  });

  it("accepts an authenticated machine and pushes through the hub to that worker only", async () => {
    const s = await setup();
    const w1 = await open(url(s.port, "w1", "?after=5"), machineHeaders("w1"));
    const w2 = await open(url(s.port, "w2"), machineHeaders("w2"));
    expect(s.opened.map((c) => [c.caller, c.params, { ...c.query }])).toEqual([
      [{ kind: "machine", workerId: "w1" }, { id: "w1" }, { after: "5" }],
      [{ kind: "machine", workerId: "w2" }, { id: "w2" }, {}],
    ]);
    expect(s.hub.count("w1")).toBe(1);
    const got1 = nextMessage(w1);
    const got2 = nextMessage(w2);
    expect(s.hub.send("w1", { type: "command", id: "c1" })).toBe(1);
    expect(JSON.parse(await got1)).toEqual({ type: "command", id: "c1" });
    // w2's first message is its own: the one for w1 never reached it.
    s.hub.send("w2", { type: "command", id: "c2" });
    expect(JSON.parse(await got2)).toEqual({ type: "command", id: "c2" });
    expect(s.registry.render()).toContain("agentd_cp_ws_connections 2");
    const gone = closed(w1);
    w1.close();
    await gone;
    await until(() => s.hub.count("w1") === 0, "w1 removed from the hub");
    expect(s.hub.count("w2")).toBe(1);
    w2.terminate();
  });

  it("terminates a stream that misses a pong, and keeps one that answers", async () => {
    const s = await setup();
    const deaf = await open(url(s.port, "w1"), machineHeaders("w1"), false);
    const healthy = await open(url(s.port, "w2"), machineHeaders("w2"), true);
    const sweep = s.intervals[0] as () => void;
    const deafPinged = new Promise<void>((r) => deaf.once("ping", () => r()));
    const serverSideHealthy = s.opened[1]?.ws as WebSocket;
    const ponged = new Promise<void>((r) => serverSideHealthy.once("pong", () => r()));
    const deafClosed = closed(deaf);
    sweep();
    await deafPinged;
    await ponged;
    sweep();
    expect(await deafClosed).toBe(1006);
    await until(() => s.endpoint.clients.size === 1, "one stream left");
    expect(healthy.readyState).toBe(WebSocket.OPEN);
    const msg = nextMessage(healthy);
    s.hub.send("w2", "still here");
    expect(await msg).toBe("still here");
    expect(s.registry.render()).toContain('agentd_cp_ws_dropped_total{reason="missed_pong"} 1');
    healthy.terminate();
  });

  it("closes a stream whose onOpen throws with 1011 and forgets it", async () => {
    const s = await setup();
    const ws = await open(url(s.port, "broken"), machineHeaders("broken"));
    expect(await closed(ws)).toBe(1011);
    await until(() => s.endpoint.clients.size === 0 && s.hub.count() === 0, "stream forgotten");
  });

  it("closes a stream that sends a message over the size limit (1009)", async () => {
    const s = await setup({ maxMessageBytes: 1024 });
    const ws = await open(url(s.port, "w1"), machineHeaders("w1"));
    const code = closed(ws);
    ws.send("x".repeat(2000));
    expect(await code).toBe(1009);
    await until(() => s.endpoint.clients.size === 0, "stream gone");
  });

  it("drops a stream that does not read instead of buffering without bound", async () => {
    const s = await setup({ maxBufferedBytes: 256 * 1024 });
    const sock = connect({ host: "127.0.0.1", port: s.port, ca: cert().cert });
    sock.on("error", () => {});
    await new Promise<void>((r) => sock.once("secureConnect", () => r()));
    const head = await new Promise<string>((resolve) => {
      let text = "";
      const onData = (d: Buffer) => {
        text += d.toString("latin1");
        if (text.includes("\r\n\r\n")) {
          sock.off("data", onData);
          sock.pause(); // and never read again
          resolve(text);
        }
      };
      sock.on("data", onData);
      sock.write(
        [
          "GET /v1/workers/w1/stream HTTP/1.1",
          `Host: 127.0.0.1:${s.port}`,
          "Upgrade: websocket",
          "Connection: Upgrade",
          `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`,
          "Sec-WebSocket-Version: 13",
          "Authorization: AgentD tok-w1",
          "AgentD-Proof: proof-ok",
          "",
          "",
        ].join("\r\n"),
      );
    });
    expect(head).toMatch(/^HTTP\/1\.1 101 /);
    await until(() => s.hub.count("w1") === 1, "stream registered");
    const chunk = "x".repeat(64 * 1024);
    let sent = 0;
    while (s.hub.count("w1") === 1 && sent < 2000) {
      s.hub.send("w1", chunk);
      sent++;
      await new Promise<void>((r) => setImmediate(r));
    }
    expect(s.hub.count("w1")).toBe(0);
    expect(s.drops).toEqual(["w1:backpressure"]);
    await until(() => s.endpoint.clients.size === 0, "stream terminated");
    sock.destroy();
  });

  it("closes every stream when the server closes", async () => {
    const s = await setup();
    const a = await open(url(s.port, "w1"), machineHeaders("w1"));
    const b = await open(url(s.port, "w2"), { authorization: `Bearer ${s.keys.keys.admin}` });
    const codes = Promise.all([closed(a), closed(b)]);
    await s.api.close(600_000);
    expect(await codes).toEqual([1001, 1001]);
    expect(s.endpoint.clients.size).toBe(0);
  });
});
