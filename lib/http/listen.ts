import type { Server } from "node:net";

/**
 * Starting and stopping a server (node:http, node:https, node:net) as promises: a failed
 * `listen` (address in use, permission) rejects instead of emitting an error nobody hears.
 */

/** Listens on TCP; the address actually bound (port 0 picks one). */
export function listenTcp(
  server: Server,
  port: number,
  host: string,
): Promise<{ host: string; port: number }> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const a = server.address();
      if (a === null || typeof a === "string") {
        reject(new Error("a TCP listener without a TCP address"));
        return;
      }
      resolve({ host: a.address, port: a.port });
    });
  });
}

/** Listens on a unix socket at `path` (which must not exist). */
export function listenUnix(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/**
 * Stops listening and ends every connection at once (idle keep-alives included): for servers
 * with nothing in flight worth waiting for (`/metrics`, the local API).
 */
export function closeNow(server: Server & { closeAllConnections?: () => void }): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    server.closeAllConnections?.();
  });
}
