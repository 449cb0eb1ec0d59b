import { readFileSync } from "node:fs";
import { parse } from "smol-toml";
import { fail } from "../lib/errors.ts";
import { defaultSpecs } from "./defaults.ts";
import {
  type HealthProbe,
  IMAGE_ID,
  type PortSpec,
  type RestartSpec,
  SERVICE_KINDS,
  type ServiceKind,
  type ServiceSpec,
  type VolumeSpec,
} from "./spec.ts";

/**
 * The services file (TOML, config `supervisor.services_file`): one table per kind, each key
 * overriding the built-in default (defaults.ts). Validated once, with the path of the
 * offending key in the message, then frozen:
 *
 *   [bitcoind]
 *   command = ["bitcoind", "-datadir=/data"]
 *   env = { TZ = "UTC" }
 *   image = "sha256:…"              # optional: must equal the consent's id
 *   user = "1000:1000"
 *   memory_mb = 4096
 *   cpus = 2
 *   read_only_root = true
 *   depends_on = []
 *   stop_timeout_s = 600
 *   volumes = [{ source = "/srv/btc", target = "/data", read_only = false }]
 *   ports = [{ host_ip = "127.0.0.1", host = 8332, container = 8332 }]
 *   health = { type = "bitcoind-rpc", port = 8332, cookie_file = "/srv/btc/.cookie" }
 *   restart = { min_ms = 1000, max_ms = 60000, crashloop_failures = 5, crashloop_window_s = 600 }
 */

type Table = Record<string, unknown>;

const KIND_KEYS = [
  "command",
  "env",
  "image",
  "user",
  "memory_mb",
  "cpus",
  "read_only_root",
  "depends_on",
  "stop_timeout_s",
  "volumes",
  "ports",
  "health",
  "restart",
] as const;

export function loadServicesFile(
  path: string,
  dataDir: string,
): Readonly<Record<ServiceKind, ServiceSpec>> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw fail(
      "AGENTD_E_CONFIG_UNREADABLE",
      `${path}: cannot read the services file`,
      { path },
      err,
    );
  }
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch (err) {
    throw fail("AGENTD_E_CONFIG_PARSE", `${path}: ${(err as Error).message}`, { path }, err);
  }
  return parseServices(doc, dataDir, path);
}

export function parseServices(
  doc: Table,
  dataDir: string,
  source = "services",
): Readonly<Record<ServiceKind, ServiceSpec>> {
  const defaults = defaultSpecs(dataDir);
  const out = { ...defaults } as Record<ServiceKind, ServiceSpec>;
  for (const key of Object.keys(doc)) {
    if (!(SERVICE_KINDS as readonly string[]).includes(key)) {
      throw unknownKey(source, key, `a service kind (${SERVICE_KINDS.join(", ")})`);
    }
    const kind = key as ServiceKind;
    out[kind] = parseKind(kind, table(doc[kind], `${source}: ${kind}`), defaults[kind], source);
  }
  for (const spec of Object.values(out)) {
    for (const d of spec.dependsOn) {
      if (d === spec.kind) throw typeError(source, `${spec.kind}.depends_on`, "another kind", d);
    }
  }
  return Object.freeze(out);
}

