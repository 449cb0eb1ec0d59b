/**
 * Fault modes: the ways a real pool misbehaves that a proxy must survive. One mode at a time,
 * switchable at runtime (`SimPool.setFault`) or at start (`--fault`).
 *
 * - `drop`: close every connection now and each new one as soon as it is accepted.
 * - `silent`: read and discard everything, send nothing (a hung pool; no notify either).
 * - `reject`: answer every submit with `[code, …]` (23 low difficulty, or 20 other).
 * - `reconnect`: send `client.reconnect` to every connection now and to each new one after
 *   its first job; `params` empty (same host, which firmware always honours) or
 *   `[host, port, wait_seconds]`.
 */
import { parseHostPort } from "./address.ts";

export type Fault =
  | { readonly kind: "drop" }
  | { readonly kind: "silent" }
  | { readonly kind: "reject"; readonly code: 20 | 23 }
  | {
      readonly kind: "reconnect";
      readonly params: readonly [] | readonly [string, number, number];
    };

export const FAULT_SYNTAX =
  "drop | silent | reject | reject:20 | reject:23 | reconnect | reconnect=HOST:PORT[:WAIT]";

/** Parses the `--fault` text; `undefined` when it is none of FAULT_SYNTAX. */
export function parseFault(text: string): Fault | undefined {
  if (text === "drop" || text === "silent") return { kind: text };
  if (text === "reject" || text === "reject:23") return { kind: "reject", code: 23 };
  if (text === "reject:20") return { kind: "reject", code: 20 };
  if (text === "reconnect") return { kind: "reconnect", params: [] };
  if (text.startsWith("reconnect=")) {
    const rest = text.slice("reconnect=".length);
    const waitMatch = /^(.*):(\d+):(\d+)$/.exec(rest);
    const target = parseHostPort(waitMatch ? `${waitMatch[1]}:${waitMatch[2]}` : rest);
    if (!target) return undefined;
    return {
      kind: "reconnect",
      params: [target.host, target.port, waitMatch ? Number(waitMatch[3]) : 0],
    };
  }
  return undefined;
}
