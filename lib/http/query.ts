import { fail } from "../errors.ts";

/**
 * The query string of a request, strictly: every key at most once (a repeated key is the
 * query-string twin of a duplicate JSON member: two readers could take different values),
 * only the keys the route names, bounded in count and length, valid percent-encoding.
 * `+` means space (application/x-www-form-urlencoded, as URLSearchParams writes it).
 *
 * Refusals are 400 AGENTD_E_SCHEMA with pointer `/query/<key>`.
 */

export const MAX_QUERY_LENGTH = 2048;
export const MAX_QUERY_PARAMS = 32;

export function parseQuery(
  search: string,
  allowed: readonly string[] = [],
): Readonly<Record<string, string>> {
  const out: Record<string, string> = Object.create(null);
  const text = search.startsWith("?") ? search.slice(1) : search;
  if (text === "") return out;
  const bad = (key: string, why: string) =>
    fail("AGENTD_E_SCHEMA", `query parameter ${JSON.stringify(key)} ${why}`, {
      schema: "query",
      pointer: `/query/${key.slice(0, 64)}`,
    });
  if (text.length > MAX_QUERY_LENGTH) throw bad("", "string is too long");
  const pairs = text.split("&");
  if (pairs.length > MAX_QUERY_PARAMS) throw bad("", "count is too high");
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    const rawKey = eq === -1 ? pair : pair.slice(0, eq);
    const rawValue = eq === -1 ? "" : pair.slice(eq + 1);
    const key = decodeComponent(rawKey, () => bad(rawKey, "has bad percent-encoding"));
    const value = decodeComponent(rawValue, () => bad(key, "has bad percent-encoding"));
    if (key === "") throw bad(key, "has an empty name");
    if (!allowed.includes(key)) throw bad(key, "is not accepted by this endpoint");
    if (Object.hasOwn(out, key)) throw bad(key, "is given more than once");
    out[key] = value;
  }
  return out;
}

function decodeComponent(raw: string, onError: () => Error): string {
  try {
    return decodeURIComponent(raw.replaceAll("+", " "));
  } catch {
    throw onError();
  }
}
