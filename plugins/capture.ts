/**
 * Recording what a miner says, read-only, so that an owner with real hardware can contribute
 * captured replies (`agentd miners probe ADDR --capture DIR`). Only requests that change
 * nothing are sent; each reply is kept byte for byte except secrets, which are replaced by
 * `REDACTED` in place (the rest of the bytes, quirks and NUL included, stay as the firmware
 * sent them: that is what a driver must cope with).
 */

import { isAgentdError } from "../lib/errors.ts";
import type { Timers } from "../lib/timers.ts";
import { cgminerRaw } from "./cgminer/client.ts";
import type { Credentials, DriverLimits } from "./driver.ts";
import { httpSend } from "./http/client.ts";

/** The read-only requests recorded: what the drivers of plugins/ rely on, and a little more. */
export const CAPTURE_REQUESTS: readonly CaptureRequest[] = [
  { surface: "4028", name: "version", command: "version" },
  { surface: "4028", name: "summary", command: "summary" },
  { surface: "4028", name: "stats", command: "stats" },
  { surface: "4028", name: "stats-new_api", command: "stats", extra: { new_api: true } },
  { surface: "4028", name: "pools", command: "pools" },
  { surface: "4028", name: "devdetails", command: "devdetails" },
  { surface: "4028", name: "devs", command: "devs" },
  { surface: "4028", name: "privileged", command: "privileged" },
  // Braiins OS (bosminer/BOSer): no public capture of these exists (plugins/README.md).
  { surface: "4028", name: "temps", command: "temps" },
  { surface: "4028", name: "fans", command: "fans" },
  { surface: "4028", name: "tunerstatus", command: "tunerstatus" },
  // LuxOS: read-only reports (its writes need a session; none is opened here).
  { surface: "4028", name: "config", command: "config" },
  { surface: "4028", name: "power", command: "power" },
  { surface: "4028", name: "psuget", command: "psuget" },
  { surface: "4028", name: "profiles", command: "profiles" },
  { surface: "web", name: "get_system_info", path: "/cgi-bin/get_system_info.cgi" },
  { surface: "web", name: "get_miner_conf", path: "/cgi-bin/get_miner_conf.cgi" },
  { surface: "web", name: "summary.cgi", path: "/cgi-bin/summary.cgi" },
  // ESP-Miner (Bitaxe) and VNish: their HTTP APIs' read-only views.
  { surface: "web", name: "api-system-info", path: "/api/system/info" },
  { surface: "web", name: "vnish-info", path: "/api/v1/info" },
  { surface: "web", name: "vnish-summary", path: "/api/v1/summary" },
];

export type CaptureRequest =
  | {
      readonly surface: "4028";
      readonly name: string;
      readonly command: string;
      readonly extra?: Readonly<Record<string, unknown>>;
    }
  | { readonly surface: "web"; readonly name: string; readonly path: string };

export interface CapturedReply {
  readonly request: CaptureRequest;
  /** The reply with secrets redacted; null when there was none. */
  readonly reply: string | null;
  /** The HTTP status (web), null for 4028. */
  readonly status: number | null;
  /** Why there was no reply: the stable code. */
  readonly error: string | null;
  /** How many secrets were replaced. */
  readonly redacted: number;
}

/**
 * Keys whose string values are secrets in what firmware prints (pool passwords in
 * get_miner_conf, tokens, API keys); matched case-insensitively on the key.
 */
const SECRET_KEY =
  /"((?:[\w-]*pass(?:word|wd)?[\w-]*)|(?:[\w-]*token[\w-]*)|(?:[\w-]*secret[\w-]*)|(?:api[-_]?key))"(\s*:\s*)"((?:[^"\\]|\\.)*)"/gi;

/** Replaces every secret's value with REDACTED, leaving every other byte as it was. */
export function redactSecrets(text: string): { text: string; count: number } {
  let count = 0;
  const out = text.replace(SECRET_KEY, (_m, key: string, sep: string) => {
    count++;
    return `"${key}"${sep}"REDACTED"`;
  });
  return { text: out, count };
}

export interface CaptureOptions {
  readonly host: string;
  readonly apiPort: number;
  readonly webPort: number;
  readonly credentials: Credentials | null;
  readonly timers: Timers;
  readonly limits: DriverLimits;
}

export async function captureMiner(o: CaptureOptions): Promise<CapturedReply[]> {
  const out: CapturedReply[] = [];
  for (const request of CAPTURE_REQUESTS) {
    try {
      if (request.surface === "4028") {
        const raw = await cgminerRaw({ host: o.host, port: o.apiPort }, request.command, null, {
          timers: o.timers,
          maxReplyBytes: o.limits.maxReplyBytes,
          timeoutMs: o.limits.requestTimeoutMs,
          ...(request.extra ? { extra: request.extra } : {}),
        });
        const r = redactSecrets(raw);
        out.push({ request, reply: r.text, status: null, error: null, redacted: r.count });
      } else {
        const reply = await httpSend(
          "GET",
          `http://${hostForUrl(o.host)}:${o.webPort}${request.path}`,
          null,
          {
            timers: o.timers,
            maxReplyBytes: o.limits.maxReplyBytes,
            timeoutMs: o.limits.requestTimeoutMs,
            credentials: o.credentials,
          },
        );
        const r = redactSecrets(reply.body);
        out.push({ request, reply: r.text, status: reply.status, error: null, redacted: r.count });
      }
    } catch (err) {
      if (!isAgentdError(err)) throw err;
      out.push({ request, reply: null, status: null, error: err.code, redacted: 0 });
    }
  }
  return out;
}

function hostForUrl(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}
