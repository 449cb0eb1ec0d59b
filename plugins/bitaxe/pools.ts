/**
 * ESP-Miner's two pool slots (primary and fallback) against the agent's pool targets. Pure.
 *
 * ESP-Miner keeps a pool as a host (`stratumURL`, no scheme) and a port (`stratumPort`); the
 * agent speaks `stratum+tcp://host:port`. It always has a fallback slot, and fails over to it
 * by itself when the primary dies: a fallback the owner never signed would keep it hashing
 * elsewhere. So one target fills both slots (the fallback is the primary again), and the
 * read-back checks both.
 */
import { AgentdError } from "../../lib/errors.ts";
import type { PoolSlot, PoolTarget } from "../driver.ts";
import type { AxeInfo, AxePool } from "./info.ts";

export interface AxeTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
}

/** `stratum+tcp://host:port` or `host:port` → host and port; TLS and the rest refused. */
export function splitPoolUrl(url: string): { host: string; port: number } {
  const m =
    /^(?:stratum\+tcp:\/\/)?([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):(\d{1,5})\/?$/.exec(url);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) {
    throw new AgentdError(
      "AGENTD_E_USAGE",
      "setPools: ESP-Miner takes stratum+tcp://host:port (no TLS, no path)",
    );
  }
  return { host: m[1] as string, port };
}

/** The primary and the fallback ESP-Miner will hold: 1 or 2 targets. */
export function axeTargets(slots: readonly PoolTarget[]): readonly [AxeTarget, AxeTarget] {
  if (slots.length < 1 || slots.length > 2) {
    throw new AgentdError(
      "AGENTD_E_USAGE",
      `setPools: ESP-Miner has a primary and a fallback pool: 1 or 2 slots, got ${slots.length}`,
    );
  }
  const t = slots.map((s) => {
    if (s.user === "") throw new AgentdError("AGENTD_E_USAGE", "setPools: every slot needs a user");
    return { ...splitPoolUrl(s.url), user: s.user, password: s.password };
  });
  const primary = t[0] as AxeTarget;
  return [primary, t[1] ?? primary];
}

/**
 * The PATCH /api/system body: both the settings of v2.14 and earlier (flat keys) and those of
 * v2.15 on (a `pools` array). Each version looks up only the names in its own settings table
 * and ignores the rest, so one body serves both, including a build whose version string does
 * not parse; the read-back says whether it took.
 */
export function patchBody([p, f]: readonly [AxeTarget, AxeTarget]): Record<string, unknown> {
  const flat = {
    stratumURL: p.host,
    stratumPort: p.port,
    stratumUser: p.user,
    stratumPassword: p.password,
    fallbackStratumURL: f.host,
    fallbackStratumPort: f.port,
    fallbackStratumUser: f.user,
    fallbackStratumPassword: f.password,
  };
  const entry = (id: number, t: AxeTarget) => ({
    id,
    stratumURL: t.host,
    stratumPort: t.port,
    stratumUser: t.user,
    stratumPassword: t.password,
  });
  return {
    ...flat,
    pools: [entry(0, p), entry(1, f)],
    primaryPoolIndex: 0,
    secondaryPoolIndex: 1,
  };
}

/** A pool host as ESP-Miner may print it (some builds keep a scheme), without the scheme. */
function bareHost(host: string): string {
  return host.replace(/^stratum\+tcp:\/\//, "");
}

export function sameTarget(read: AxePool | null, want: AxeTarget): boolean {
  return (
    read !== null &&
    bareHost(read.host) === want.host &&
    read.port === want.port &&
    read.user === want.user
  );
}

/** The slots as the driver interface reports them: primary, then fallback if set. */
export function poolSlots(info: AxeInfo): PoolSlot[] {
  const slot = (index: number, p: AxePool, active: boolean): PoolSlot => ({
    index,
    url: `stratum+tcp://${bareHost(p.host)}:${p.port}`,
    user: p.user,
    // ESP-Miner says which pool it is on, not whether the other is alive.
    status: "unknown",
    active,
  });
  const out = [slot(0, info.primary, !info.usingFallback)];
  if (info.fallback) out.push(slot(1, info.fallback, info.usingFallback));
  return out;
}
