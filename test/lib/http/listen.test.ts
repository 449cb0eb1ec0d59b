import { mkdtempSync, rmSync } from "node:fs";
import { Agent, createServer, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { closeNow, listenTcp, listenUnix } from "../../../lib/http/listen.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const hello = () => createServer((_req, res) => res.end("hello"));

function get(o: {
  port?: number;
  socketPath?: string;
  agent?: Agent;
  path?: string;
}): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", path: "/", ...o }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => {
        text += c.toString();
      });
      res.on("end", () => resolve(text));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("listening", () => {
  it("listens on TCP port 0 and says which port it got", async () => {
    const server = hello();
    cleanups.push(() => closeNow(server));
    const address = await listenTcp(server, 0, "127.0.0.1");
    expect(address.host).toBe("127.0.0.1");
    expect(address.port).toBeGreaterThan(0);
    expect(await get({ port: address.port })).toBe("hello");
  });

  it("rejects when the address is taken, rather than emitting an unheard error", async () => {
    const first = hello();
    cleanups.push(() => closeNow(first));
    const { port } = await listenTcp(first, 0, "127.0.0.1");
    const second = hello();
    await expect(listenTcp(second, port, "127.0.0.1")).rejects.toMatchObject({
      code: "EADDRINUSE",
    });
    expect(second.listenerCount("error")).toBe(0);
  });

  it("listens on a unix socket", async () => {
    const dir = mkdtempSync(join(tmpdir(), "agentd-listen-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const server = hello();
    cleanups.push(() => closeNow(server));
    await listenUnix(server, join(dir, "s.sock"));
    expect(await get({ socketPath: join(dir, "s.sock") })).toBe("hello");
  });

  it("closes at once, ending connections that are idle or still waiting for an answer", async () => {
    let arrived: () => void = () => {};
    const hanging = new Promise<void>((r) => {
      arrived = r;
    });
    const server = createServer((req, res) => {
      if (req.url === "/hang")
        arrived(); // and never answers
      else res.end("hello");
    });
    server.keepAliveTimeout = 0; // no timeout: only closeNow can end the idle connection
    const { port } = await listenTcp(server, 0, "127.0.0.1");
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(() => agent.destroy());
    expect(await get({ port, agent })).toBe("hello");
    expect(Object.keys(agent.freeSockets)).toHaveLength(1);
    const cut = get({ port, path: "/hang" }).then(
      () => "answered",
      (e: NodeJS.ErrnoException) => e.code,
    );
    await hanging;
    await closeNow(server);
    expect(server.listening).toBe(false);
    expect(await cut).toBe("ECONNRESET");
    // closing a server that does not listen is a no-op
    await closeNow(server);
    await closeNow(hello());
  });
});
