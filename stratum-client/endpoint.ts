import { isIP } from "node:net";
import { upstreamScheme } from "../policy-guard/documents.ts";

/**
 * Stratum V1 upstream URLs (`stratum+tcp://host:port`, `stratum+ssl://host:port`), parsed
 * with the policy's own syntax check so that what the policy accepts and what we dial are
 * the same thing. Comparison ignores host case (DNS is case-insensitive) and leading zeros
 * in the port, and nothing else: a different scheme, host or port is a different upstream.
 */

export type V1Scheme = "stratum+tcp" | "stratum+ssl";

export interface Endpoint {
  readonly scheme: V1Scheme;
  /** Lower case, IPv6 without brackets. */
  readonly host: string;
  readonly port: number;
}

export function parseV1Url(url: string): Endpoint | null {
  const scheme = upstreamScheme(url);
  if (scheme !== "stratum+tcp" && scheme !== "stratum+ssl") return null;
  const rest = url.slice(scheme.length + 3);
  const colon = rest.lastIndexOf(":");
  let host = rest.slice(0, colon).toLowerCase();
  if (host.startsWith("[")) host = host.slice(1, -1);
  return { scheme, host, port: Number(rest.slice(colon + 1)) };
}

export function endpointUrl(e: Endpoint): string {
  const host = isIP(e.host) === 6 ? `[${e.host}]` : e.host;
  return `${e.scheme}://${host}:${e.port}`;
}

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.scheme === b.scheme && a.host === b.host && a.port === b.port;
}

/**
 * The endpoint a `client.reconnect [host, port, wait]` names, relative to the current one:
 * empty params mean the same host and port; a missing or empty host keeps the host; a
 * missing port keeps the port. The scheme is always the current one. Null when the params
 * do not name a valid endpoint.
 */
export function reconnectTarget(current: Endpoint, params: unknown): Endpoint | null {
  const p = Array.isArray(params) ? params : [];
  const rawHost = p[0];
  const rawPort = p[1];
  let host = current.host;
  if (typeof rawHost === "string" && rawHost.length > 0) host = rawHost;
  else if (rawHost !== undefined && rawHost !== null && rawHost !== "") return null;
  let port = current.port;
  if (typeof rawPort === "number") port = rawPort;
  else if (typeof rawPort === "string" && /^[0-9]{1,5}$/.test(rawPort)) port = Number(rawPort);
  else if (rawPort !== undefined && rawPort !== null && rawPort !== "") return null;
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  // Re-parse the assembled URL so a host with a path, a user or spaces is refused.
  return parseV1Url(endpointUrl({ scheme: current.scheme, host, port }));
}
