import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { canonicalize } from "../../lib/json/canonical.ts";
import type { HandlerResult } from "./route.ts";

/**
 * ETag and If-None-Match (RFC 9110 sections 8.8.3 and 13.1.2) for JSON resources.
 *
 * The ETag is strong and derived from the RFC 8785 form of the body, so every instance of a
 * scaled-out control plane gives one resource the same tag without sharing state. A matching
 * If-None-Match (weak comparison, as that section requires; `*` matches anything) gets 304
 * with the ETag and no body; the agent then keeps the copy it has.
 */

export function etagOf(value: unknown): string {
  const digest = createHash("sha256").update(canonicalize(value), "utf8").digest("base64url");
  return `"${digest}"`;
}

/** Whether an If-None-Match header value matches `etag`. */
export function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const trimmed = header.trim();
  if (trimmed === "*") return true;
  const opaque = stripWeak(etag);
  return trimmed.split(",").some((t) => stripWeak(t.trim()) === opaque);
}

function stripWeak(tag: string): string {
  return tag.startsWith("W/") ? tag.slice(2) : tag;
}

/** 200 with the body and its ETag, or 304 when the request already has that version. */
export function conditionalJson(
  req: IncomingMessage,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): HandlerResult {
  const etag = etagOf(body);
  if (ifNoneMatchHits(req.headers["if-none-match"], etag)) {
    return { status: 304, headers: { ...headers, etag } };
  }
  return { status: 200, body, headers: { ...headers, etag } };
}
