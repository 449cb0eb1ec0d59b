import { createHash, randomBytes } from "node:crypto";
import { appendFileSync, readFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer, isIP, type Socket } from "node:net";
import { cleanups, crashAfter, exit, Flags, log, simName, unhealthyMode, usage } from "./common.ts";

/**
 * A simulated SRI Translator Proxy (`translator_sv2`) for the supervisor's tests
 * (sim/services/README.md): it reads the translator's TOML config file with its real field
 * names, listens for SV1 miners on `downstream_address:downstream_port` (subscribe, authorize,
 * configure answered; no jobs: the SV2 upstream is out of scope) and serves the SRI monitoring
 * API's health endpoint on `monitoring_address`. `--print-config` prints the parsed config and
 * exits, so a test can check what the supervisor wrote. Node: modules and ./common.ts only.
 */

const SIM = "translator";
simName(SIM);

// ---- bitcoind ----
// ---- a TOML reader (the subset config files use: tables, arrays of tables, inline tables,
// strings, numbers with underscores, booleans, multi-line arrays, comments) ----

type TomlTable = { [key: string]: unknown };

function parseToml(src: string): TomlTable {
  const root: TomlTable = {};
  let current: TomlTable = root;
  let i = 0;
  const lineOf = (at: number) => src.slice(0, at).split("\n").length;
  const fail = (msg: string): never => {
    throw new Error(`TOML line ${lineOf(i)}: ${msg}`);
  };
  const skipSpaces = () => {
    while (src[i] === " " || src[i] === "\t") i++;
  };
  const skipComment = () => {
    if (src[i] === "#") while (i < src.length && src[i] !== "\n") i++;
  };
  const skipAll = () => {
    for (;;) {
      skipSpaces();
      skipComment();
      if (src[i] === "\n" || src[i] === "\r") i++;
      else return;
    }
  };
  const isBare = (c: string | undefined) => c !== undefined && /[A-Za-z0-9_-]/.test(c);

  function parseBasicString(): string {
    i++; // opening quote
    let out = "";
    for (;;) {
      const c = src[i++];
      if (c === undefined || c === "\n") fail("unterminated string");
      if (c === '"') return out;
      if (c !== "\\") {
        out += c;
        continue;
      }
      const e = src[i++];
      const simple: Record<string, string> = {
        b: "\b",
        t: "\t",
        n: "\n",
        f: "\f",
        r: "\r",
        '"': '"',
        "\\": "\\",
      };
      if (e !== undefined && e in simple) out += simple[e];
      else if (e === "u" || e === "U") {
        const len = e === "u" ? 4 : 8;
        const hex = src.slice(i, i + len);
        if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== len) fail("bad unicode escape");
        out += String.fromCodePoint(parseInt(hex, 16));
        i += len;
      } else fail(`bad escape \\${e}`);
    }
  }
  function parseLiteralString(): string {
    const end = src.indexOf("'", i + 1);
    const nl = src.indexOf("\n", i + 1);
    if (end === -1 || (nl !== -1 && nl < end)) fail("unterminated string");
    const s = src.slice(i + 1, end);
    i = end + 1;
    return s;
  }
  function parseMultiline(quote: string): string {
    i += 3;
    if (src[i] === "\r") i++;
    if (src[i] === "\n") i++;
    const end = src.indexOf(quote, i);
    if (end === -1) fail("unterminated multi-line string");
    let s = src.slice(i, end);
    i = end + 3;
    if (quote === '"""') {
      s = s
        .replace(/\\\r?\n\s*/g, "")
        .replace(
          /\\(["\\bfnrt])/g,
          (_m, c: string) => ({ b: "\b", t: "\t", n: "\n", f: "\f", r: "\r" })[c] ?? c,
        );
    }
    return s;
  }
  function parseKeyPart(): string {
    skipSpaces();
    if (src[i] === '"') return parseBasicString();
    if (src[i] === "'") return parseLiteralString();
    const start = i;
    while (isBare(src[i])) i++;
    if (start === i) fail("expected a key");
    return src.slice(start, i);
  }
  function parseKeyPath(): string[] {
    const path = [parseKeyPart()];
    skipSpaces();
    while (src[i] === ".") {
      i++;
      path.push(parseKeyPart());
      skipSpaces();
    }
    return path;
  }
  function parseScalar(): unknown {
    const start = i;
    while (i < src.length && /[0-9A-Za-z_+\-.:]/.test(src[i] as string)) i++;
    // a date-time with a space between date and time
    if (/^\d{4}-\d{2}-\d{2}$/.test(src.slice(start, i)) && /^ \d{2}:/.test(src.slice(i, i + 4))) {
      i++;
      while (i < src.length && /[0-9A-Za-z_+\-.:]/.test(src[i] as string)) i++;
    }
    const tok = src.slice(start, i);
    if (tok === "true") return true;
    if (tok === "false") return false;
    if (/^[+-]?(inf|nan)$/.test(tok))
      return tok.includes("nan") ? Number.NaN : tok.startsWith("-") ? -Infinity : Infinity;
    if (/^0x[0-9a-fA-F_]+$/.test(tok)) return parseInt(tok.slice(2).replace(/_/g, ""), 16);
    if (/^0o[0-7_]+$/.test(tok)) return parseInt(tok.slice(2).replace(/_/g, ""), 8);
    if (/^0b[01_]+$/.test(tok)) return parseInt(tok.slice(2).replace(/_/g, ""), 2);
    if (/^[+-]?\d(_?\d)*$/.test(tok)) return Number(tok.replace(/_/g, ""));
    if (/^[+-]?\d(_?\d)*(\.\d(_?\d)*)?([eE][+-]?\d(_?\d)*)?$/.test(tok))
      return Number(tok.replace(/_/g, ""));
    if (/^\d{4}-\d{2}-\d{2}|^\d{2}:\d{2}/.test(tok)) return tok; // dates kept as text
    return fail(`bad value ${JSON.stringify(tok)}`);
  }
  function parseValue(): unknown {
    skipSpaces();
    const c = src[i];
    if (src.startsWith('"""', i)) return parseMultiline('"""');
    if (src.startsWith("'''", i)) return parseMultiline("'''");
    if (c === '"') return parseBasicString();
    if (c === "'") return parseLiteralString();
    if (c === "[") {
      i++;
      const arr: unknown[] = [];
      for (;;) {
        skipAll();
        if (src[i] === "]") {
          i++;
          return arr;
        }
        arr.push(parseValue());
        skipAll();
        if (src[i] === ",") i++;
        else if (src[i] !== "]") fail("expected , or ] in array");
      }
    }
    if (c === "{") {
      i++;
      const table: TomlTable = {};
      skipSpaces();
      if (src[i] === "}") {
        i++;
        return table;
      }
      for (;;) {
        const path = parseKeyPath();
        if (src[i] !== "=") fail("expected = in inline table");
        i++;
        setPath(table, path, parseValue());
        skipSpaces();
        if (src[i] === ",") i++;
        else if (src[i] === "}") {
          i++;
          return table;
        } else fail("expected , or } in inline table");
      }
    }
    return parseScalar();
  }
  function tableAt(base: TomlTable, path: string[]): TomlTable {
    let t = base;
    for (const k of path) {
      const next = t[k];
      if (next === undefined) {
        const created: TomlTable = {};
        t[k] = created;
        t = created;
      } else if (Array.isArray(next)) t = next.at(-1) as TomlTable;
      else if (typeof next === "object" && next !== null) t = next as TomlTable;
      else fail(`${k} is not a table`);
    }
    return t;
  }
  function setPath(base: TomlTable, path: string[], value: unknown): void {
    const t = tableAt(base, path.slice(0, -1));
    const last = path.at(-1) as string;
    if (last in t) fail(`duplicate key ${last}`);
    t[last] = value;
  }
  function endOfLine(): void {
    skipSpaces();
    skipComment();
    if (i < src.length && src[i] !== "\n" && src[i] !== "\r") fail("expected end of line");
  }

  for (;;) {
    skipAll();
    if (i >= src.length) return root;
    if (src.startsWith("[[", i)) {
      i += 2;
      const path = parseKeyPath();
      if (!src.startsWith("]]", i)) fail("expected ]]");
      i += 2;
      const parent = tableAt(root, path.slice(0, -1));
      const last = path.at(-1) as string;
      parent[last] ??= [];
      const arr = parent[last];
      if (!Array.isArray(arr)) fail(`${last} is not an array of tables`);
      current = {};
      (arr as unknown[]).push(current);
    } else if (src[i] === "[") {
      i++;
      const path = parseKeyPath();
      if (src[i] !== "]") fail("expected ]");
      i++;
      current = tableAt(root, path);
    } else {
      const path = parseKeyPath();
      if (src[i] !== "=") fail("expected =");
      i++;
      setPath(current, path, parseValue());
    }
    endOfLine();
  }
}

// ---- the translator's config (sv2-apps miner-apps/translator/src/lib/config.rs) ----

const BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/** key_utils' Secp256k1PublicKey text form: base58check of version 1 (u16 LE) ‖ x-only key. */
function validAuthorityPubkey(s: string): boolean {
  let n = 0n;
  for (const c of s) {
    const v = BASE58.indexOf(c);
    if (v === -1) return false;
    n = n * 58n + BigInt(v);
  }
  let hex = n.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  const zeros = s.length - s.replace(/^1+/, "").length;
  const bytes = Buffer.concat([Buffer.alloc(zeros), Buffer.from(hex, "hex")]);
  if (bytes.length !== 38) return false;
  const payload = bytes.subarray(0, 34);
  const sha = (b: Buffer) => createHash("sha256").update(b).digest();
  return (
    sha(sha(payload)).subarray(0, 4).equals(bytes.subarray(34)) && bytes[0] === 1 && bytes[1] === 0
  );
}

function validateConfig(c: TomlTable): string[] {
  const errors: string[] = [];
  const u16 = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 65535;
  const need = (
    obj: TomlTable,
    key: string,
    ok: (v: unknown) => boolean,
    what: string,
    prefix = "",
  ) => {
    if (!(key in obj)) errors.push(`missing field \`${prefix}${key}\``);
    else if (!ok(obj[key])) errors.push(`${prefix}${key}: expected ${what}`);
  };
  const str = (v: unknown) => typeof v === "string";
  const num = (v: unknown) => typeof v === "number" && Number.isFinite(v);
  const bool = (v: unknown) => typeof v === "boolean";
  const table = (v: unknown) => typeof v === "object" && v !== null && !Array.isArray(v);
  need(c, "downstream_address", str, "a string");
  need(c, "downstream_port", u16, "a port (u16)");
  need(c, "max_supported_version", u16, "u16");
  need(c, "min_supported_version", u16, "u16");
  need(c, "downstream_extranonce2_size", u16, "u16");
  need(c, "aggregate_channels", bool, "a boolean");
  need(c, "downstream_difficulty_config", table, "a table");
  if (table(c.downstream_difficulty_config)) {
    const d = c.downstream_difficulty_config as TomlTable;
    const p = "downstream_difficulty_config.";
    need(d, "min_individual_miner_hashrate", num, "a number", p);
    need(d, "shares_per_minute", num, "a number", p);
    need(d, "enable_vardiff", bool, "a boolean", p);
    need(d, "job_keepalive_interval_secs", u16, "u16", p);
  }
  need(c, "upstreams", (v) => Array.isArray(v) && v.length > 0, "at least one [[upstreams]]");
  if (Array.isArray(c.upstreams)) {
    c.upstreams.forEach((u: unknown, n) => {
      const p = `upstreams[${n}].`;
      if (!table(u)) {
        errors.push(`${p.slice(0, -1)}: expected a table`);
        return;
      }
      const up = u as TomlTable;
      need(up, "address", str, "a string", p);
      need(up, "port", u16, "a port (u16)", p);
      need(
        up,
        "authority_pubkey",
        (v) => str(v) && validAuthorityPubkey(v as string),
        "a base58check secp256k1 key",
        p,
      );
      need(up, "user_identity", str, "a string", p);
    });
  }
  if ("verify_payout" in c && !bool(c.verify_payout))
    errors.push("verify_payout: expected a boolean");
  for (const k of ["supported_extensions", "required_extensions"]) {
    if (k in c && !(Array.isArray(c[k]) && (c[k] as unknown[]).every(u16)))
      errors.push(`${k}: expected u16 array`);
  }
  if ("monitoring_address" in c) {
    const v = c.monitoring_address;
    const m = typeof v === "string" ? /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(v) : null;
    if (m === null || isIP((m[1] as string).replace(/^\[|\]$/g, "")) === 0 || !u16(Number(m[2]))) {
      errors.push("monitoring_address: expected a socket address IP:PORT");
    }
  }
  if ("log_file" in c && !str(c.log_file)) errors.push("log_file: expected a string");
  return errors;
}

// ---- translator ----

const argv = process.argv
  .slice(2)
  .map((a) => (a === "-c" ? "--config" : a === "-f" ? "--log-file" : a));
const flags = new Flags(argv, {
  config: "value",
  "log-file": "value",
  "print-config": "boolean",
  "monitor-port": "value",
  "downstream-address": "value",
  "downstream-port": "value",
  "crash-after-s": "value",
  "unhealthy-file": "value",
});

const configPath = flags.str("config") ?? "translator-config.toml";
let config: TomlTable;
try {
  const text = readFileSync(configPath, "utf8");
  config =
    configPath.endsWith(".json") || text.trimStart().startsWith("{")
      ? (JSON.parse(text) as TomlTable)
      : parseToml(text);
} catch (e) {
  exit(1, `config ${configPath}: ${(e as Error).message}`);
  throw e;
}
const errors = validateConfig(config);
if (flags.bool("print-config")) {
  process.stdout.write(`${JSON.stringify({ config, valid: errors.length === 0, errors })}\n`);
  process.exit(errors.length === 0 ? 0 : 1);
}
if (errors.length > 0) {
  exit(1, `invalid config ${configPath}: ${errors.join("; ")}`);
}
// The simulator's own overrides of where miners connect (the real translator reads only its
// file): a supervisor's config file always says 0.0.0.0:34255, and two translators on one host
// (a devnet next to a test) must not share a port.
const addressFlag = flags.str("downstream-address");
if (addressFlag !== undefined && isIP(addressFlag) === 0) {
  usage("--downstream-address must be an IP address");
}
const downstreamAddress = addressFlag ?? (config.downstream_address as string);
const downstreamPort = flags.num("downstream-port", config.downstream_port as number);
if (!Number.isInteger(downstreamPort) || downstreamPort < 0 || downstreamPort > 65535) {
  usage("--downstream-port must be a port (0..65535)");
}

const logFile =
  flags.str("log-file") ?? (typeof config.log_file === "string" ? config.log_file : undefined);
if (logFile !== undefined) {
  const original = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    try {
      appendFileSync(logFile, chunk);
    } catch {
      // the log file is best effort
    }
    return (original as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write;
}

const unhealthyFile = flags.str("unhealthy-file");
const difficultyConfig = config.downstream_difficulty_config as TomlTable;
const extranonce2Size = config.downstream_extranonce2_size as number;
// The SV1 difficulty that makes the weakest miner send shares_per_minute shares.
const startDifficulty =
  ((difficultyConfig.min_individual_miner_hashrate as number) * 60) /
  ((difficultyConfig.shares_per_minute as number) * 2 ** 32);

interface Sv1Client {
  readonly id: number;
  readonly extranonce1: string;
  worker: string | null;
  subscribed: boolean;
  versionRollingMask: string | null;
}
const clients = new Map<Socket, Sv1Client>();
let nextClientId = 1;

const sv1 = createServer((socket) => {
  const client: Sv1Client = {
    id: nextClientId++,
    extranonce1: randomBytes(4).toString("hex"),
    worker: null,
    subscribed: false,
    versionRollingMask: null,
  };
  clients.set(socket, client);
  socket.setEncoding("utf8");
  socket.on("error", () => socket.destroy());
  socket.on("close", () => clients.delete(socket));
  const send = (msg: unknown) => socket.write(`${JSON.stringify(msg)}\n`);
  let buffer = "";
  socket.on("data", (chunk: string) => {
    buffer += chunk;
    if (buffer.length > 64 * 1024) {
      socket.destroy();
      return;
    }
    let nl = buffer.indexOf("\n");
    while (nl !== -1) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      nl = buffer.indexOf("\n");
      if (line === "") continue;
      let msg: { id?: unknown; method?: unknown; params?: unknown };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        socket.destroy();
        return;
      }
      const id = msg.id ?? null;
      const params = Array.isArray(msg.params) ? msg.params : [];
      switch (msg.method) {
        case "mining.configure": {
          const options = (params[1] ?? {}) as Record<string, unknown>;
          const result: Record<string, unknown> = {};
          const exts = Array.isArray(params[0]) ? params[0] : [];
          for (const ext of exts) result[String(ext)] = false;
          if (exts.includes("version-rolling")) {
            const asked = parseInt(String(options["version-rolling.mask"] ?? "ffffffff"), 16);
            const mask = ((asked & 0x1fffe000) >>> 0).toString(16).padStart(8, "0");
            client.versionRollingMask = mask;
            result["version-rolling"] = true;
            result["version-rolling.mask"] = mask;
          }
          send({ id, result, error: null });
          break;
        }
        case "mining.subscribe":
          client.subscribed = true;
          send({
            id,
            result: [
              [
                ["mining.set_difficulty", `${client.id}`],
                ["mining.notify", `${client.id}`],
              ],
              client.extranonce1,
              extranonce2Size,
            ],
            error: null,
          });
          break;
        case "mining.authorize":
          client.worker = typeof params[0] === "string" ? params[0] : "";
          send({ id, result: true, error: null });
          send({ id: null, method: "mining.set_difficulty", params: [startDifficulty] });
          break;
        case "mining.extranonce.subscribe":
          send({ id, result: true, error: null });
          break;
        case "mining.submit":
          // No SV2 upstream, so no job was ever sent.
          send({ id, result: null, error: [21, "Job not found", null] });
          break;
        default:
          send({ id, result: null, error: [20, "Method not found", null] });
      }
    }
  });
});
sv1.on("error", (e) => exit(1, `downstream port: ${e.message}`));

