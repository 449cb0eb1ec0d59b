/**
 * A meter as configuration gives it (`[[meters]]` in agentd.toml, docs/drivers.md), checked
 * once into a `MeterSpec` so that `readMeter` never meets a spec it cannot read. The fleet
 * manager (issue 18) loads the list; this file only says what one entry must be.
 *
 * Errors are the configuration's codes (exit 2): `AGENTD_E_CONFIG_TYPE` for a missing key or
 * the wrong type, `AGENTD_E_CONFIG_RANGE` for a value of the right type that cannot be,
 * `AGENTD_E_CONFIG_UNKNOWN_KEY` for a key no meter has; each names the key as `where.key`.
 */
import { type ErrorCode, fail } from "../../lib/errors.ts";
import { METER_KINDS, type MeterKind, type MeterSpec, type ShellyMeterSpec } from "../driver.ts";
import { pointerProblem } from "./pointer.ts";

const KEYS = new Set(["kind", "id", "url", "pointer", "feeds", "scale"]);
/** A Shelly's keys: its RPC path is fixed, so no pointer and no scale (its watts are W). */
const SHELLY_KEYS = new Set(["kind", "id", "url", "channel", "feeds"]);

/** Ids of meters and miners: printable, no spaces, short enough for a log line and a label. */
const ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

export function parseMeterSpec(value: unknown, where = "meter"): MeterSpec {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw bad("AGENTD_E_CONFIG_TYPE", where, "must be a table (id, url, pointer, feeds)");
  }
  const v = value as Record<string, unknown>;
  const kind = kindOf(v.kind, `${where}.kind`);
  if (kind === "shelly-gen2") return parseShelly(v, where);
  for (const k of Object.keys(v)) {
    if (!KEYS.has(k)) throw bad("AGENTD_E_CONFIG_UNKNOWN_KEY", `${where}.${k}`, "no meter has it");
  }
  const id = idOf(v.id, `${where}.id`);
  const url = urlOf(v.url, `${where}.url`);

  if (typeof v.pointer !== "string") {
    throw bad("AGENTD_E_CONFIG_TYPE", `${where}.pointer`, 'must be a JSON pointer, e.g. "/apower"');
  }
  const problem = pointerProblem(v.pointer);
  if (problem !== null) {
    throw bad(
      "AGENTD_E_CONFIG_RANGE",
      `${where}.pointer`,
      `${JSON.stringify(v.pointer)} ${problem}`,
    );
  }

  const feeds = feedsOf(v.feeds, `${where}.feeds`);

  let scale: number | undefined;
  if (v.scale !== undefined) {
    if (typeof v.scale !== "number") {
      throw bad("AGENTD_E_CONFIG_TYPE", `${where}.scale`, "must be a number (0.001 for mW)");
    }
    if (!Number.isFinite(v.scale) || v.scale <= 0) {
      throw bad("AGENTD_E_CONFIG_RANGE", `${where}.scale`, "must be a finite number > 0");
    }
    scale = v.scale;
  }
  return Object.freeze({
    ...(v.kind === undefined ? {} : { kind: "http-json" as const }),
    id,
    url,
    pointer: v.pointer,
    feeds,
    ...(scale === undefined ? {} : { scale }),
  });
}

/** The whole `[[meters]]` list: each entry, and no two with one id. */
export function parseMeterSpecs(value: unknown, where = "meters"): readonly MeterSpec[] {
  if (!Array.isArray(value)) throw bad("AGENTD_E_CONFIG_TYPE", where, "must be a list of meters");
  const specs: MeterSpec[] = [];
  for (const [i, entry] of value.entries()) {
    const spec = parseMeterSpec(entry, `${where}[${i}]`);
    if (specs.some((s) => s.id === spec.id)) {
      throw bad("AGENTD_E_CONFIG_RANGE", `${where}[${i}].id`, `"${spec.id}" is used twice`);
    }
    specs.push(spec);
  }
  return Object.freeze(specs);
}

function kindOf(value: unknown, where: string): MeterKind {
  if (value === undefined) return "http-json";
  if (typeof value !== "string") throw bad("AGENTD_E_CONFIG_TYPE", where, "must be a string");
  const kind = METER_KINDS.find((k) => k === value);
  if (kind === undefined) {
    throw bad("AGENTD_E_CONFIG_RANGE", where, `must be one of ${METER_KINDS.join(", ")}`);
  }
  return kind;
}

