import { type ServerResponse, STATUS_CODES } from "node:http";

/**
 * Writing responses. Every response, errors and 304s included, carries the security headers;
 * none ever carries an `Access-Control-*` header (agentd's APIs have no browser clients:
 * without CORS headers a browser can neither read a response nor get a preflight past
 * 404/405, and handlers cannot add them by accident).
 */

/** What a handler answers. */
export interface HttpResult {
  readonly status: number;
  /** Sent as JSON (`JSON.stringify`); absent for 204/304. */
  readonly body?: unknown;
  /** Sent as is instead of JSON (for /metrics); give `content-type` in `headers`. */
  readonly text?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
});

export interface Serialized {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly payload: Buffer;
}

/** Serialises first, so a body that cannot be written fails before anything is sent. */
export function serialize(result: HttpResult): Serialized {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(result.headers ?? {})) {
    const lower = name.toLowerCase();
    if (lower.startsWith("access-control-")) continue;
    headers[lower] = value;
  }
  let payload = Buffer.alloc(0);
  if (result.status !== 204 && result.status !== 304) {
    if (result.text !== undefined) {
      payload = Buffer.from(result.text, "utf8");
      headers["content-type"] ??= "text/plain; charset=utf-8";
    } else if (result.body !== undefined) {
      const json = JSON.stringify(result.body);
      if (json === undefined) throw new TypeError("response body has no JSON form");
      payload = Buffer.from(json, "utf8");
      headers["content-type"] = "application/json";
    }
  }
  return { status: result.status, headers, payload };
}

export function send(
  res: ServerResponse,
  s: Serialized,
  extra: Readonly<Record<string, string>> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string> = { ...SECURITY_HEADERS, ...s.headers, ...extra };
  if (s.status !== 204 && s.status !== 304) headers["content-length"] = String(s.payload.length);
  res.writeHead(s.status, headers);
  res.end(s.status === 204 || s.status === 304 ? undefined : s.payload);
}

/**
 * A whole HTTP/1.1 response as bytes, for refusing a WebSocket upgrade on the raw socket
 * (there is no ServerResponse there). The connection is closed after it.
 */
export function rawResponse(
  status: number,
  body: unknown,
  extra: Readonly<Record<string, string>> = {},
): string {
  const payload = JSON.stringify(body);
  const headers: Record<string, string> = {
    ...SECURITY_HEADERS,
    ...extra,
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(payload)),
    connection: "close",
  };
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\n${lines.join("\r\n")}\r\n\r\n${payload}`;
}
