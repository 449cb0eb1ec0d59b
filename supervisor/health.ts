import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect } from "node:net";
import type { Timers } from "../lib/timers.ts";
import type { HealthProbe } from "./spec.ts";

/**
 * Health probes, each the service's own protocol, on the host side of its published port (or
 * its unix socket in a mounted directory), with a deadline. Secrets (bitcoind's cookie, lnd's
 * macaroon) are read from their files for each probe — they change when the service restarts
 * — and never logged or returned. The deadlines of the TCP and unix-socket probes run on the
 * injected timers; the HTTP ones are the socket's own idle timeout.
 *
 *   bitcoind-rpc  JSON-RPC getblockchaininfo, HTTP Basic with the cookie → synced, tip height
 *   lnd-rest      GET /v1/getinfo with the macaroon (hex, Grpc-Metadata-macaroon), and
 *                 GET /v1/channels for the active channels' peers
 *   cln-rpc       JSON-RPC getinfo and listpeerchannels over the unix socket
 *   http          any 2xx
 *   tcp           a connection accepted
 */

export interface ProbeResult {
  readonly healthy: boolean;
  /** bitcoind: whether it is synced (not in initial block download), and its tip. */
  readonly synced?: boolean;
  readonly height?: number;
  /** lnd/cln: the peers of active channels. */
  readonly channelPeers?: readonly string[];
  /** Why not healthy (no secret in it). */
  readonly error?: string;
}

const TIMEOUT_MS = 2_000;

export async function probe(
  p: HealthProbe,
  timers: Timers,
  host = "127.0.0.1",
): Promise<ProbeResult> {
  try {
    switch (p.type) {
      case "none":
        return { healthy: true };
      case "tcp":
        await tcpConnect(timers, host, p.port);
        return { healthy: true };
      case "http": {
        const r = await http({ host, port: p.port, path: p.path, method: "GET" });
        return r.status >= 200 && r.status < 300
          ? { healthy: true }
          : { healthy: false, error: `HTTP ${r.status}` };
      }
      case "bitcoind-rpc": {
        const cookie = readFileSync(p.cookieFile, "utf8").trim();
        const r = await http({
          host,
          port: p.port,
          path: "/",
          method: "POST",
          headers: {
            authorization: `Basic ${Buffer.from(cookie).toString("base64")}`,
            "content-type": "application/json",
          },
          body: JSON.stringify({
            jsonrpc: "1.0",
            id: "agentd",
            method: "getblockchaininfo",
            params: [],
          }),
        });
        if (r.status !== 200) return { healthy: false, error: `HTTP ${r.status}` };
        const res = (
          JSON.parse(r.body) as { result?: { blocks?: number; initialblockdownload?: boolean } }
        ).result;
        if (res === undefined || res === null) return { healthy: false, error: "no result" };
        return {
          healthy: true,
          synced: res.initialblockdownload === false,
          ...(typeof res.blocks === "number" ? { height: res.blocks } : {}),
        };
      }
      case "lnd-rest": {
        const macaroon = readFileSync(p.macaroonFile).toString("hex");
        const get = (path: string) =>
          http({
            host,
            port: p.port,
            path,
            method: "GET",
            tls: p.tls,
            headers: { "grpc-metadata-macaroon": macaroon },
          });
        const info = await get("/v1/getinfo");
        if (info.status !== 200) return { healthy: false, error: `HTTP ${info.status}` };
        const chans = await get("/v1/channels");
        const channels =
          chans.status === 200
            ? ((
                JSON.parse(chans.body) as {
                  channels?: { remote_pubkey?: string; active?: boolean }[];
                }
              ).channels ?? [])
            : [];
        return {
          healthy: true,
          synced: (JSON.parse(info.body) as { synced_to_chain?: boolean }).synced_to_chain === true,
          channelPeers: channels
            .filter((c) => c.active === true)
            .map((c) => String(c.remote_pubkey)),
        };
      }
      case "cln-rpc": {
        const info = await unixJsonRpc(timers, p.socket, "getinfo", {});
        if (info === null) return { healthy: false, error: "no answer" };
        const chans = (await unixJsonRpc(timers, p.socket, "listpeerchannels", {})) as {
          channels?: { peer_id?: string; state?: string }[];
        } | null;
        return {
          healthy: true,
          channelPeers: (chans?.channels ?? [])
            .filter((c) => c.state === "CHANNELD_NORMAL")
            .map((c) => String(c.peer_id)),
        };
      }
    }
  } catch (err) {
    return {
      healthy: false,
      error: err instanceof Error ? ((err as NodeJS.ErrnoException).code ?? err.message) : "failed",
    };
  }
}

function tcpConnect(timers: Timers, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    const t = timers.setTimeout(() => s.destroy(new Error("timeout")), TIMEOUT_MS);
    s.once("connect", () => {
      timers.clearTimeout(t);
      s.destroy();
      resolve();
    });
    s.once("error", (err) => {
      timers.clearTimeout(t);
      reject(err);
    });
  });
}

function http(o: {
  host: string;
  port: number;
  path: string;
  method: string;
  headers?: Record<string, string>;
  body?: string;
  tls?: boolean;
}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = (o.tls === true ? httpsRequest : httpRequest)(
      {
        host: o.host,
        port: o.port,
        path: o.path,
        method: o.method,
        headers: {
          ...(o.headers ?? {}),
          ...(o.body === undefined ? {} : { "content-length": String(Buffer.byteLength(o.body)) }),
        },
        agent: false,
        timeout: TIMEOUT_MS,
        // lnd's certificate is self-signed and made at its first start; the probe talks to
        // loopback only. (Pinning it from lnd's data directory is the next step.)
        ...(o.tls === true ? { rejectUnauthorized: false } : {}),
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          if (body.length < 1_000_000) body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end(o.body);
  });
}

function unixJsonRpc(
  timers: Timers,
  socket: string,
  method: string,
  params: object,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const s = connect({ path: socket });
    let buf = "";
    const t = timers.setTimeout(() => s.destroy(new Error("timeout")), TIMEOUT_MS);
    s.on("connect", () => s.write(JSON.stringify({ jsonrpc: "2.0", id: 1, method, params })));
    s.on("data", (c: Buffer) => {
      buf += c.toString("utf8");
      try {
        const msg = JSON.parse(buf) as { result?: unknown; error?: unknown };
        timers.clearTimeout(t);
        s.destroy();
        resolve(msg.error === undefined ? (msg.result ?? null) : null);
      } catch {
        // not complete yet
      }
    });
    s.on("error", (err) => {
      timers.clearTimeout(t);
      reject(err);
    });
  });
}
