import { parse as parseToml, TomlError } from "smol-toml";
import { AgentdError, fail } from "../errors.ts";
import { readTrustedFile } from "../fs/trust.ts";
import { isHostPort } from "../http/host-port.ts";
import { type Field, isField, leaves, type Section } from "./fields.ts";
import { type AgentdConfig, CONFIG_SCHEMA, DEFAULT_CONFIG_PATH } from "./schema.ts";

/**
 * Loads the configuration once: defaults < file < env < flags, each value validated where it
 * enters, the result deep-frozen. Every problem is an AgentdError whose message is one line:
 * `<key path>: expected <what>, found <what> (<where from>)`.
 */

export type Origin = "default" | "file" | "env" | "flag";

/** A value given on the command line, by a dedicated flag or `--set key=value`. */
export interface FlagValue {
  readonly key: string;
  readonly value: string;
  /** How it was given, for messages: `--state-dir`, `--set`. */
  readonly flag: string;
}

export interface ConfigSources {
  /** `--config F`; takes precedence over `AGENTD_CONFIG`. */
  readonly configPath?: string | undefined;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly flags?: readonly FlagValue[];
  /** Reads and trust-checks the file; injected for tests. */
  readonly readFile?: (path: string) => Buffer;
  /** The default path, used when neither `--config` nor `AGENTD_CONFIG` is given. */
  readonly defaultPath?: string;
}

export interface LoadedConfig {
  readonly config: AgentdConfig;
  /** The file that was read, or null when none was (the default file may be absent). */
  readonly file: string | null;
  readonly origins: Readonly<Record<string, Origin>>;
}

export const ENV_PREFIX = "AGENTD_";
export const CONFIG_ENV = "AGENTD_CONFIG";

/** `stratum.listen` → `AGENTD_STRATUM__LISTEN`. */
export function envName(keyPath: string): string {
  return ENV_PREFIX + keyPath.split(".").join("__").toUpperCase();
}

const FIELDS: ReadonlyMap<string, Field> = new Map(leaves(CONFIG_SCHEMA));
const BY_ENV: ReadonlyMap<string, string> = new Map([...FIELDS.keys()].map((k) => [envName(k), k]));

export function loadConfig(sources: ConfigSources): LoadedConfig {
  const values = new Map<string, unknown>();
  const origins: Record<string, Origin> = {};
  for (const [key, field] of FIELDS) {
    values.set(key, field.default);
    origins[key] = "default";
  }

  const explicit = sources.configPath ?? sources.env[CONFIG_ENV];
  const filePath = explicit ?? sources.defaultPath ?? DEFAULT_CONFIG_PATH;
  const table = readConfigFile(filePath, explicit !== undefined, sources.readFile);
  if (table !== null) {
    for (const [key, raw] of flattenTable(table, CONFIG_SCHEMA, "", filePath)) {
      values.set(key, validate(key, raw, `file ${filePath}`));
      origins[key] = "file";
    }
  }

  for (const [name, raw] of Object.entries(sources.env)) {
    if (!name.startsWith(ENV_PREFIX) || name === CONFIG_ENV || raw === undefined) continue;
    const key = BY_ENV.get(name);
    if (key === undefined) {
      throw fail(
        "AGENTD_E_CONFIG_UNKNOWN_ENV",
        `${name}: expected an AGENTD_ variable naming a config key (AGENTD_<SECTION>__<KEY>, see docs/config.md) or AGENTD_CONFIG, found an unknown variable`,
        { env: name },
      );
    }
    values.set(key, validate(key, coerce(key, raw, `env ${name}`), `env ${name}`));
    origins[key] = "env";
  }

  for (const { key, value, flag } of sources.flags ?? []) {
    if (!FIELDS.has(key)) {
      throw fail(
        "AGENTD_E_CONFIG_UNKNOWN_KEY",
        `${key}: expected a config key (see docs/config.md), found an unknown key (flag ${flag})`,
        { key, source: `flag ${flag}` },
      );
    }
    values.set(key, validate(key, coerce(key, value, `flag ${flag}`), `flag ${flag}`));
    origins[key] = "flag";
  }

  return Object.freeze({
    config: deepFreeze(nest(values)) as AgentdConfig,
    file: table === null ? null : filePath,
    origins: Object.freeze(origins),
  });
}

