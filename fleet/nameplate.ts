/**
 * Nameplate power and efficiency per model: what the planner assumes a miner draws before a
 * meter has measured it (a unit wakes only when measured headroom covers this much), and the
 * order it puts units to sleep in under a power cap (least efficient, highest J/TH, first).
 *
 * Estimates, never measurements: they are never summed into the measured `watts` fact. The
 * values are the manufacturers' published specifications at stock settings (the watts are
 * "±5–7%" on Bitmain's sheets: a real unit can draw more, which is why waking needs headroom,
 * not equality):
 * - Antminer S9 (13.5 TH/s): 1323 W, 98 J/TH — Bitmain's S9 specification
 *   (https://support.bitmain.com/hc/en-us/articles/115003362513-S9-Specifications).
 * - Antminer S19 (95 TH/s): 3250 W, 34.5 J/TH; S19 Pro (110 TH/s): 3250 W, 29.5 J/TH;
 *   S19j Pro (100 TH/s): 3050 W, 30.5 J/TH; S19 XP (140 TH/s): 3010 W, 21.5 J/TH — Bitmain's
 *   product pages (https://shop.bitmain.com, "Antminer S19 series", specifications tab).
 * - Bitaxe Max (BM1397, ~400 GH/s): ~15 W; Ultra (BM1366, ~500 GH/s): ~12 W; Supra (BM1368,
 *   ~650 GH/s): ~15 W; Gamma (BM1370, ~1.2 TH/s): ~18 W — the Bitaxe project's board pages
 *   (https://github.com/bitaxeorg/bitaxe, README of each board; https://bitaxe.org). Their
 *   5 V 4 A supplies bound them at 20–25 W, so a ~25 W reservation each is never too little.
 * A model not listed is `null` (unknown): the planner treats it as the most expensive to wake.
 */

export interface Nameplate {
  readonly watts: number;
  readonly jth: number;
}

/** Keyed by the normalized model (see `normalizeModel`). */
const TABLE: Readonly<Record<string, Nameplate>> = Object.freeze({
  s9: { watts: 1323, jth: 98 },
  s19: { watts: 3250, jth: 34.5 },
  "s19 pro": { watts: 3250, jth: 29.5 },
  "s19j pro": { watts: 3050, jth: 30.5 },
  "s19 xp": { watts: 3010, jth: 21.5 },
  "bitaxe max": { watts: 15, jth: 37.5 },
  "bitaxe ultra": { watts: 12, jth: 24 },
  "bitaxe supra": { watts: 15, jth: 23 },
  "bitaxe gamma": { watts: 18, jth: 15 },
});

/**
 * "Antminer S19j Pro" → "s19j pro"; "Bitaxe Ultra (BM1366, board 204)" → "bitaxe ultra":
 * firmware spells the same model with a vendor prefix, a parenthesis or odd spacing.
 */
export function normalizeModel(model: string): string {
  return model
    .toLowerCase()
    .replace(/\(.*\)/g, " ")
    .replace(/\bantminer\b/g, " ")
    .replace(/\s+/g, " ")
    .trim();
}

export function nameplate(model: string): Nameplate | null {
  return TABLE[normalizeModel(model)] ?? null;
}