let monitoringPort: number | null = null;
const monitoringAddress =
  typeof config.monitoring_address === "string" ? config.monitoring_address : undefined;
const monitorPortFlag = flags.str("monitor-port");
const monitoring =
  monitoringAddress !== undefined || monitorPortFlag !== undefined
    ? createHttpServer((req, res) => {
        const mode = unhealthyMode(unhealthyFile);
        if (mode === "hang") return;
        const url = new URL(req.url ?? "/", "http://translator");
        const json = (status: number, body: unknown) => {
          res.writeHead(status, { "content-type": "application/json" });
          res.end(JSON.stringify(body));
        };
        if (req.method !== "GET") return json(405, { error: "method not allowed" });
        if (url.pathname === "/api/v1/health" || url.pathname === "/health") {
          if (mode !== null)
            return json(503, { status: "unhealthy", timestamp: Math.floor(Date.now() / 1000) });
          return json(200, { status: "ok", timestamp: Math.floor(Date.now() / 1000) });
        }
        if (url.pathname === "/api/v1/sv1/clients") {
          const items = [...clients.values()].map((c) => ({
            client_id: c.id,
            authorized_worker_name: c.worker ?? "",
            user_identity: c.worker ?? "",
            extranonce1: c.extranonce1,
            extranonce2_len: extranonce2Size,
            version_rolling_mask: c.versionRollingMask,
            hashrate: null,
          }));
          return json(200, {
            offset: 0,
            limit: 25,
            total: items.length,
            items: items.slice(0, 25),
          });
        }
        return json(404, { error: "not found" });
      })
    : null;

