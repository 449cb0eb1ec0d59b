/**
 * Reading the loosely typed values stock Antminer firmware prints: numbers that are sometimes
 * strings (`"GHS 5s":"13500.00"` on the S9), `"73-45-64-65"` temperature strings, empty
 * strings for absent chains, and MACs in upper case.
 */

/** A finite number from a number or a numeric string; null otherwise ("" included). */
export function num(v: unknown): number | null {
  if (typeof v === "number") return Number.isFinite(v) ? v : null;
  if (typeof v === "string" && v.trim() !== "") {
    const n = Number(v);
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

/** Non-zero temperatures from an array or a `"a-b-c-d"` string (0 means no sensor). */
export function temps(v: unknown): number[] {
  const parts: unknown[] = Array.isArray(v) ? v : typeof v === "string" ? v.split("-") : [];
  return parts.map(num).filter((n): n is number => n !== null && n !== 0);
}

/** Lower-case colon-separated, or null when it is not a MAC. */
export function normalizeMac(v: unknown): string | null {
  if (typeof v !== "string") return null;
  const m = v.trim().toLowerCase();
  return /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m) ? m : null;
}

export function str(v: unknown): string | null {
  return typeof v === "string" && v !== "" ? v : null;
}

/** GH/s from a value in `unit` ("GH", "GH/s", "TH/s", "MH/s"); GH when unknown. */
export function toGhs(v: unknown, unit: unknown): number | null {
  const n = num(v);
  if (n === null) return null;
  const u = typeof unit === "string" ? unit.toUpperCase() : "GH";
  if (u.startsWith("TH")) return n * 1000;
  if (u.startsWith("MH")) return n / 1000;
  return n;
}
