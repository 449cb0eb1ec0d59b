import type { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import {
  type CloseReason,
  CodecCounters,
  type ConnectionOptions,
  JsonRpcConnection,
  requestFailure,
} from "../../stratum-client/codec.ts";
import { deferred, lineReader, useLoopback } from "./net-helpers.ts";

const net = useLoopback();

interface Served {
  readonly port: number;
  /** The server side of the first connection. */
  readonly conn: Promise<JsonRpcConnection>;
  /** Its close reason, once. */
  readonly closed: Promise<CloseReason>;
  readonly closes: CloseReason[];
  /** The server side's raw socket. */
  readonly socket: Promise<Socket>;
}

/** A server wrapping each accepted socket in a JsonRpcConnection with these options. */
async function serve(options: ConnectionOptions = {}): Promise<Served> {
  const first = deferred<JsonRpcConnection>();
  const raw = deferred<Socket>();
  const closed = deferred<CloseReason>();
  const closes: CloseReason[] = [];
  const { port } = await net.listen((socket) => {
    const conn = new JsonRpcConnection(socket, {
      ...options,
      onClose: (reason, error) => {
        closes.push(reason);
        closed.resolve(reason);
        options.onClose?.(reason, error);
      },
    });
    first.resolve(conn);
    raw.resolve(socket);
  });
  return { port, conn: first.promise, closed: closed.promise, closes, socket: raw.promise };
}

async function client(port: number, options: ConnectionOptions = {}) {
  const socket = await net.dial(port);
  const closed = deferred<CloseReason>();
  const conn = new JsonRpcConnection(socket, {
    ...options,
    onClose: (reason, error) => {
      closed.resolve(reason);
      options.onClose?.(reason, error);
    },
  });
  return { socket, conn, closed: closed.promise };
}

function write(socket: Socket, text: string): void {
  socket.write(text);
}

describe("JSON-RPC over lines", () => {
  it("matches replies to requests by id, delivers notifications and answers requests", async () => {
    const notified = deferred<unknown>();
    const srv = await serve({
      onRequest: (req, conn) => conn.reply(req.id, { echo: req.params, method: req.method }),
    });
    const c = await client(srv.port, { onNotification: (m, p) => notified.resolve([m, p]) });
    const [a, b] = await Promise.all([c.conn.send("x.one", [1]), c.conn.send("x.two", [2])]);
    expect(a.result).toEqual({ echo: [1], method: "x.one" });
    expect(b.result).toEqual({ echo: [2], method: "x.two" });
    expect(a.id).not.toBe(b.id);
    (await srv.conn).notify("mining.set_difficulty", [512]);
    expect(await notified.promise).toEqual(["mining.set_difficulty", [512]]);
    expect(c.conn.stats.pendingOut).toBe(0);
    expect((await srv.conn).stats.pendingIn).toBe(0);
  });

  it("accepts a reply whose id is our number as a string (some pools)", async () => {
    const { port } = await net.listen((socket) => {
      socket.on("data", (d) => {
        const req = JSON.parse(d.toString()) as { id: number };
        socket.write(`{"id":"${req.id}","result":true,"error":null}\n`);
      });
    });
    const c = await client(port);
    const reply = await c.conn.send("mining.authorize", ["u", "x"]);
    expect(reply.result).toBe(true);
  });

  it("treats a listed method with a non-null id as a notification (never in flight)", async () => {
    const got: string[] = [];
    const srv = await serve({
      notificationMethods: new Set(["mining.notify"]),
      limits: { maxPendingIn: 2 },
      onNotification: (m) => got.push(m),
      onRequest: () => {},
    });
    const socket = await net.dial(srv.port);
    for (let i = 0; i < 5; i++)
      write(socket, `{"id":${i + 1},"method":"mining.notify","params":[]}\n`);
    write(socket, '{"id":9,"method":"x","params":[]}\n');
    const conn = await srv.conn;
    await expect.poll(() => conn.stats.pendingIn).toBe(1);
    expect(got).toHaveLength(5);
    expect(conn.closed).toBe(false);
  });

  it("answers a handler's exception with error 20 and keeps the connection", async () => {
    const srv = await serve({
      onRequest: () => {
        throw new Error("bug");
      },
    });
    const c = await client(srv.port);
    const reply = await c.conn.send("x", []);
    expect(reply.error).toEqual([20, "internal error", null]);
    expect((await srv.conn).stats.handlerErrors).toBe(1);
    expect((await srv.conn).closed).toBe(false);
  });
  it("answers a request from a peer that half-closes right after sending it", async () => {
    const srv = await serve({ onRequest: (req, conn) => conn.reply(req.id, "last words") });
    const socket = await net.dial(srv.port);
    const reader = lineReader(socket);
    socket.end('{"id":1,"method":"m","params":[]}\n');
    expect(await srv.closed).toBe("peer_closed");
    await reader.ended;
    expect(reader.lines).toEqual([{ id: 1, result: "last words", error: null }]);
  });
});

describe("bounds", () => {
  it("drops a 10 MB line without a newline, never buffering more than the bound", async () => {
    const srv = await serve({ onRequest: () => {}, limits: { lingerMs: 100 } });
    const socket = await net.dial(srv.port);
    const reader = lineReader(socket);
    // A first KiB is held as a partial line; then the rest arrives in one burst.
    socket.write(Buffer.alloc(1024, 0x61));
    const conn = await srv.conn;
    await expect.poll(() => conn.stats.maxBufferedBytes).toBe(1024);
    socket.write(Buffer.alloc(10 * 1024 * 1024 - 1024, 0x61));
    expect(await srv.closed).toBe("line_too_long");
    const stats = conn.stats;
    expect(stats.maxBufferedBytes).toBeLessThanOrEqual(16 * 1024);
    // Counted as they arrive: it stopped reading long before the 10 MB were in.
    expect(stats.bytesIn).toBeLessThan(1024 * 1024);
    await reader.ended;
    expect(reader.lines).toEqual([{ id: null, result: null, error: [20, "line too long", null] }]);
  });

  it("accepts a line of exactly maxLineBytes and drops one byte more", async () => {
    const seen: unknown[] = [];
    const srv = await serve({
      limits: { maxLineBytes: 64 },
      onNotification: (_m, p) => seen.push(p),
    });
    const socket = await net.dial(srv.port);
    const line = (n: number) => {
      const base = '{"id":null,"method":"m","params":[""]}';
      const pad = "x".repeat(n - base.length);
      return `{"id":null,"method":"m","params":["${pad}"]}`;
    };
    expect(Buffer.byteLength(line(64))).toBe(64);
    // Split across writes so the partial-line path is exercised too.
    write(socket, line(64).slice(0, 30));
    const conn = await srv.conn;
    await expect.poll(() => conn.stats.maxBufferedBytes).toBe(30);
    write(socket, `${line(64).slice(30)}\n`);
    await expect.poll(() => seen.length).toBe(1);
    write(socket, `${line(65)}\n`);
    expect(await srv.closed).toBe("line_too_long");
    expect(seen).toHaveLength(1);
  });

  it("answers malformed lines with error 20 and drops the peer after the flood bound", async () => {
    const srv = await serve({ limits: { maxGarbageLines: 3 }, onRequest: () => {} });
    const socket = await net.dial(srv.port);
    const reader = lineReader(socket);
    for (let i = 0; i < 50; i++) write(socket, "this is not json\n");
    expect(await srv.closed).toBe("garbage");
    await reader.ended;
    // Three tolerated lines answered, the fourth answered and dropped; the rest never read.
    expect(reader.lines).toHaveLength(4);
    for (const l of reader.lines) {
      expect(l).toEqual({ id: null, result: null, error: [20, "malformed JSON", null] });
    }
    expect((await srv.conn).stats.garbageLines).toBe(4);
  });

  it("counts valid JSON of the wrong shape as garbage too, answering with its id", async () => {
    const srv = await serve({ onRequest: () => {} });
    const socket = await net.dial(srv.port);
    const reader = lineReader(socket);
    write(socket, '[1,2]\n{"id":7,"params":[]}\n');
    expect(await reader.next()).toEqual({
      id: null,
      result: null,
      error: [20, "not a JSON object", null],
    });
    expect(await reader.next()).toEqual({
      id: 7,
      result: null,
      error: [20, "not a JSON-RPC message", null],
    });
  });

  it("drops a peer with more unanswered requests than maxPendingIn", async () => {
    const srv = await serve({ limits: { maxPendingIn: 3 }, onRequest: () => {} });
    const socket = await net.dial(srv.port);
    for (let i = 1; i <= 3; i++) write(socket, `{"id":${i},"method":"m","params":[]}\n`);
    const conn = await srv.conn;
    await expect.poll(() => conn.stats.pendingIn).toBe(3);
    expect(conn.closed).toBe(false);
    conn.reply(2, true);
    expect(conn.stats.pendingIn).toBe(2);
    write(socket, '{"id":4,"method":"m","params":[]}\n{"id":5,"method":"m","params":[]}\n');
    expect(await srv.closed).toBe("inflight");
  });

  it("refuses to send beyond maxPendingOut, times requests out, and rejects them on close", async () => {
    const srv = await serve({ onRequest: () => {} });
    const c = await client(srv.port, { limits: { maxPendingOut: 2 } });
    const slow = c.conn.send("a", [], { timeoutMs: 20 });
    const held = c.conn.send("b", [], { timeoutMs: 60_000 });
    await expect(c.conn.send("c", [])).rejects.toSatisfy((e) => requestFailure(e) === "busy");
    await expect(slow).rejects.toSatisfy((e) => requestFailure(e) === "timeout");
    expect(c.conn.stats.requestTimeouts).toBe(1);
    expect(c.conn.stats.pendingOut).toBe(1);
    c.conn.close();
    await expect(held).rejects.toSatisfy((e) => requestFailure(e) === "closed");
    expect(c.conn.stats.pendingOut).toBe(0);
    expect(await c.closed).toBe("local");
    await expect(c.conn.send("d", [])).rejects.toSatisfy((e) => requestFailure(e) === "closed");
  });
});

describe("time", () => {
  it("closes a connection on which nothing arrives (idle)", async () => {
    const srv = await serve({ limits: { idleTimeoutMs: 80 } });
    await net.dial(srv.port);
    expect(await srv.closed).toBe("idle");
  });

  it("drops a slowloris peer that keeps a partial line open while trickling bytes", async () => {
    const srv = await serve({ limits: { idleTimeoutMs: 60_000, partialLineTimeoutMs: 150 } });
    const socket = await net.dial(srv.port);
    write(socket, '{"id":1,');
    const trickle = setInterval(() => {
      if (!socket.destroyed) socket.write(" ");
    }, 20);
    try {
      expect(await srv.closed).toBe("slowloris");
    } finally {
      clearInterval(trickle);
    }
    expect((await srv.conn).stats.bytesIn).toBeGreaterThan(8);
  });
});

describe("backpressure", () => {
  it("stops reading and drops a peer that never reads once the queue passes its bound", async () => {
    const bound = 256 * 1024;
    const srv = await serve({ limits: { maxWriteQueueBytes: bound } });
    const socket = await net.dial(srv.port);
    socket.pause(); // never reads
    const conn = await srv.conn;
    const payload = "z".repeat(64 * 1024);
    let sent = 0;
    // The kernel absorbs a few MB on loopback first; the bound applies to what it refuses.
    while (!conn.closed && sent < 2000) {
      conn.notify("mining.notify", [payload]);
      sent++;
      if (sent % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    expect(await srv.closed).toBe("write_backlog");
    const stats = conn.stats;
    expect(stats.readPauses).toBeGreaterThanOrEqual(1);
    expect(stats.maxWriteQueuedBytes).toBeGreaterThan(bound);
    expect(stats.maxWriteQueuedBytes).toBeLessThanOrEqual(bound + payload.length + 64);
  });

  it("pauses reading while the peer does not read, and resumes on drain", async () => {
    const srv = await serve({ limits: { maxWriteQueueBytes: 512 * 1024 * 1024 } });
    const socket = await net.dial(srv.port);
    socket.pause();
    const conn = await srv.conn;
    const serverSocket = await srv.socket;
    const payload = "z".repeat(64 * 1024);
    while (conn.stats.readPauses === 0) conn.notify("mining.notify", [payload]);
    expect(serverSocket.isPaused()).toBe(true);
    socket.resume(); // the peer reads again: 'drain' follows
    await expect.poll(() => serverSocket.isPaused()).toBe(false);
    expect(conn.closed).toBe(false);
  });

  it("drops a peer that leaves reading paused longer than writeStallMs", async () => {
    const srv = await serve({
      limits: { maxWriteQueueBytes: 512 * 1024 * 1024, writeStallMs: 100 },
    });
    const socket = await net.dial(srv.port);
    socket.pause();
    const conn = await srv.conn;
    const payload = "z".repeat(64 * 1024);
    while (conn.stats.readPauses === 0 && !conn.closed) conn.notify("mining.notify", [payload]);
    expect(await srv.closed).toBe("write_backlog");
  });
});

describe("isolation", () => {
  it("one misbehaving peer is dropped while another on the same server is served", async () => {
    const counters = new CodecCounters();
    const closes: CloseReason[] = [];
    const { port } = await net.listen((socket) => {
      new JsonRpcConnection(socket, {
        counters,
        limits: { maxGarbageLines: 2 },
        onRequest: (req, conn) => conn.reply(req.id, "ok"),
        onClose: (r) => closes.push(r),
      });
    });
    const good = await client(port);
    const bad = await net.dial(port);
    const badReader = lineReader(bad);
    for (let i = 0; i < 10; i++) bad.write("{{{\n");
    await badReader.ended;
    expect(closes).toEqual(["garbage"]);
    expect((await good.conn.send("m", [])).result).toBe("ok");
    expect(counters.drops.garbage).toBe(1);
    expect(counters.connections).toBe(2);
  });

  it("reports a socket already closed at construction after the constructor returns", async () => {
    const { port } = await net.listen(() => {});
    const socket = await net.dial(port);
    socket.destroy();
    let owner: JsonRpcConnection | null = null;
    const heard = deferred<boolean>();
    owner = new JsonRpcConnection(socket, { onClose: () => heard.resolve(owner !== null) });
    expect(await heard.promise).toBe(true);
    expect(owner.closeReason).toBe("peer_closed");
  });

  it("reports the close reason exactly once", async () => {
    const srv = await serve({ limits: { maxGarbageLines: 0 } });
    const socket = await net.dial(srv.port);
    socket.write("x\n");
    expect(await srv.closed).toBe("garbage");
    socket.destroy();
    (await srv.conn).close();
    await new Promise((r) => setTimeout(r, 20));
    expect(srv.closes).toEqual(["garbage"]);
  });
});