let pending = monitoring === null ? 1 : 2;
function listening(): void {
  if (--pending > 0) return;
  const address = sv1.address();
  process.stdout.write(
    `${JSON.stringify({
      ready: true,
      service: SIM,
      host: downstreamAddress,
      port: address !== null && typeof address === "object" ? address.port : null,
      monitorPort: monitoringPort,
      config: configPath,
    })}\n`,
  );
  log("info", "listening", { downstream: address, monitoring: monitoringPort });
  crashAfter(flags.num("crash-after-s", 0));
}

sv1.listen(downstreamPort, downstreamAddress, () => {
  cleanups.push(() => {
    sv1.close();
    for (const s of clients.keys()) s.destroy();
  });
  listening();
});
if (monitoring !== null) {
  const m = monitoringAddress === undefined ? null : /^\[?(.*?)\]?:(\d+)$/.exec(monitoringAddress);
  const host = m?.[1] ?? downstreamAddress;
  const port = monitorPortFlag !== undefined ? flags.num("monitor-port", 0) : Number(m?.[2] ?? 0);
  monitoring.on("error", (e) => exit(1, `monitoring port: ${e.message}`));
  monitoring.listen(port, host, () => {
    cleanups.push(() => {
      monitoring.close();
      monitoring.closeAllConnections();
    });
    const address = monitoring.address();
    monitoringPort = address !== null && typeof address === "object" ? address.port : null;
    listening();
  });
}
