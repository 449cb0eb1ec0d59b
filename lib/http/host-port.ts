import { isIPv6 } from "node:net";
import { fail } from "../errors.ts";

/**
 * `host:port` as configuration and flags write a listen address (`stratum.listen`,
 * `metrics.listen`, `api.listen`, `--listen`): a host name or IPv4 address, or an IPv6
 * address in brackets (`[::1]:9100`), then a port from 0 to 65535 (0: any free port). One
 * grammar for every reader, so what the config check accepts is exactly what is listened on.
 */

export interface HostPort {
  /** IPv6 without its brackets, as `listen` and `connect` take it. */
  readonly host: string;
  readonly port: number;
}

const HOST_PORT =
  /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)):(\d{1,5})$/;

/** The host and port of `text`, or null when it is not `host:port`. */
export function tryParseHostPort(text: string): HostPort | null {
  const m = HOST_PORT.exec(text);
  if (m === null) return null;
  const v6 = m[1];
  if (v6 !== undefined && !isIPv6(v6)) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  return { host: v6 ?? (m[2] as string), port };
}

export function isHostPort(text: string): boolean {
  return tryParseHostPort(text) !== null;
}

/**
 * The host and port of `text`; AGENTD_E_USAGE when it is not `host:port`, the message naming
 * `what` (the flag or config key the value came from).
 */
export function parseHostPort(text: string, what = "address"): HostPort {
  const hp = tryParseHostPort(text);
  if (hp === null) {
    throw fail("AGENTD_E_USAGE", `${what}: expected host:port, found ${JSON.stringify(text)}`, {
      value: text,
    });
  }
  return hp;
}

/** `host:port` again, IPv6 in brackets: what `parseHostPort` reads back. */
export function formatHostPort(hp: HostPort): string {
  return isIPv6(hp.host) ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/**
 * The names of this machine's loopback interface that a listener may be given: what nothing
 * on the network can reach (the local API's TCP listener, `/metrics`).
 */
export const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(["127.0.0.1", "::1", "localhost"]);

export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOSTS.has(host);
}
