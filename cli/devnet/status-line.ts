import { localApiGet } from "../../agent/local-api.ts";
import type { Clock } from "../../lib/clock.ts";
import type { Logger } from "../../lib/log/logger.ts";

/**
 * One devnet status line: what the agent says about itself, the services and eligibility (from
 * its local API, as `agentd services ls` and `agentd eligibility` read them) and the simulated
 * pool's count. Counters since the devnet started are named `…_total`; everything else is the
 * value now.
 */

type Json = Record<string, unknown>;

export interface DevnetStatus {
  readonly at: string;
  readonly state: string;
  readonly mining: boolean;
  readonly reasons: readonly string[];
  /** ASICs connected to the agent's proxy now. */
  readonly miners: number;
  /** The proxy's estimate of their hashrate (H/s) from the shares it accepted; null: unknown. */
  readonly hashrate_hs: number | null;
  /** Shares the proxy accepted from the ASICs since the start. */
  readonly proxy_accepted_total: number | null;
  /** Shares the simulated pool accepted since the start; null with --pool (counted there). */
  readonly pool_accepted_total: number | null;
  readonly heartbeats_sent_total: number;
  /**
   * The upstream in use and whether the proxy reaches it: "connected since …", or
   * "unreachable since … (ECONNREFUSED)"; null when none is wanted.
   */
  readonly upstream: string | null;
  /** Each service allowed or present, by state (or "refused" and why not); null: none supervised. */
  readonly services: Readonly<Record<string, string>> | null;
  readonly eligibility: {
    readonly eligible: boolean;
    readonly reasons: readonly string[];
    readonly bitcoind: string;
    readonly lightning: string;
  } | null;
}

export async function devnetStatus(o: {
  readonly status: () => Json;
  readonly apiSocket: string;
  readonly poolAccepted: (() => number) | null;
  readonly clock: Clock;
  readonly logger: Logger;
}): Promise<DevnetStatus> {
  const s = o.status();
  const decision = (s.decision ?? {}) as { mining?: boolean; reasons?: string[] };
  const telemetry = (s.telemetry ?? {}) as Json;
  const heartbeats = (s.heartbeats ?? {}) as Json;
  const [services, eligibility] = await Promise.all([
    read(o, "/v1/services"),
    read(o, "/v1/eligibility"),
  ]);
  return {
    at: new Date(o.clock.now()).toISOString(),
    state: String(s.state),
    mining: decision.mining === true,
    reasons: decision.reasons ?? [],
    miners: typeof s.miners === "number" ? s.miners : 0,
    hashrate_hs: num(telemetry.hashrate_hs),
    proxy_accepted_total: num(telemetry.shares_accepted),
    pool_accepted_total: o.poolAccepted?.() ?? null,
    heartbeats_sent_total: num(heartbeats.sent) ?? 0,
    upstream: upstreamSummary(s.upstream),
    services: services === null ? null : servicesSummary(services),
    eligibility:
      eligibility === null
        ? null
        : {
            eligible: eligibility.eligible === true,
            reasons: Array.isArray(eligibility.reasons) ? (eligibility.reasons as string[]) : [],
            bitcoind: String(eligibility.bitcoind ?? "unknown"),
            lightning: String(eligibility.lightning ?? "unknown"),
          },
  };
}

/** Kinds allowed or present by state, as the heartbeats report them; refused ones say so. */
export function servicesSummary(doc: Json): Record<string, string> | null {
  if (doc.supervisor === "off") return null;
  const out: Record<string, string> = {};
  const refused = (doc.refused ?? {}) as Record<string, string>;
  for (const x of (doc.services ?? []) as { kind: string; allowed: boolean; state: string }[]) {
    if (refused[x.kind] !== undefined) out[x.kind] = `refused: ${refused[x.kind]}`;
    else if (x.allowed || x.state !== "absent") out[x.kind] = x.state;
  }
  return out;
}

/** A view of the local API, or null (logged) when it cannot be had this time. */
async function read(o: { apiSocket: string; logger: Logger }, path: string): Promise<Json | null> {
  try {
    return await localApiGet(o.apiSocket, path);
  } catch (err) {
    o.logger.warn({ err, path }, "devnet: the local API did not answer for a status line");
    return null;
  }
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** The status view's `upstream` (stratum-client/reachability.ts) as a few words. */
export function upstreamSummary(u: unknown): string | null {
  const v = (u ?? null) as {
    url?: unknown;
    state?: unknown;
    since?: unknown;
    last_error?: unknown;
  } | null;
  if (v === null || typeof v.url !== "string" || typeof v.state !== "string") return null;
  const since = typeof v.since === "number" ? ` since ${new Date(v.since).toISOString()}` : "";
  const why =
    v.state === "unreachable" && typeof v.last_error === "string" ? ` (${v.last_error})` : "";
  return `${v.url} ${v.state}${since}${why}`;
}
