import type { IncomingMessage } from "node:http";
import { fail } from "../../lib/errors.ts";

/**
 * The absolute https URL as the client used it: `https://` + the Host header + the request
 * target, normalised by `new URL` (lower-case host, default port 443 dropped, IPv6 in
 * brackets). Machine proofs sign this URL (`htu`), so the verifier must normalise the proof's
 * `htu` the same way before comparing. WebSocket upgrades use the same `https:` form.
 *
 * Only origin-form targets (`/path?query`) are accepted; a missing, repeated or malformed Host
 * is 400, as HTTP/1.1 requires (RFC 9112 section 3.2).
 */

const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

export function requestUrl(req: IncomingMessage): URL {
  const target = req.url ?? "";
  const hosts = req.rawHeaders.filter((_, i) => i % 2 === 0 && _.toLowerCase() === "host");
  const host = req.headers.host;
  if (!target.startsWith("/") || target.startsWith("//")) {
    throw bad("the request target must be a path");
  }
  if (hosts.length !== 1 || host === undefined || !HOST.test(host)) {
    throw bad("the request needs exactly one valid Host header");
  }
  try {
    return new URL(`https://${host}${target}`);
  } catch {
    throw bad("the request URL is malformed");
  }
}

function bad(message: string) {
  return fail("AGENTD_E_SCHEMA", message, { schema: "request", pointer: "" });
}
