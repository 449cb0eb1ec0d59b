/**
 * Reading what bosminer (and its successor BOSer) prints on the 4028 API, field by field as
 * pyasic reads it (pyasic/miners/backends/braiins_os.py, pyasic/miners/factory.py at the
 * commit plugins/README.md pins):
 *
 * - `version`: the firmware string is `VERSION[0].BOSminer` or `.BOSer`; detection looks for
 *   "BOSMINER"/"BOSER" anywhere in the reply (factory.py `_parse_socket_type`).
 * - `devdetails`: the model in `DEVDETAILS[0].Model`, "Bitmain " dropped (factory.py
 *   `get_miner_model_braiins_os`); `Chips` per board.
 * - `summary`: `"MHS 1m"` (MH/s) and `Elapsed`; `devs`: `"MHS 1m"`/`"MHS 5s"` per board.
 * - `temps`: `TEMPS[]` `ID`, `Board`, `Chip`; `fans`: `FANS[]` `ID`, `RPM`.
 * - `tunerstatus`: `ApproximateMinerPowerConsumption` (an estimate), `PowerLimit`,
 *   `TunerChainStatus[]` `HashchainIndex`, `Status` (not "Stable"/testing/tuning: an error).
 */

import { num, str } from "../antminer/values.ts";
import { type CgminerReply, invalidReply, section } from "../cgminer/client.ts";
import type { Board, Fan } from "../driver.ts";

/** Whether a 4028 reply was printed by Braiins OS (bosminer or BOSer). */
export function isBraiinsReply(reply: CgminerReply): boolean {
  return /BOSMINER|BOSER/i.test(JSON.stringify(reply.body));
}

export function parseFirmware(reply: CgminerReply): string {
  const row = section(reply, "VERSION")[0];
  const parts: string[] = [];
  for (const key of ["BOSminer", "BOSer", "API"]) {
    const v = str(row?.[key]);
    if (v !== null) parts.push(`${key} ${v}`);
  }
  if (parts.length === 0) invalidReply("version", "no BOSminer/BOSer version");
  return parts.join(", ");
}

export function parseModel(reply: CgminerReply): string {
  const model = str(section(reply, "DEVDETAILS")[0]?.Model);
  if (model === null) invalidReply("devdetails", "no Model");
  return model.replace(/^Bitmain /, "");
}

export interface SummaryFacts {
  readonly hashrateGhs: number | null;
  readonly uptimeS: number | null;
}

export function parseSummary(reply: CgminerReply): SummaryFacts {
  const row = section(reply, "SUMMARY")[0];
  if (!row) invalidReply("summary", "no SUMMARY row");
  const mhs = num(row["MHS 1m"]);
  return { hashrateGhs: mhs === null ? null : mhs / 1000, uptimeS: num(row.Elapsed) };
}

/** Each board's short-window rate (GH/s), by its `ID`. */
export function parseDevs(
  reply: CgminerReply,
): Map<number, { ghs1m: number | null; ghs5s: number | null }> {
  const out = new Map<number, { ghs1m: number | null; ghs5s: number | null }>();
  for (const r of section(reply, "DEVS")) {
    const id = num(r.ID);
    if (id === null) continue;
    const m1 = num(r["MHS 1m"]);
    const m5 = num(r["MHS 5s"]);
    out.set(id, { ghs1m: m1 === null ? null : m1 / 1000, ghs5s: m5 === null ? null : m5 / 1000 });
  }
  return out;
}

/** Hashing at all, as pyasic's `_is_mining` decides it: some board's 5 s rate above zero. */
export function anyBoardHashing(devs: ReturnType<typeof parseDevs>): boolean {
  return [...devs.values()].some((d) => (d.ghs5s ?? 0) > 0);
}

export function parseChips(reply: CgminerReply): Map<number, number> {
  const out = new Map<number, number>();
  for (const r of section(reply, "DEVDETAILS")) {
    const id = num(r.ID);
    const chips = num(r.Chips);
    if (id !== null && chips !== null) out.set(id, chips);
  }
  return out;
}

export function parseBoards(
  temps: CgminerReply,
  devs: ReturnType<typeof parseDevs>,
  chips: Map<number, number>,
): Board[] {
  const byId = new Map<number, { board: number | null; chip: number | null }>();
  for (const r of section(temps, "TEMPS")) {
    const id = num(r.ID);
    if (id !== null) byId.set(id, { board: num(r.Board), chip: num(r.Chip) });
  }
  const ids = [...new Set([...byId.keys(), ...devs.keys()])].sort((a, b) => a - b);
  return ids.map((index) => {
    const t = byId.get(index);
    return {
      index,
      hashrateGhs: devs.get(index)?.ghs1m ?? null,
      chips: chips.get(index) ?? null,
      pcbTempC: t?.board ? [t.board] : [],
      chipTempC: t?.chip ? [t.chip] : [],
    };
  });
}

export function parseFans(reply: CgminerReply): Fan[] {
  const out: Fan[] = [];
  for (const [i, r] of section(reply, "FANS").entries()) {
    const rpm = num(r.RPM);
    if (rpm !== null) out.push({ index: num(r.ID) ?? i, rpm });
  }
  return out;
}

export interface TunerFacts {
  /** The firmware's estimate of the whole miner's draw. */
  readonly approxWatts: number | null;
  readonly powerLimitW: number | null;
  readonly errors: readonly string[];
}

const HEALTHY = new Set(["Stable", "Testing performance profile", "Tuning individual chips"]);

export function parseTuner(reply: CgminerReply): TunerFacts {
  const row = section(reply, "TUNERSTATUS")[0];
  if (!row) invalidReply("tunerstatus", "no TUNERSTATUS row");
  const errors: string[] = [];
  const chains = Array.isArray(row.TunerChainStatus) ? row.TunerChainStatus : [];
  for (const c of chains) {
    if (typeof c !== "object" || c === null) continue;
    const s = str((c as Record<string, unknown>).Status);
    const idx = num((c as Record<string, unknown>).HashchainIndex);
    // The status can carry details in braces ("… {…}"): keep the words before them.
    if (s !== null && !HEALTHY.has(s)) errors.push(`board ${idx ?? "?"}: ${s.split(" {")[0]}`);
  }
  return {
    approxWatts: num(row.ApproximateMinerPowerConsumption),
    powerLimitW: num(row.PowerLimit),
    errors,
  };
}
