/**
 * The bodies of the simulated AxeOS API (axeos.ts): `GET /api/system/info` with ESP-Miner's
 * field names and units (bitaxeorg/ESP-Miner main/http_server/system_api_json.c; the shape of
 * the v2.4.5 reply captured in asic-rs's test data), and the settings a `PATCH /api/system`
 * carries. Pure apart from reading the miner.
 */
import type { SimMiner } from "./miner.ts";

/** One saved pool (ESP-Miner's NVS): a host without scheme, a port, a user, a password. */
export interface AxePool {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly pass: string;
}

export interface AxeSaved {
  readonly primary: AxePool;
  readonly fallback: AxePool;
}

/** "v2.14.2" → [2, 14, 2]; anything else [0, 0, 0] (the oldest: no pause, flat settings). */
export function versionOf(v: string): readonly [number, number, number] {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
}

export function atLeast(v: string, major: number, minor: number): boolean {
  const [a, b] = versionOf(v);
  return a > major || (a === major && b >= minor);
}

export function info(m: SimMiner, saved: AxeSaved, version: string, host: string): object {
  const p = m.profile;
  const hashing = m.hashing;
  const ghs = hashing ? Math.round((p.nominalGhs + m.drift * 0.01) * 100) / 100 : 0;
  m.recordServed(ghs);
  const pause = atLeast(version, 2, 14);
  const body: Record<string, unknown> = {
    power: hashing ? p.powerW + (m.drift % 7) * 0.25 : 3.5,
    voltage: 5120,
    current: hashing ? 3300 : 700,
    temp: p.temps.chip + (m.drift % 5),
    vrTemp: p.temps.pcb,
    hashRate: ghs,
    bestDiff: "1.2M",
    sharesAccepted: m.totals.accepted,
    sharesRejected: m.totals.rejected,
    uptimeSeconds: m.elapsedSeconds,
    ASICModel: "BM1370",
    asicCount: p.chains.chips,
    boardVersion: "601",
    version,
    axeOSVersion: version,
    idfVersion: "v5.4",
    macAddr: m.mac.toUpperCase(),
    hostname: "bitaxe",
    ipv4: host,
    fanspeed: 45,
    fanrpm: m.conditions.has("fan") ? 0 : p.fans.rpm + (m.drift % 50),
    fan2rpm: 0,
    overheat_mode: m.conditions.has("overheat") ? 1 : 0,
    stratumURL: saved.primary.host,
    stratumPort: saved.primary.port,
    stratumUser: saved.primary.user,
    fallbackStratumURL: saved.fallback.host,
    fallbackStratumPort: saved.fallback.port,
    fallbackStratumUser: saved.fallback.user,
    isUsingFallbackStratum: m.currentSlot === 1 ? 1 : 0,
  };
  if (pause) body.miningPaused = m.mode === "sleep";
  return body;
}

/** A saved pool from a miner slot's URL ("stratum+tcp://host:port"). */
export function poolOf(url: { host: string; port: number }, user: string, pass: string): AxePool {
  return { host: url.host, port: url.port, user, pass };
}

/**
 * What a PATCH body changes in the saved pools, as the version reads it: flat
 * `stratumURL`/`fallbackStratum*` keys up to v2.14, a `pools` array (`id` 0 primary, 1
 * fallback) from v2.15; the other version's keys are ignored, as ESP-Miner's settings table
 * ignores names it does not have. A string: the 400 "Wrong API input" reason.
 */
export function applyPatch(saved: AxeSaved, body: unknown, version: string): AxeSaved | string {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return "not an object";
  const b = body as Record<string, unknown>;
  if (atLeast(version, 2, 15)) {
    if (b.pools === undefined) return saved;
    if (!Array.isArray(b.pools)) return "pools: not an array";
    let next = saved;
    for (const item of b.pools as unknown[]) {
      const o = (item ?? {}) as Record<string, unknown>;
      const pool = poolFrom(o, "stratumURL", "stratumPort", "stratumUser", "stratumPassword");
      if (typeof pool === "string") return pool;
      if (o.id === 0) next = { ...next, primary: pool };
      else if (o.id === 1) next = { ...next, fallback: pool };
      else return "pools: id must be 0 or 1";
    }
    return next;
  }
  let next = saved;
  if (b.stratumURL !== undefined) {
    const p = poolFrom(b, "stratumURL", "stratumPort", "stratumUser", "stratumPassword");
    if (typeof p === "string") return p;
    next = { ...next, primary: p };
  }
  if (b.fallbackStratumURL !== undefined) {
    const f = poolFrom(
      b,
      "fallbackStratumURL",
      "fallbackStratumPort",
      "fallbackStratumUser",
      "fallbackStratumPassword",
    );
    if (typeof f === "string") return f;
    next = { ...next, fallback: f };
  }
  return next;
}

function poolFrom(
  o: Record<string, unknown>,
  url: string,
  port: string,
  user: string,
  pass: string,
): AxePool | string {
  const h = o[url];
  const p = o[port];
  const u = o[user];
  const w = o[pass] ?? "";
  if (typeof h !== "string" || h === "") return `${url}: a non-empty string`;
  if (typeof p !== "number" || !Number.isInteger(p) || p < 1 || p > 65535)
    return `${port}: 1–65535`;
  if (typeof u !== "string" || u === "") return `${user}: a non-empty string`;
  if (typeof w !== "string") return `${pass}: a string`;
  return { host: h, port: p, user: u, pass: w };
}
