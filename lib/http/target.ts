import type { IncomingMessage } from "node:http";

/**
 * What a request must look like before anything reads it: its target in origin-form and, where
 * a server needs one, exactly one of a header.
 */

// RFC 3986 pchar: unreserved, percent-encoded, sub-delims, ":" and "@". No "/" in a segment,
// so the pattern below cannot backtrack.
const PCHAR = "(?:[A-Za-z0-9\\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})";
const ORIGIN_FORM = new RegExp(`^(?:/${PCHAR}*)+(?:\\?(?:${PCHAR}|[/?])*)?$`);

/** Longest request target looked at; Node's header limit (16 KiB) already bounds it. */
export const MAX_TARGET_LENGTH = 8192;

/**
 * Whether `target` is origin-form (RFC 9112 section 3.2.1: `/path?query`) with well-formed
 * percent-encoding, not starting with `//` (which URL parsers read as a host). Absolute-form
 * (`http://host/path`), asterisk-form (`*`) and anything else are refused: agentd's servers
 * are no proxies, and a target that does not parse must not reach a parser that may throw.
 */
export function isOriginForm(target: string): boolean {
  return target.length <= MAX_TARGET_LENGTH && !target.startsWith("//") && ORIGIN_FORM.test(target);
}

/**
 * The value of the one header `name` (lower-case) the request carries, or null when it
 * carries none or several. Node keeps only the first of a repeated `Host` in `req.headers`; the
 * raw list shows them all.
 */
export function singleHeader(req: IncomingMessage, name: string): string | null {
  let value: string | null = null;
  let seen = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() !== name) continue;
    if (++seen > 1) return null;
    value = raw[i + 1] as string;
  }
  return value;
}
