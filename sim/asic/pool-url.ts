/**
 * Pool URLs as firmware takes them: `stratum+tcp://host:port`, or bare `host:port`; a
 * `#xnsub` suffix asks cgminer-family firmware to send mining.extranonce.subscribe.
 */
import { fail } from "../../lib/errors.ts";

export interface PoolUrl {
  readonly host: string;
  readonly port: number;
  readonly xnsub: boolean;
  /** As given, for the management API's URL fields. */
  readonly text: string;
}

export function parsePoolUrl(text: string): PoolUrl {
  const hashAt = text.indexOf("#");
  const fragment = hashAt >= 0 ? text.slice(hashAt + 1) : "";
  let rest = hashAt >= 0 ? text.slice(0, hashAt) : text;
  const scheme = /^([a-z0-9+.-]+):\/\//i.exec(rest);
  if (scheme) {
    if (!/^stratum(\+tcp)?$/i.test(scheme[1] ?? "")) {
      throw fail("AGENTD_E_USAGE", `pool URL: unsupported scheme in ${JSON.stringify(text)}`);
    }
    rest = rest.slice(scheme[0].length);
  }
  rest = rest.replace(/\/$/, "");
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:/\s]+):(\d{1,5})$/.exec(rest);
  const port = Number(m?.[2]);
  if (!m || !(port >= 1 && port <= 65535)) {
    throw fail(
      "AGENTD_E_USAGE",
      `pool URL: expected [stratum+tcp://]host:port, got ${JSON.stringify(text)}`,
    );
  }
  const host = (m[1] ?? "").replace(/^\[|\]$/g, "");
  return { host, port, xnsub: fragment.split(",").includes("xnsub"), text };
}

/**
 * cgminer's rule for client.reconnect to another host: both names must have a dot and agree
 * from their first dot on (pool.example.com → eu.example.com is allowed,
 * → evil.example.net is not). An empty host means "same host" and is always allowed.
 */
export function reconnectAllowed(currentHost: string, requestedHost: string): boolean {
  if (requestedHost === "") return true;
  const a = currentHost.indexOf(".");
  const b = requestedHost.indexOf(".");
  if (a < 0 || b < 0) return false;
  return currentHost.slice(a) === requestedHost.slice(b);
}
