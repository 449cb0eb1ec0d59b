/**
 * From the value a meter's pointer found to watts, or why not. Pure.
 *
 * A JSON number, or a string holding exactly a JSON number ("123.4"): some PDUs and
 * gateways quote every value, and refusing them would leave those meters unusable. The
 * string must match the JSON number grammar exactly, because `Number()` reads "" and " " as
 * 0, "0x10" as 16 and "Infinity" as infinite — each a wrong reading, not a meter's.
 *
 * Refused, as no meter reports them: negative watts (a reversed clamp or a broken meter; a
 * miner does not generate), anything not finite, and more than `MAX_METER_WATTS` after
 * scaling (a unit mistake — mW read as W — more likely than a megawatt on one meter).
 */
import { describe } from "./pointer.ts";

/** 1 MW: a large container farm's feeder, far beyond any one meter in front of miners. */
export const MAX_METER_WATTS = 1_000_000;

const JSON_NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;

export type Watts =
  | { readonly ok: true; readonly watts: number }
  | { readonly ok: false; readonly why: string };

export function toWatts(value: unknown, scale: number): Watts {
  let n: number;
  if (typeof value === "number") n = value;
  else if (typeof value === "string" && JSON_NUMBER.test(value)) n = Number(value);
  else if (typeof value === "string") return { ok: false, why: "a string that is not a number" };
  else return { ok: false, why: `${describe(value)}, not a number` };
  if (!Number.isFinite(n)) return { ok: false, why: "not a finite number" };
  if (n < 0) return { ok: false, why: `negative (${n})` };
  const watts = n * scale;
  if (!Number.isFinite(watts) || watts > MAX_METER_WATTS) {
    return { ok: false, why: `${watts} W is more than any meter reports (${MAX_METER_WATTS} W)` };
  }
  // -0 (a meter's "−0.0") is 0 watts; keep it from printing as "-0".
  return { ok: true, watts: watts === 0 ? 0 : watts };
}