function readConfigFile(
  path: string,
  mustExist: boolean,
  read: ((path: string) => Buffer) | undefined,
): Record<string, unknown> | null {
  let text: string;
  try {
    text = (read ?? ((p: string) => readTrustedFile(p, "config")))(path).toString("utf8");
  } catch (err) {
    if (err instanceof AgentdError && err.code === "AGENTD_E_IO") {
      if (err.context.errno === "ENOENT") {
        if (!mustExist) return null;
        throw fail(
          "AGENTD_E_CONFIG_NOT_FOUND",
          `${path}: expected a config file, found no such file`,
          { path },
          err,
        );
      }
      throw fail(
        "AGENTD_E_CONFIG_UNREADABLE",
        `${path}: expected a readable config file, found ${err.context.errno ?? "an error"}`,
        { path },
        err,
      );
    }
    if (err instanceof AgentdError && err.code === "AGENTD_E_FILE_NOT_REGULAR") {
      throw fail(
        "AGENTD_E_CONFIG_UNREADABLE",
        `${path}: expected a regular config file, found something else`,
        { path },
        err,
      );
    }
    throw err;
  }
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      const what = err.message.split("\n")[0] ?? "a syntax error";
      throw fail(
        "AGENTD_E_CONFIG_PARSE",
        `${path}:${err.line}:${err.column}: expected valid TOML, found ${what.replace(/^Invalid TOML document: /, "")}`,
        { path, line: err.line, column: err.column },
        err,
      );
    }
    throw err;
  }
}

function* flattenTable(
  table: Record<string, unknown>,
  section: Section,
  prefix: string,
  file: string,
): Generator<[string, unknown]> {
  for (const [key, raw] of Object.entries(table)) {
    const keyPath = prefix === "" ? key : `${prefix}.${key}`;
    const node = Object.hasOwn(section, key) ? section[key] : undefined;
    if (node === undefined) {
      throw fail(
        "AGENTD_E_CONFIG_UNKNOWN_KEY",
        `${keyPath}: expected one of ${Object.keys(section)
          .map((k) => (prefix === "" ? k : `${prefix}.${k}`))
          .join(", ")}, found an unknown key (file ${file})`,
        { key: keyPath, source: `file ${file}` },
      );
    }
    if (isField(node)) {
      yield [keyPath, raw];
    } else if (isPlainTable(raw)) {
      yield* flattenTable(raw, node, keyPath, file);
    } else {
      throw fail(
        "AGENTD_E_CONFIG_TYPE",
        `${keyPath}: expected a table, found ${describe(raw)} (file ${file})`,
        { key: keyPath, source: `file ${file}` },
      );
    }
  }
}

