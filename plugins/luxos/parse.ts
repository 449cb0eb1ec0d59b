/**
 * What LUXminer prints on 4028 beyond the cgminer basics (summary, stats and pools read as the
 * stock S19's: plugins/antminer/parse-legacy.ts; the captured S19k Pro replies use the same
 * keys). Formats from the captures in test/fixtures/captures/luxos/ and the vendor's API pages
 * (plugins/README.md, "LuxOS").
 */

import { normalizeMac, num, str } from "../antminer/values.ts";
import { type CgminerReply, invalidReply, section } from "../cgminer/client.ts";
import type { Power } from "../driver.ts";

export interface LuxVersion {
  readonly model: string;
  readonly firmware: string;
}

export function parseVersion(reply: CgminerReply): LuxVersion {
  const row = section(reply, "VERSION")[0];
  const model = str(row?.Type);
  if (!row || model === null) invalidReply("version", "no Type");
  const parts: string[] = [];
  for (const key of ["LUXminer", "API"]) {
    const v = str(row[key]);
    if (v !== null) parts.push(`${key} ${v}`);
  }
  return { model, firmware: parts.join(", ") || (str(row.Miner) ?? "LUXminer") };
}

export interface LuxConfig {
  readonly mac: string | null;
  readonly serial: string | null;
  /** "None" awake; anything else (the vendor names sleep "sleep mode") is curtailed. */
  readonly curtailed: boolean;
  readonly profile: string | null;
  readonly atmEnabled: boolean | null;
}

export function parseConfig(reply: CgminerReply): LuxConfig {
  const row = section(reply, "CONFIG")[0];
  if (!row) invalidReply("config", "empty CONFIG");
  const curtail = str(row.CurtailMode);
  if (curtail === null) invalidReply("config", "no CurtailMode");
  return {
    mac: normalizeMac(row.MACAddr),
    serial: str(row.SerialNumber),
    curtailed: curtail.toLowerCase() !== "none",
    profile: str(row.Profile),
    atmEnabled: typeof row.IsAtmEnabled === "boolean" ? row.IsAtmEnabled : null,
  };
}

export interface LuxProfile {
  readonly name: string;
  readonly watts: number;
  /** "0" is the model's default; negative steps are below it. */
  readonly step: number | null;
}

export function parseProfiles(reply: CgminerReply): LuxProfile[] {
  const out: LuxProfile[] = [];
  for (const r of section(reply, "PROFILES")) {
    const name = str(r["Profile Name"]);
    const watts = num(r.Watts);
    if (name !== null && watts !== null && watts > 0) out.push({ name, watts, step: num(r.Step) });
  }
  return out.sort((a, b) => a.watts - b.watts);
}

/**
 * `power`: POWER[0].Watts, and POWER[0].PSU — whether the figure comes from the PSU's own
 * meter (true: measured) or the firmware's model of the boards (false: estimated). The
 * captured S19k Pro prints `"PSU": false`.
 */
export function parsePower(reply: CgminerReply): { watts: number; fromPsu: boolean } {
  const row = section(reply, "POWER")[0];
  const watts = num(row?.Watts);
  if (!row || watts === null || watts < 0) invalidReply("power", "no Watts");
  return { watts, fromPsu: row.PSU === true };
}

/**
 * `psuget`: PSUMONITORING[0].InputPower when the PSU reports it over PMBus; the firmware
 * prints "N/A" for registers the PSU lacks (vendor's psuget page), which reads as absent.
 */
export function parsePsuInputWatts(reply: CgminerReply): number | null {
  const rows = reply.body.PSUMONITORING;
  if (!Array.isArray(rows)) return null;
  const row: unknown = rows[0];
  if (typeof row !== "object" || row === null) return null;
  const w = num((row as Record<string, unknown>).InputPower);
  return w !== null && w >= 0 ? w : null;
}

/** Measured from psuget's input power, else `power` (measured only when it says PSU). */
export function powerOf(p: { watts: number; fromPsu: boolean }, psuWatts: number | null): Power {
  if (psuWatts !== null) return { watts: psuWatts, provenance: "measured", source: "psu" };
  return p.fromPsu
    ? { watts: p.watts, provenance: "measured", source: "psu" }
    : { watts: p.watts, provenance: "estimated", source: "firmware" };
}