/** A Shelly Gen2+: the device's URL (no path: the RPC path is the driver's) and its switch. */
function parseShelly(v: Record<string, unknown>, where: string): ShellyMeterSpec {
  for (const k of Object.keys(v)) {
    if (!SHELLY_KEYS.has(k)) {
      throw bad(
        "AGENTD_E_CONFIG_UNKNOWN_KEY",
        `${where}.${k}`,
        "a shelly-gen2 meter has no such key",
      );
    }
  }
  const id = idOf(v.id, `${where}.id`);
  const url = urlOf(v.url, `${where}.url`);
  const u = new URL(url);
  if ((u.pathname !== "/" && u.pathname !== "") || u.search !== "") {
    throw bad(
      "AGENTD_E_CONFIG_RANGE",
      `${where}.url`,
      "must be the device only, http://host[:port]",
    );
  }
  let channel: number | undefined;
  if (v.channel !== undefined) {
    if (typeof v.channel !== "number") {
      throw bad("AGENTD_E_CONFIG_TYPE", `${where}.channel`, "must be a switch id (0, 1, …)");
    }
    if (!Number.isInteger(v.channel) || v.channel < 0 || v.channel > 255) {
      throw bad("AGENTD_E_CONFIG_RANGE", `${where}.channel`, "must be an integer from 0 to 255");
    }
    channel = v.channel;
  }
  return Object.freeze({
    kind: "shelly-gen2" as const,
    id,
    url,
    ...(channel === undefined ? {} : { channel }),
    feeds: feedsOf(v.feeds, `${where}.feeds`),
  });
}

function feedsOf(value: unknown, where: string): readonly string[] {
  if (!Array.isArray(value)) {
    throw bad("AGENTD_E_CONFIG_TYPE", where, "must be a list of miner ids");
  }
  // A meter that feeds nobody measures nothing the agent can use: a mistake, not a choice.
  if (value.length === 0) {
    throw bad("AGENTD_E_CONFIG_RANGE", where, "is empty: name the miners it feeds");
  }
  const feeds: string[] = [];
  for (const [i, f] of value.entries()) {
    const miner = idOf(f, `${where}[${i}]`);
    // Listed twice, a miner would look like two machines sharing the meter's watts.
    if (feeds.includes(miner)) {
      throw bad("AGENTD_E_CONFIG_RANGE", `${where}[${i}]`, `"${miner}" is listed twice`);
    }
    feeds.push(miner);
  }
  return Object.freeze(feeds);
}

function idOf(value: unknown, where: string): string {
  if (typeof value !== "string") throw bad("AGENTD_E_CONFIG_TYPE", where, "must be a string");
  if (!ID.test(value)) {
    throw bad(
      "AGENTD_E_CONFIG_RANGE",
      where,
      `${JSON.stringify(value)} is not an id (letters, digits, ". _ : -", at most 64)`,
    );
  }
  return value;
}

function urlOf(value: unknown, where: string): string {
  if (typeof value !== "string") throw bad("AGENTD_E_CONFIG_TYPE", where, "must be a URL");
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    // Not quoted: a mistyped URL may still hold a password.
    throw bad("AGENTD_E_CONFIG_RANGE", where, "is not a URL");
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw bad("AGENTD_E_CONFIG_RANGE", where, `scheme "${u.protocol}" is not http: or https:`);
  }
  // A password in agentd.toml would be read by anyone who may read the config and would
  // travel in every error that quotes the URL: credentials live in a 0600 file instead.
  if (u.username !== "" || u.password !== "") {
    throw bad(
      "AGENTD_E_CONFIG_RANGE",
      where,
      "holds a user or password: put them in the meter's credentials file (docs/drivers.md)",
    );
  }
  if (u.hash !== "")
    throw bad("AGENTD_E_CONFIG_RANGE", where, "has a #fragment, which HTTP never sends");
  return value;
}

function bad(code: ErrorCode, where: string, why: string) {
  return fail(code, `${where} ${why}`, { key: where });
}
