/**
 * The S19's `{"command":"stats","new_api":true}` reply: STATUS as one object, INFO with the
 * versions, and STATS[0] with `rate_5s`/`rate_unit`, `fan[]`, `elapsed` and `chain[]` (each
 * with `index` from 0, `rate_real`, `asic_num`, `asic`, `temp_pcb[]`, `temp_chip[]`, `sn`),
 * as pyasic's and asic-rs's Antminer backends read it (plugins/README.md). Boards are
 * reported with bmminer's legacy numbering (index + 1) so both paths name a board alike.
 */
import { type CgminerReply, invalidReply, isObject, section } from "../cgminer/client.ts";
import type { Board, Fan } from "../driver.ts";
import type { HardwareFacts } from "./parse-legacy.ts";
import { num, temps, toGhs } from "./values.ts";

export interface NewApiFacts extends HardwareFacts {
  readonly hashrateGhs: number | null;
}

/** The reply's facts, or null when it is not in the new format (older firmware). */
export function parseNewApiStats(reply: CgminerReply): NewApiFacts | null {
  const row = section(reply, "STATS")[0];
  if (!row || !Array.isArray(row.chain)) return null;
  const unit = row.rate_unit;
  const boards: Board[] = [];
  const errors: string[] = [];
  for (const c of row.chain) {
    if (!isObject(c)) invalidReply("stats", "a chain is not an object");
    const index = num(c.index);
    if (index === null) invalidReply("stats", "a chain without index");
    boards.push({
      index: index + 1,
      hashrateGhs: toGhs(c.rate_real, unit),
      chips: num(c.asic_num),
      pcbTempC: temps(c.temp_pcb),
      chipTempC: temps(c.temp_chip),
    });
    const dead = typeof c.asic === "string" ? [...c.asic].filter((x) => x === "x").length : 0;
    if (dead > 0) errors.push(`chain ${index + 1}: ${dead} chip(s) not answering`);
  }
  const fans: Fan[] = [];
  if (Array.isArray(row.fan)) {
    for (const [i, v] of row.fan.entries()) {
      const rpm = num(v);
      if (rpm !== null && rpm > 0) fans.push({ index: i + 1, rpm });
    }
    if (fans.length < row.fan.length) {
      errors.push(`fans: ${fans.length} of ${row.fan.length} spinning`);
    }
  }
  return {
    boards,
    fans,
    errors,
    uptimeS: num(row.elapsed),
    hashrateGhs: toGhs(row.rate_5s, unit),
  };
}
