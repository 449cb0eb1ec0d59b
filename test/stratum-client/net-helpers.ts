import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach } from "vitest";

/**
 * Loopback servers and sockets for the Stratum tests, all closed after each test so that
 * nothing leaks between tests (vitest forks, but a dangling socket would still hang one).
 */
export function useLoopback() {
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await Promise.all(
      servers.splice(0).map(
        (srv) =>
          new Promise<void>((resolve) => {
            srv.close(() => resolve());
          }),
      ),
    );
  });

  /** A server on 127.0.0.1, port 0; resolves with its port. */
  async function listen(
    onSocket: (socket: Socket) => void,
  ): Promise<{ port: number; server: Server }> {
    const server = createServer((socket) => {
      sockets.push(socket);
      socket.on("error", () => {});
      onSocket(socket);
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    return { port: address.port, server };
  }

  /** A raw client socket, connected. */
  async function dial(port: number): Promise<Socket> {
    const socket = connect({ host: "127.0.0.1", port });
    sockets.push(socket);
    socket.on("error", () => {});
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return socket;
  }

  /** A port nothing listens on (a server opened then closed). */
  async function deadPort(): Promise<number> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return address.port;
  }

  return { listen, dial, deadPort, track: (s: Socket) => sockets.push(s) };
}

/** Collects a socket's input as JSON lines. */
export function lineReader(socket: Socket): {
  lines: unknown[];
  next: () => Promise<unknown>;
  ended: Promise<void>;
} {
  const lines: unknown[] = [];
  const waiters: ((v: unknown) => void)[] = [];
  let buffer = "";
  let read = 0;
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buffer += chunk;
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line.trim() === "") continue;
      lines.push(JSON.parse(line));
      waiters.shift()?.(lines[read++]);
    }
  });
  const ended = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  return {
    lines,
    next: () =>
      read < lines.length
        ? Promise.resolve(lines[read++])
        : new Promise<unknown>((resolve) => waiters.push(resolve)),
    ended,
  };
}

/** A promise and its resolver. */
export function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
