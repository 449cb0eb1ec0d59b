/**
 * The cgminer-style 4028 replies both stock Antminers print (bmminer 2.x on the S9, 1.x on
 * the S19; PROTOCOLS.md section 2, plugins/README.md for the sources): `summary`, `pools` and
 * the legacy `stats`, whose STATS[0] carries the versions and STATS[1] the hardware — chains
 * as numbered keys (`chain_acn6`, `temp2_6`… on the S9 at 6–8; `temp_pcb1` strings on the
 * S19 at 1–3), fans as `fan1`…`fan8`.
 */
import { type CgminerReply, invalidReply, section } from "../cgminer/client.ts";
import type { Board, Fan, PoolSlot, PoolStatus } from "../driver.ts";
import { num, str, temps } from "./values.ts";

type Row = Record<string, unknown>;

/** Chain and fan positions bmminer prints (16 chain slots on the S9's controller). */
const MAX_CHAINS = 16;
const MAX_FANS = 16;

export interface SummaryFacts {
  /** GH/s over bmminer's 5 s window: a string on the S9, a number on the S19. */
  readonly hashrateGhs: number | null;
  readonly uptimeS: number | null;
}

export function parseSummary(reply: CgminerReply): SummaryFacts {
  const row = section(reply, "SUMMARY")[0];
  if (!row) invalidReply("summary", "empty SUMMARY");
  return { hashrateGhs: num(row["GHS 5s"]), uptimeS: num(row.Elapsed) };
}

export interface VersionFacts {
  readonly model: string;
  /** "BMMiner 2.0.0, Miner 16.8.1.3, CompileTime …". */
  readonly firmware: string;
  /** The BMMiner major version: 2 on the S9, 1 on the S19 (null when absent). */
  readonly bmminerMajor: number | null;
}

/** VERSION[0] (from `version`) or STATS[0] (from `stats`): the same version fields. */
export function parseVersionRow(row: Row | undefined, command: string): VersionFacts {
  const model = str(row?.Type);
  if (!row || model === null) invalidReply(command, "no Type");
  const parts: string[] = [];
  for (const key of ["BMMiner", "Miner", "CompileTime"]) {
    const v = str(row[key]);
    if (v !== null) parts.push(`${key} ${v}`);
  }
  const bm = str(row.BMMiner);
  const major = bm === null ? null : num(bm.split(".")[0]);
  return { model, firmware: parts.join(", "), bmminerMajor: major };
}

/** The hardware row of a legacy stats reply: the one with Elapsed (STATS[1] in practice). */
export function statsRow(reply: CgminerReply): Row {
  const rows = section(reply, "STATS");
  const row = rows.find((r) => "Elapsed" in r || "ID" in r);
  if (!row) invalidReply("stats", "no hardware row in STATS");
  return row;
}

export interface HardwareFacts {
  readonly boards: readonly Board[];
  readonly fans: readonly Fan[];
  readonly errors: readonly string[];
  readonly uptimeS: number | null;
}

export function parseLegacyStats(reply: CgminerReply): HardwareFacts {
  const row = statsRow(reply);
  const boards: Board[] = [];
  const errors: string[] = [];
  for (let i = 1; i <= MAX_CHAINS; i++) {
    const chips = num(row[`chain_acn${i}`]);
    if (chips === null || chips === 0) continue;
    // The S19 prints every sensor of a board as "a-b-c-d"; the S9 one number per board.
    const pcb = `temp_pcb${i}` in row ? temps(row[`temp_pcb${i}`]) : temps([row[`temp${i}`]]);
    const chip = `temp_chip${i}` in row ? temps(row[`temp_chip${i}`]) : temps([row[`temp2_${i}`]]);
    boards.push({
      index: i,
      hashrateGhs: num(row[`chain_rate${i}`]),
      chips,
      pcbTempC: pcb,
      chipTempC: chip,
    });
    const acs = row[`chain_acs${i}`];
    const dead = typeof acs === "string" ? [...acs].filter((c) => c === "x").length : 0;
    if (dead > 0) errors.push(`chain ${i}: ${dead} chip(s) not answering`);
  }
  const fans: Fan[] = [];
  for (let i = 1; i <= MAX_FANS; i++) {
    const rpm = num(row[`fan${i}`]);
    if (rpm !== null && rpm > 0) fans.push({ index: i, rpm });
  }
  const expected = num(row.fan_num);
  if (expected !== null && fans.length < expected) {
    errors.push(`fans: ${fans.length} of ${expected} spinning`);
  }
  return { boards, fans, errors, uptimeS: num(row.Elapsed) };
}

function poolStatus(v: unknown): PoolStatus {
  switch (v) {
    case "Alive":
      return "alive";
    case "Dead":
      return "dead";
    case "Disabled":
      return "disabled";
    default:
      return "unknown";
  }
}

/** The pool slots in priority order. */
export function parsePools(reply: CgminerReply): PoolSlot[] {
  const rows = section(reply, "POOLS");
  const slots = rows.map((r, i) => ({
    index: num(r.POOL) ?? i,
    priority: num(r.Priority) ?? num(r.POOL) ?? i,
    url: typeof r.URL === "string" ? r.URL : "",
    user: typeof r.User === "string" ? r.User : "",
    status: poolStatus(r.Status),
    active: r["Stratum Active"] === true,
  }));
  slots.sort((a, b) => a.priority - b.priority);
  return slots.map(({ priority: _p, ...s }) => s);
}