function isPlainTable(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Env and flag values are text; turn them into the field's type first. */
function coerce(key: string, raw: string, source: string): unknown {
  const field = FIELDS.get(key);
  if (field?.type === "int") {
    if (!/^[+-]?\d+$/.test(raw)) throw typeError(key, "an integer", raw, source);
    return Number(raw);
  }
  if (field?.type === "number") {
    if (!/^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/.test(raw))
      throw typeError(key, "a number", raw, source);
    return Number(raw);
  }
  if (field?.type === "bool") {
    if (raw === "true" || raw === "1") return true;
    if (raw === "false" || raw === "0") return false;
    throw typeError(key, "true or false", raw, source);
  }
  return raw;
}

function validate(key: string, raw: unknown, source: string): unknown {
  const field = FIELDS.get(key);
  if (field === undefined) throw fail("AGENTD_E_INTERNAL", `no field ${key}`);
  const shown = (v: unknown) => (field.secret === true ? "a secret value" : describe(v));
  const range = (expected: string) =>
    fail("AGENTD_E_CONFIG_RANGE", `${key}: expected ${expected}, found ${shown(raw)} (${source})`, {
      key,
      source,
    });
  switch (field.type) {
    case "int":
      if (typeof raw !== "number" || !Number.isInteger(raw)) {
        throw typeError(key, "an integer", raw, source);
      }
      if (raw < field.min || raw > field.max) {
        throw range(`an integer from ${field.min} to ${field.max}`);
      }
      return raw;
    case "number":
      if (typeof raw !== "number" || !Number.isFinite(raw))
        throw typeError(key, "a number", raw, source);
      if (raw < field.min || raw > field.max)
        throw range(`a number from ${field.min} to ${field.max}`);
      return raw;
    case "bool":
      if (typeof raw !== "boolean") throw typeError(key, "true or false", raw, source);
      return raw;
    case "enum":
      if (typeof raw !== "string") throw typeError(key, "a string", raw, source);
      if (!field.values.includes(raw)) throw range(`one of ${field.values.join(", ")}`);
      return raw;
    case "string":
      if (typeof raw !== "string") throw typeError(key, "a string", raw, source, field.secret);
      if (raw === "" && !field.optional) throw range("a non-empty string");
      return raw;
    case "path":
      if (typeof raw !== "string") throw typeError(key, "a path", raw, source);
      if (raw === "" && field.optional) return raw;
      if (!raw.startsWith("/") || raw.includes("\0")) {
        throw range(field.optional ? 'an absolute path or ""' : "an absolute path");
      }
      return raw;
    case "hostport":
      if (typeof raw !== "string") throw typeError(key, "host:port", raw, source);
      if (raw === "" && field.optional) return raw;
      if (!isHostPort(raw)) {
        throw range(
          field.optional
            ? 'host:port with a port from 0 to 65535, or "" (off)'
            : "host:port with a port from 0 to 65535",
        );
      }
      return raw;
    case "url":
      if (typeof raw !== "string") throw typeError(key, "a URL", raw, source);
      if (raw === "" && field.optional) return raw;
      if (!isUrlWithScheme(raw, field.schemes)) {
        throw range(`a ${field.schemes.join(" or ")} URL${field.optional ? ' or ""' : ""}`);
      }
      return raw;
  }
}

function typeError(key: string, expected: string, raw: unknown, source: string, secret = false) {
  return fail(
    "AGENTD_E_CONFIG_TYPE",
    `${key}: expected ${expected}, found ${secret ? `a value of type ${typeof raw}` : describe(raw)} (${source})`,
    { key, source },
  );
}

function isUrlWithScheme(s: string, schemes: readonly string[]): boolean {
  try {
    const u = new URL(s);
    return schemes.includes(u.protocol.slice(0, -1)) && u.hostname !== "";
  } catch {
    return false;
  }
}

/** How a found value reads in a message: strings quoted, others by kind. */
export function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return "an array";
  if (v === null || v === undefined) return "nothing";
  if (v instanceof Date) return "a date";
  return isPlainTable(v) ? "a table" : `a ${typeof v}`;
}

function nest(values: ReadonlyMap<string, unknown>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [key, value] of values) {
    const parts = key.split(".");
    let node = root;
    for (const part of parts.slice(0, -1)) {
      node[part] ??= {};
      node = node[part] as Record<string, unknown>;
    }
    node[parts[parts.length - 1] as string] = value;
  }
  return root;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** The config with every secret replaced, for `config show` and logs. */
export function redactedConfig(config: AgentdConfig): Record<string, unknown> {
  const values = new Map<string, unknown>();
  for (const [key, field] of FIELDS) {
    const value = key
      .split(".")
      .reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], config);
    values.set(key, field.secret === true && value !== "" ? "[REDACTED]" : value);
  }
  return nest(values);
}

export function configFields(): ReadonlyMap<string, Field> {
  return FIELDS;
}
