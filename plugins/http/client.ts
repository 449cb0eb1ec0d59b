/**
 * HTTP to a miner's web UI or a meter: one request, bounded in bytes and time, with HTTP
 * digest authentication (RFC 7616, MD5 and qop=auth, what stock Antminer lighttpd speaks:
 * realm "antMiner Configuration") when credentials are given. Plain HTTP on the LAN is what
 * the firmware offers; nothing here follows redirects.
 */
import { createHash, randomBytes } from "node:crypto";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { AgentdError } from "../../lib/errors.ts";
import type { Timers } from "../../lib/timers.ts";
import type { Credentials } from "../driver.ts";

export interface HttpOptions {
  readonly timers: Timers;
  readonly maxReplyBytes: number;
  readonly timeoutMs: number;
  readonly credentials?: Credentials | null;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface HttpReply {
  readonly status: number;
  readonly headers: IncomingMessage["headers"];
  readonly body: string;
}

/**
 * Sends the request; on a 401 with a digest challenge and credentials, answers the challenge
 * once. A 401 after that rejects AGENTD_E_MINER_AUTH. Other statuses are returned.
 */
export async function httpSend(
  method: "GET" | "POST" | "PATCH",
  url: string,
  body: string | null,
  o: HttpOptions,
): Promise<HttpReply> {
  const first = await once(method, url, body, o, null);
  if (first.status !== 401) return first;
  const challenge = first.headers["www-authenticate"];
  if (!o.credentials || typeof challenge !== "string" || !/^digest\s/i.test(challenge)) {
    throw authError(url, o.credentials ? "no digest challenge" : "credentials needed");
  }
  const auth = digestAuthorization(method, url, challenge, o.credentials);
  const second = await once(method, url, body, o, auth);
  if (second.status === 401) throw authError(url, "credentials refused");
  return second;
}

function authError(url: string, why: string): AgentdError {
  return new AgentdError("AGENTD_E_MINER_AUTH", `${new URL(url).host}: ${why}`, {
    context: { url: redactUrl(url) },
  });
}

/** A URL without its user-info, for errors and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.toString();
  } catch {
    return "(not a URL)";
  }
}

async function once(
  method: string,
  url: string,
  body: string | null,
  o: HttpOptions,
  authorization: string | null,
): Promise<HttpReply> {
  const abort = new AbortController();
  const signal = abort.signal;
  const where = new URL(url).host;
  return await new Promise<HttpReply>((resolve, reject) => {
    let settled = false;
    // Cleared once settled: a timer left to fire would pile up across a fleet's reads.
    const timer = o.timers.setTimeout(
      () => abort.abort(new DOMException(`timed out after ${o.timeoutMs} ms`, "TimeoutError")),
      o.timeoutMs,
    );
    const fail = (err: AgentdError) => {
      if (settled) return;
      settled = true;
      o.timers.clearTimeout(timer);
      req.destroy();
      reject(err);
    };
    const headers: Record<string, string> = { ...o.headers, connection: "close" };
    if (authorization) headers.authorization = authorization;
    if (body !== null) {
      headers["content-type"] ??= "application/json";
      headers["content-length"] = String(Buffer.byteLength(body));
    }
    const req = httpRequest(url, { method, headers, signal }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > o.maxReplyBytes) {
          fail(
            new AgentdError(
              "AGENTD_E_MINER_REPLY_TOO_LARGE",
              `${where} sent more than ${o.maxReplyBytes} bytes: cut off unread`,
              { context: { url: redactUrl(url), limit: o.maxReplyBytes } },
            ),
          );
          return;
        }
        chunks.push(chunk);
      });
      res.on("end", () => {
        if (settled) return;
        settled = true;
        o.timers.clearTimeout(timer);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString("utf8"),
        });
      });
      res.on("error", (err: NodeJS.ErrnoException) => fail(netError(url, err, signal)));
      res.on("aborted", () =>
        fail(netError(url, Object.assign(new Error("aborted"), { code: "ECONNRESET" }), signal)),
      );
    });
    req.on("error", (err: NodeJS.ErrnoException) => fail(netError(url, err, signal)));
    req.end(body ?? undefined);
  });
}

function netError(url: string, err: NodeJS.ErrnoException, signal: AbortSignal): AgentdError {
  const where = new URL(url).host;
  if (signal.aborted) {
    return new AgentdError("AGENTD_E_MINER_TIMEOUT", `${where} did not answer in time`, {
      context: { url: redactUrl(url) },
    });
  }
  return new AgentdError("AGENTD_E_MINER_UNREACHABLE", `${where}: ${err.code ?? err.message}`, {
    context: { url: redactUrl(url), errno: err.code ?? null },
  });
}

/** The Authorization header answering a digest challenge (RFC 7616 section 3.4, MD5). */
export function digestAuthorization(
  method: string,
  url: string,
  challenge: string,
  credentials: Credentials,
  cnonce: string = randomBytes(8).toString("hex"),
): string {
  const p = parseChallenge(challenge);
  const realm = p.realm ?? "";
  const nonce = p.nonce ?? "";
  const algorithm = (p.algorithm ?? "MD5").toUpperCase();
  if (algorithm !== "MD5") {
    throw new AgentdError("AGENTD_E_MINER_AUTH", `digest algorithm ${algorithm} is not supported`);
  }
  const u = new URL(url);
  const uri = `${u.pathname}${u.search}`;
  const md5 = (s: string) => createHash("md5").update(s).digest("hex");
  const ha1 = md5(`${credentials.username}:${realm}:${credentials.password}`);
  const ha2 = md5(`${method}:${uri}`);
  const qop = p.qop
    ?.split(",")
    .map((q) => q.trim())
    .includes("auth")
    ? "auth"
    : null;
  const nc = "00000001";
  const response = qop
    ? md5(`${ha1}:${nonce}:${nc}:${cnonce}:${qop}:${ha2}`)
    : md5(`${ha1}:${nonce}:${ha2}`);
  const parts = [
    `username="${credentials.username}"`,
    `realm="${realm}"`,
    `nonce="${nonce}"`,
    `uri="${uri}"`,
    `algorithm=MD5`,
    `response="${response}"`,
  ];
  if (p.opaque !== undefined) parts.push(`opaque="${p.opaque}"`);
  if (qop) parts.push(`qop=${qop}`, `nc=${nc}`, `cnonce="${cnonce}"`);
  return `Digest ${parts.join(", ")}`;
}

export function parseChallenge(header: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /(\w+)=(?:"([^"]*)"|([^,\s]*))/g;
  for (const m of header.replace(/^digest\s+/i, "").matchAll(re)) {
    const key = (m[1] as string).toLowerCase();
    out[key] = m[2] ?? m[3] ?? "";
  }
  return out;
}