function parseKind(kind: ServiceKind, t: Table, base: ServiceSpec, source: string): ServiceSpec {
  const at = (k: string) => `${kind}.${k}`;
  for (const k of Object.keys(t)) {
    if (!(KIND_KEYS as readonly string[]).includes(k)) {
      throw unknownKey(source, at(k), `one of ${KIND_KEYS.join(", ")}`);
    }
  }
  const has = (k: string) => Object.hasOwn(t, k);
  const spec: ServiceSpec = {
    kind,
    image: has("image") ? imageId(t.image, source, at("image")) : base.image,
    command: has("command") ? strings(t.command, source, at("command"), 1) : base.command,
    env: has("env") ? env(t.env, source, at("env")) : base.env,
    user: has("user") ? str(t.user, source, at("user")) : base.user,
    memoryBytes: has("memory_mb")
      ? int(t.memory_mb, source, at("memory_mb"), 16, 1_048_576) * 1024 * 1024
      : base.memoryBytes,
    cpus: has("cpus") ? num(t.cpus, source, at("cpus"), 0.01, 1024) : base.cpus,
    readOnlyRoot: has("read_only_root")
      ? bool(t.read_only_root, source, at("read_only_root"))
      : base.readOnlyRoot,
    dependsOn: has("depends_on")
      ? strings(t.depends_on, source, at("depends_on"), 0).map((d) =>
          serviceKind(d, source, at("depends_on")),
        )
      : base.dependsOn,
    stopTimeoutS: has("stop_timeout_s")
      ? int(t.stop_timeout_s, source, at("stop_timeout_s"), 1, 3600)
      : base.stopTimeoutS,
    volumes: has("volumes")
      ? list(t.volumes, source, at("volumes")).map((v, i) =>
          volume(v, source, `${at("volumes")}[${i}]`),
        )
      : base.volumes,
    ports: has("ports")
      ? list(t.ports, source, at("ports")).map((p, i) => port(p, source, `${at("ports")}[${i}]`))
      : base.ports,
    health: has("health") ? health(t.health, source, at("health")) : base.health,
    restart: has("restart")
      ? restart(t.restart, source, at("restart"), base.restart)
      : base.restart,
  };
  return Object.freeze(spec);
}

// ---- values ---------------------------------------------------------------------------------

function unknownKey(source: string, key: string, expected: string) {
  return fail(
    "AGENTD_E_CONFIG_UNKNOWN_KEY",
    `${source}: ${key}: unknown key (expected ${expected})`,
    {
      key,
    },
  );
}

function typeError(source: string, key: string, expected: string, found: unknown) {
  return fail(
    "AGENTD_E_CONFIG_TYPE",
    `${source}: ${key}: expected ${expected}, found ${JSON.stringify(found) ?? String(found)}`,
    { key },
  );
}

function table(v: unknown, where: string): Table {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw fail("AGENTD_E_CONFIG_TYPE", `${where}: expected a table`, { key: where });
  }
  return v as Table;
}

function str(v: unknown, source: string, key: string): string {
  if (typeof v !== "string" || v === "" || v.length > 4096)
    throw typeError(source, key, "a non-empty string", v);
  return v;
}

function imageId(v: unknown, source: string, key: string): string {
  if (typeof v !== "string" || !IMAGE_ID.test(v)) {
    throw typeError(
      source,
      key,
      "an image id (sha256: + 64 hex, as docker image inspect shows .Id)",
      v,
    );
  }
  return v;
}

function bool(v: unknown, source: string, key: string): boolean {
  if (typeof v !== "boolean") throw typeError(source, key, "true or false", v);
  return v;
}

function int(v: unknown, source: string, key: string, min: number, max: number): number {
  const n = typeof v === "bigint" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
    throw fail(
      "AGENTD_E_CONFIG_RANGE",
      `${source}: ${key}: expected an integer from ${min} to ${max}, found ${String(v)}`,
      { key },
    );
  }
  return n;
}

function num(v: unknown, source: string, key: string, min: number, max: number): number {
  const n = typeof v === "bigint" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isFinite(n) || n < min || n > max) {
    throw fail(
      "AGENTD_E_CONFIG_RANGE",
      `${source}: ${key}: expected a number from ${min} to ${max}, found ${String(v)}`,
      { key },
    );
  }
  return n;
}

function list(v: unknown, source: string, key: string): unknown[] {
  if (!Array.isArray(v) || v.length > 64) throw typeError(source, key, "a list (at most 64)", v);
  return v;
}

function strings(v: unknown, source: string, key: string, min: number): string[] {
  const l = list(v, source, key);
  if (l.length < min) throw typeError(source, key, `a list of at least ${min} strings`, v);
  return l.map((s, i) => str(s, source, `${key}[${i}]`));
}

function serviceKind(v: string, source: string, key: string): ServiceKind {
  if (!(SERVICE_KINDS as readonly string[]).includes(v)) {
    throw typeError(source, key, `a service kind (${SERVICE_KINDS.join(", ")})`, v);
  }
  return v as ServiceKind;
}

function env(v: unknown, source: string, key: string): Record<string, string> {
  const t = table(v, `${source}: ${key}`);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(t)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
      throw typeError(source, `${key}.${k}`, "a variable name", k);
    if (typeof val !== "string") throw typeError(source, `${key}.${k}`, "a string", val);
    out[k] = val;
  }
  return out;
}

