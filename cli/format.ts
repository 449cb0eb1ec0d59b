import { REASONS } from "../policy-guard/reasons.ts";

/**
 * How the CLI's human forms write numbers, times and tables (`--json` prints the API's
 * answers as they are).
 */

/** 1.23 TH/s: hashes per second with an SI prefix. */
export function formatHashrate(hs: number): string {
  if (!Number.isFinite(hs) || hs <= 0) return "0 H/s";
  const units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
  let v = hs;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[i]}`;
}

/** "4 s ago", "3 min ago", "2 h ago", "5 d ago"; "in 3 min" for the future. */
export function formatAgo(atMs: number, nowMs: number): string {
  const d = nowMs - atMs;
  const s = Math.abs(d) / 1000;
  const text =
    s < 90
      ? `${Math.round(s)} s`
      : s < 5400
        ? `${Math.round(s / 60)} min`
        : s < 172_800
          ? `${Math.round(s / 3600)} h`
          : `${Math.round(s / 86_400)} d`;
  return d >= 0 ? `${text} ago` : `in ${text}`;
}

/** An instant as ISO 8601 to the second, with how long ago. */
export function formatInstant(atMs: number, nowMs: number): string {
  return `${new Date(atMs).toISOString().replace(/\.\d{3}Z$/, "Z")} (${formatAgo(atMs, nowMs)})`;
}

/** A difficulty written short: 65536 → 65536, 1.5e-5 → 1.5e-5, 1234567 → 1.23M. */
export function formatDifficulty(d: number): string {
  if (!Number.isFinite(d)) return String(d);
  if (d !== 0 && (Math.abs(d) < 0.01 || Math.abs(d) >= 1e15)) return d.toExponential(2);
  if (Math.abs(d) >= 1e6) {
    const units = ["", "k", "M", "G", "T"];
    let v = d;
    let i = 0;
    while (Math.abs(v) >= 1000 && i < units.length - 1) {
      v /= 1000;
      i++;
    }
    return `${v.toFixed(2)}${units[i]}`;
  }
  return Number.isInteger(d) ? String(d) : String(Number(d.toPrecision(4)));
}

/** A reason code with its meaning (policy-guard/reasons.ts), as one line. */
export function reasonInWords(code: string): string {
  const meaning = (REASONS as Readonly<Record<string, string>>)[code];
  return meaning === undefined ? code : `${code}: ${meaning}`;
}

/**
 * Rows under a header, each column as wide as its widest cell (so a long value widens its
 * column instead of shifting the next), two spaces apart; the last column is not padded.
 */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}
