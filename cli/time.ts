import { fail } from "../lib/errors.ts";

/**
 * Command-line values shared by the policy verbs: instants (`--now`), durations (`--ttl`),
 * positive counts (`--seq`, `--days`, `--version`) and worker ids. Each refuses anything
 * else with AGENTD_E_USAGE (exit 2) and a message naming the flag and what it expected;
 * nothing is guessed (no local times, no bare numbers as durations, no `+1` or `1e3`).
 */

const ISO =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * An RFC 3339 instant with an explicit zone (`2026-05-01T12:00:00Z`, `…+02:00`; seconds and
 * fractions optional, fractions truncated to milliseconds) as epoch milliseconds. Dates that
 * do not exist (Feb 30, 24:00, second 60) are refused rather than rolled over.
 */
export function parseInstant(value: string, flag: string): number {
  const m = ISO.exec(value);
  const bad = () =>
    fail(
      "AGENTD_E_USAGE",
      `${flag}: expected an ISO 8601 time with a zone such as 2026-05-01T12:00:00Z, found ${JSON.stringify(value)}`,
      { flag },
    );
  if (m === null) throw bad();
  const [year, month, day, hour, minute] = [m[1], m[2], m[3], m[4], m[5]].map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const second = m[6] === undefined ? 0 : Number(m[6]);
  const ms = m[7] === undefined ? 0 : Number(m[7].padEnd(3, "0").slice(0, 3));
  const offH = m[10] === undefined ? 0 : Number(m[10]);
  const offM = m[11] === undefined ? 0 : Number(m[11]);
  if (
    month < 1 ||
    month > 12 ||
    day < 1 ||
    day > daysInMonth(year, month) ||
    hour > 23 ||
    minute > 59 ||
    second > 59 ||
    offH > 23 ||
    offM > 59
  ) {
    throw bad();
  }
  const sign = m[9] === "-" ? -1 : 1;
  const utc = new Date(0);
  utc.setUTCFullYear(year, month - 1, day); // years 0–99 too, which Date.UTC would shift
  utc.setUTCHours(hour, minute, second, ms);
  return utc.getTime() - sign * (offH * 60 + offM) * 60_000;
}

/** `--now ISO` if given, else the injected clock; epoch milliseconds. */
export function nowFrom(value: string | undefined, clockNow: () => number): number {
  return value === undefined ? clockNow() : parseInstant(value, "--now");
}

const UNIT_S: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400 };

/** A duration `<positive integer><s|m|h|d>` (`90s`, `30m`, `24h`, `7d`) in seconds. */
export function parseDuration(value: string, flag: string): number {
  const m = /^([1-9][0-9]{0,14})([smhd])$/.exec(value);
  const unit = m === null ? undefined : UNIT_S[m[2] as string];
  const seconds = m === null || unit === undefined ? Number.NaN : Number(m[1]) * unit;
  if (!Number.isSafeInteger(seconds)) {
    throw fail(
      "AGENTD_E_USAGE",
      `${flag}: expected a positive whole number with a unit s, m, h or d (such as 24h), found ${JSON.stringify(value)}`,
      { flag },
    );
  }
  return seconds;
}

/** A positive integer in decimal without sign, leading zeros or exponent. */
export function parsePositiveInt(value: string, flag: string): number {
  const n = /^[1-9][0-9]{0,15}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n)) {
    throw fail(
      "AGENTD_E_USAGE",
      `${flag}: expected a positive integer (1 to 2^53 - 1), found ${JSON.stringify(value)}`,
      { flag },
    );
  }
  return n;
}

/** A worker id: the machine key's RFC 7638 thumbprint, 43 base64url characters. */
export function parseWorkerId(value: string, flag = "--worker"): string {
  if (!/^[A-Za-z0-9_-]{43}$/.test(value)) {
    throw fail(
      "AGENTD_E_USAGE",
      `${flag}: expected a worker id (the machine key's thumbprint, 43 base64url characters as printed by agentd init), found ${JSON.stringify(value)}`,
      { flag },
    );
  }
  return value;
}