function volume(v: unknown, source: string, key: string): VolumeSpec {
  const t = table(v, `${source}: ${key}`);
  const extra = Object.keys(t).find((k) => !["source", "target", "read_only"].includes(k));
  if (extra !== undefined) throw unknownKey(source, `${key}.${extra}`, "source, target, read_only");
  const target = str(t.target, source, `${key}.target`);
  if (!target.startsWith("/")) throw typeError(source, `${key}.target`, "an absolute path", target);
  return {
    source: str(t.source, source, `${key}.source`),
    target,
    readOnly: t.read_only === undefined ? false : bool(t.read_only, source, `${key}.read_only`),
  };
}

function port(v: unknown, source: string, key: string): PortSpec {
  const t = table(v, `${source}: ${key}`);
  const extra = Object.keys(t).find((k) => !["host_ip", "host", "container"].includes(k));
  if (extra !== undefined) throw unknownKey(source, `${key}.${extra}`, "host_ip, host, container");
  return {
    hostIp: t.host_ip === undefined ? "127.0.0.1" : str(t.host_ip, source, `${key}.host_ip`),
    host: t.host === undefined ? 0 : int(t.host, source, `${key}.host`, 0, 65535),
    container: int(t.container, source, `${key}.container`, 1, 65535),
  };
}

function health(v: unknown, source: string, key: string): HealthProbe {
  const t = table(v, `${source}: ${key}`);
  const type = str(t.type, source, `${key}.type`);
  const allowed: Record<string, readonly string[]> = {
    "bitcoind-rpc": ["type", "port", "cookie_file"],
    "lnd-rest": ["type", "port", "macaroon_file", "tls"],
    "cln-rpc": ["type", "socket"],
    http: ["type", "port", "path"],
    tcp: ["type", "port"],
    none: ["type"],
  };
  const keys = allowed[type];
  if (keys === undefined)
    throw typeError(source, `${key}.type`, Object.keys(allowed).join(", "), type);
  const extra = Object.keys(t).find((k) => !keys.includes(k));
  if (extra !== undefined) throw unknownKey(source, `${key}.${extra}`, keys.join(", "));
  const p = () => int(t.port, source, `${key}.port`, 1, 65535);
  switch (type) {
    case "bitcoind-rpc":
      return { type, port: p(), cookieFile: str(t.cookie_file, source, `${key}.cookie_file`) };
    case "lnd-rest":
      return {
        type,
        port: p(),
        macaroonFile: str(t.macaroon_file, source, `${key}.macaroon_file`),
        tls: t.tls === undefined ? true : bool(t.tls, source, `${key}.tls`),
      };
    case "cln-rpc":
      return { type, socket: str(t.socket, source, `${key}.socket`) };
    case "http":
      return {
        type,
        port: p(),
        path: t.path === undefined ? "/" : str(t.path, source, `${key}.path`),
      };
    case "tcp":
      return { type, port: p() };
    default:
      return { type: "none" };
  }
}

function restart(v: unknown, source: string, key: string, base: RestartSpec): RestartSpec {
  const t = table(v, `${source}: ${key}`);
  const names = ["min_ms", "max_ms", "crashloop_failures", "crashloop_window_s"];
  const extra = Object.keys(t).find((k) => !names.includes(k));
  if (extra !== undefined) throw unknownKey(source, `${key}.${extra}`, names.join(", "));
  const r = {
    minMs:
      t.min_ms === undefined ? base.minMs : int(t.min_ms, source, `${key}.min_ms`, 10, 3_600_000),
    maxMs:
      t.max_ms === undefined ? base.maxMs : int(t.max_ms, source, `${key}.max_ms`, 10, 86_400_000),
    crashloopFailures:
      t.crashloop_failures === undefined
        ? base.crashloopFailures
        : int(t.crashloop_failures, source, `${key}.crashloop_failures`, 1, 1000),
    crashloopWindowMs:
      t.crashloop_window_s === undefined
        ? base.crashloopWindowMs
        : int(t.crashloop_window_s, source, `${key}.crashloop_window_s`, 1, 86_400) * 1000,
  };
  if (r.maxMs < r.minMs)
    throw typeError(source, `${key}.max_ms`, `at least min_ms (${r.minMs})`, r.maxMs);
  return r;
}
