/**
 * What ESP-Miner's `GET /api/system/info` says, read into the facts the driver relies on
 * (plugins/README.md, "Bitaxe (ESP-Miner)"). Pure: no I/O.
 *
 * Field names and units as ESP-Miner prints them (main/http_server/system_api_json.c):
 * `hashRate` GH/s, `temp` the ASIC's average (°C), `vrTemp` the voltage regulator's, `power`
 * W, `fanrpm`/`fan2rpm`, `uptimeSeconds`, `macAddr` "AA:BB:…" (upper case), `ASICModel`
 * ("BM1370"), `boardVersion`, `version` ("v2.4.5-3-gb5d1e36-dirty"), the primary pool flat as
 * `stratumURL` (a host, no scheme), `stratumPort`, `stratumUser`, the fallback as
 * `fallbackStratum*`, `isUsingFallbackStratum` 0/1, and from v2.14.0 `miningPaused`.
 * cJSON prints a NaN sensor as `null`: such a value is absent, never 0.
 */
import { AgentdError } from "../../lib/errors.ts";
import { parseJsonStrict } from "../../lib/json/strict-parse.ts";

export interface AxeInfo {
  readonly asicModel: string;
  readonly boardVersion: string | null;
  readonly asicCount: number | null;
  readonly version: string;
  readonly axeOsVersion: string | null;
  readonly mac: string | null;
  readonly hashrateGhs: number;
  readonly chipTempC: number | null;
  readonly vrTempC: number | null;
  readonly powerW: number | null;
  readonly fanRpm: readonly number[];
  readonly uptimeS: number;
  readonly primary: AxePool;
  readonly fallback: AxePool | null;
  readonly usingFallback: boolean;
  /** null: the version has no pause (before v2.14.0). */
  readonly miningPaused: boolean | null;
  readonly errors: readonly string[];
}

export interface AxePool {
  readonly host: string;
  readonly port: number;
  readonly user: string;
}

export function parseInfo(body: string): AxeInfo {
  let doc: unknown;
  try {
    doc = parseJsonStrict(body);
  } catch {
    // Not quoted: the reply is the device's, and a reply is untrusted text.
    throw invalid("not strict JSON");
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw invalid("not a JSON object");
  }
  const o = doc as Record<string, unknown>;
  const primary = {
    host: reqString(o, "stratumURL"),
    port: reqNumber(o, "stratumPort"),
    user: reqString(o, "stratumUser"),
  };
  const fbHost = optString(o, "fallbackStratumURL");
  const fallback =
    fbHost === null || fbHost === ""
      ? null
      : {
          host: fbHost,
          port: optNumber(o, "fallbackStratumPort") ?? 0,
          user: optString(o, "fallbackStratumUser") ?? "",
        };
  const fans = [optNumber(o, "fanrpm")];
  const fan2 = optNumber(o, "fan2rpm");
  // Boards with one fan print fan2rpm 0: a second fan only when it turns.
  if (fan2 !== null && fan2 > 0) fans.push(fan2);
  const errors: string[] = [];
  if (optNumber(o, "overheat_mode") === 1) errors.push("overheat mode: the ASIC is stopped");
  for (const k of ["power_fault", "hardware_fault"]) {
    const f = optString(o, k);
    if (f !== null && f !== "") errors.push(`${k}: ${f.slice(0, 120)}`);
  }
  const mac = optString(o, "macAddr");
  return {
    asicModel: reqString(o, "ASICModel"),
    boardVersion: optString(o, "boardVersion"),
    asicCount: optNumber(o, "asicCount"),
    version: reqString(o, "version"),
    axeOsVersion: optString(o, "axeOSVersion"),
    mac: mac !== null && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac) ? mac.toLowerCase() : null,
    hashrateGhs: reqNumber(o, "hashRate"),
    chipTempC: optNumber(o, "temp"),
    vrTempC: optNumber(o, "vrTemp"),
    powerW: optNumber(o, "power"),
    fanRpm: fans.filter((f): f is number => f !== null),
    uptimeS: reqNumber(o, "uptimeSeconds"),
    primary,
    fallback,
    usingFallback: o.isUsingFallbackStratum === 1 || o.isUsingFallbackStratum === true,
    miningPaused: typeof o.miningPaused === "boolean" ? o.miningPaused : null,
    errors,
  };
}

function reqString(o: Record<string, unknown>, k: string): string {
  const v = o[k];
  if (typeof v !== "string") throw invalid(`"${k}" is missing or not a string`);
  return v;
}

function reqNumber(o: Record<string, unknown>, k: string): number {
  const v = o[k];
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw invalid(`"${k}" is missing or not a number`);
  }
  return v;
}

function optString(o: Record<string, unknown>, k: string): string | null {
  const v = o[k];
  return typeof v === "string" ? v : null;
}

function optNumber(o: Record<string, unknown>, k: string): number | null {
  const v = o[k];
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function invalid(why: string): AgentdError {
  return new AgentdError("AGENTD_E_MINER_REPLY_INVALID", `/api/system/info: ${why}`, {
    context: { path: "/api/system/info" },
  });
}
