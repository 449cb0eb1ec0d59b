import {
  createECDH,
  generateKeyPairSync,
  randomBytes,
  sign,
  timingSafeEqual,
  X509Certificate,
} from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import {
  createServer as createHttpServer,
  request as httpRequest,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { isIP } from "node:net";
import { homedir, hostname, networkInterfaces } from "node:os";
import { join } from "node:path";

/**
 * A simulated lnd for the supervisor's tests (sim/services/README.md): lnd's REST API
 * (grpc-gateway JSON) over HTTPS with the self-signed tls.cert lnd generates, macaroon auth
 * (`Grpc-Metadata-macaroon: <hex>`), `getinfo` whose `synced_to_chain` follows a bitcoind it polls,
 * and a configurable channel list. One file with node: imports only, so it runs alone in a
 * container (`node /sim/services/lnd.ts --lnddir /data --restlisten 0.0.0.0:8080`).
 */

const SIM = "lnd";

// ---- shared sim boilerplate (each service is one self-contained file) ----

type FlagKind = "value" | "boolean" | "list";

class Flags {
  readonly #values = new Map<string, string[]>();
  constructor(argv: readonly string[], known: Record<string, FlagKind>) {
    for (let i = 0; i < argv.length; i++) {
      const arg = argv[i] as string;
      if (!arg.startsWith("--")) usage(`unexpected argument ${JSON.stringify(arg)}`);
      const eq = arg.indexOf("=");
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      const kind = known[name];
      if (kind === undefined) usage(`unknown flag --${name}`);
      let value: string;
      if (eq !== -1) value = arg.slice(eq + 1);
      else if (kind === "boolean") value = "true";
      else {
        const next = argv[++i];
        if (next === undefined) usage(`--${name} needs a value`);
        value = next;
      }
      const list = this.#values.get(name) ?? [];
      if (kind !== "list") list.length = 0;
      list.push(value);
      this.#values.set(name, list);
    }
  }
  str(name: string): string | undefined {
    return this.#values.get(name)?.at(-1);
  }
  num(name: string, fallback: number): number {
    const v = this.str(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n)) usage(`--${name} must be a number`);
    return n;
  }
  bool(name: string): boolean {
    const v = this.str(name);
    return v !== undefined && v !== "false" && v !== "0";
  }
  list(name: string): string[] {
    return [...(this.#values.get(name) ?? [])];
  }
}

function log(level: string, msg: string, extra: Record<string, unknown> = {}): void {
  process.stderr.write(`${JSON.stringify({ level, sim: SIM, msg, ...extra })}\n`);
}

function usage(msg: string): never {
  log("error", msg, { code: "AGENTD_E_USAGE" });
  process.exit(2);
}

const cleanups: (() => void)[] = [];
let exiting = false;
/** Runs the clean-ups (close servers, remove files) and exits at once. */
function exit(code: number, why: string): void {
  if (exiting) return;
  exiting = true;
  log(code === 0 ? "info" : "error", why, { exitCode: code });
  for (const c of cleanups.splice(0).reverse()) {
    try {
      c();
    } catch {
      // best effort: exiting anyway
    }
  }
  process.exit(code);
}
process.on("SIGTERM", () => exit(0, "SIGTERM: stopping"));
process.on("SIGINT", () => exit(0, "SIGINT: stopping"));

/** The contents of the health switch file (trimmed), or null when it does not exist. */
function unhealthyMode(path: string | undefined): string | null {
  if (path === undefined || !existsSync(path)) return null;
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return "";
  }
}

function crashAfter(seconds: number): void {
  if (seconds > 0) {
    setTimeout(() => exit(1, `crashing as told (--crash-after-s ${seconds})`), seconds * 1000);
  }
}

// ---- bitcoind ----
// ---- bitcoind, as lnd sees it (polled over JSON-RPC with its cookie) ----

interface BitcoindView {
  readonly configured: boolean;
  readonly reachable: boolean;
  readonly blocks: number;
  readonly headers: number;
  readonly initialblockdownload: boolean;
  readonly error: string | null;
}

function watchBitcoind(
  target: string | undefined,
  cookiePath: string | undefined,
  pollMs: number,
): () => BitcoindView {
  if (target === undefined) {
    return () => ({
      configured: false,
      reachable: false,
      blocks: 0,
      headers: 0,
      initialblockdownload: false,
      error: null,
    });
  }
  const colon = target.lastIndexOf(":");
  const host = colon === -1 ? target : target.slice(0, colon).replace(/^\[|\]$/g, "");
  const port = colon === -1 ? 8332 : Number(target.slice(colon + 1));
  let view: BitcoindView = {
    configured: true,
    reachable: false,
    blocks: 0,
    headers: 0,
    initialblockdownload: true,
    error: "not polled yet",
  };
  const fail = (error: string) => {
    view = { ...view, reachable: false, error };
  };
  const poll = () => {
    let auth = "";
    try {
      if (cookiePath !== undefined) auth = readFileSync(cookiePath, "utf8").trim();
    } catch (e) {
      fail(`cookie: ${(e as Error).message}`);
      return;
    }
    const body = JSON.stringify({
      jsonrpc: "1.0",
      id: "sim",
      method: "getblockchaininfo",
      params: [],
    });
    const req = httpRequest(
      {
        host,
        port,
        method: "POST",
        path: "/",
        timeout: Math.max(500, pollMs),
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          ...(auth === ""
            ? {}
            : { authorization: `Basic ${Buffer.from(auth).toString("base64")}` }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          if (res.statusCode !== 200) {
            fail(`HTTP ${res.statusCode}`);
            return;
          }
          try {
            const r = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
              result: { blocks: number; headers: number; initialblockdownload: boolean };
            };
            view = {
              configured: true,
              reachable: true,
              blocks: r.result.blocks,
              headers: r.result.headers,
              initialblockdownload: r.result.initialblockdownload,
              error: null,
            };
          } catch (e) {
            fail(`bad answer: ${(e as Error).message}`);
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (e) => fail(e.message));
    req.end(body);
  };
  poll();
  const timer = setInterval(poll, pollMs);
  timer.unref();
  return () => view;
}

// ---- a self-signed X.509 certificate, as lnd makes its tls.cert (ECDSA P-256) ----

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
function der(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}
const seq = (...parts: Buffer[]) => der(0x30, ...parts);
function oid(dotted: string): Buffer {
  const [a = 0, b = 0, ...rest] = dotted.split(".").map(Number);
  const out = [40 * a + b];
  for (const n of rest) {
    const chunk = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128))
      chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return der(0x06, Buffer.from(out));
}
function derInt(bytes: Buffer): Buffer {
  let b = bytes;
  while (b.length > 1 && b[0] === 0 && ((b[1] as number) & 0x80) === 0) b = b.subarray(1);
  return der(0x02, ((b[0] as number) & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), b]) : b);
}
function derTime(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, "").slice(0, 14); // YYYYMMDDHHMMSS
  return d.getUTCFullYear() < 2050
    ? der(0x17, Buffer.from(`${iso.slice(2)}Z`))
    : der(0x18, Buffer.from(`${iso}Z`));
}
function name(org: string, cn: string): Buffer {
  const rdn = (o: string, v: string) => der(0x31, seq(oid(o), der(0x0c, Buffer.from(v))));
  return seq(rdn("2.5.4.10", org), rdn("2.5.4.3", cn));
}
function ipBytes(ip: string): Buffer | null {
  if (isIP(ip) === 4) return Buffer.from(ip.split(".").map(Number));
  if (isIP(ip) !== 6) return null;
  const [head = "", tail = ""] = ip.split("::");
  const groups = (s: string) => (s === "" ? [] : s.split(":"));
  const h = groups(head);
  const t = groups(tail);
  const all = ip.includes("::") ? [...h, ...Array(8 - h.length - t.length).fill("0"), ...t] : h;
  return Buffer.from(all.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
}

/** PEM of a self-signed ECDSA P-256 certificate (CA, server auth) with the names as SANs. */
function selfSignedCert(
  dnsNames: readonly string[],
  ips: readonly string[],
  validDays: number,
): { certPem: string; keyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const ecdsaSha256 = seq(oid("1.2.840.10045.4.3.2"));
  const host = hostname();
  const now = Date.now();
  const ext = (id: string, critical: boolean, value: Buffer) =>
    seq(oid(id), ...(critical ? [der(0x01, Buffer.from([0xff]))] : []), der(0x04, value));
  const sans = [
    ...dnsNames.map((n) => der(0x82, Buffer.from(n))),
    ...ips.flatMap((ip) => {
      const b = ipBytes(ip);
      return b === null ? [] : [der(0x87, b)];
    }),
  ];
  const tbs = seq(
    der(0xa0, derInt(Buffer.from([2]))),
    derInt(randomBytes(16)),
    ecdsaSha256,
    name("lnd autogenerated cert", host),
    seq(derTime(new Date(now - 3600_000)), derTime(new Date(now + validDays * 86400_000))),
    name("lnd autogenerated cert", host),
    publicKey.export({ type: "spki", format: "der" }),
    der(
      0xa3,
      seq(
        // keyUsage: digitalSignature, keyEncipherment, keyCertSign (as lnd's cert)
        ext("2.5.29.15", true, der(0x03, Buffer.from([0x02, 0xa4]))),
        ext("2.5.29.37", false, seq(oid("1.3.6.1.5.5.7.3.1"))),
        ext("2.5.29.19", true, seq(der(0x01, Buffer.from([0xff])))),
        ext("2.5.29.17", false, seq(...sans)),
      ),
    ),
  );
  const signature = sign("sha256", tbs, privateKey);
  const cert = seq(tbs, ecdsaSha256, der(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const b64 = cert
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .replace(/\n$/, "");
  return {
    certPem: `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`,
    keyPem: privateKey.export({ type: "sec1", format: "pem" }) as string,
  };
}

// ---- lnd ----

const NETWORKS = ["mainnet", "testnet", "testnet4", "signet", "regtest", "simnet"];

const flags = new Flags(process.argv.slice(2), {
  lnddir: "value",
  network: "value",
  restlisten: "value",
  "no-rest-tls": "boolean",
  tlsextraip: "list",
  tlsextradomain: "list",
  alias: "value",
  bitcoind: "value",
  "bitcoind.rpchost": "value",
  "bitcoind-cookie": "value",
  "bitcoind.rpccookie": "value",
  "bitcoind-poll-ms": "value",
  height: "value",
  channel: "list",
  "treasury-pubkey": "list",
  "channels-file": "value",
  "crash-after-s": "value",
  "unhealthy-file": "value",
});

const network = flags.str("network") ?? "mainnet";
if (!NETWORKS.includes(network)) usage(`--network must be one of ${NETWORKS.join(", ")}`);
const lnddir = flags.str("lnddir") ?? join(homedir(), ".lnd");
const netDataDir = join(lnddir, "data", "chain", "bitcoin", network);
const restlisten = flags.str("restlisten") ?? "127.0.0.1:8080";
const restColon = restlisten.lastIndexOf(":");
const restHost =
  restColon === -1 ? "127.0.0.1" : restlisten.slice(0, restColon).replace(/^\[|\]$/g, "");
const restPort = restColon === -1 ? Number(restlisten) : Number(restlisten.slice(restColon + 1));
if (!Number.isInteger(restPort) || restPort < 0 || restPort > 65535)
  usage("--restlisten must be HOST:PORT");
const tls = !flags.bool("no-rest-tls");
const alias = flags.str("alias") ?? "agentd-sim-lnd";
const unhealthyFile = flags.str("unhealthy-file") ?? join(lnddir, "sim-unhealthy");
const channelsFile = flags.str("channels-file") ?? join(lnddir, "sim-channels.json");
const standaloneHeight = Math.floor(flags.num("height", 850_000));
const startedAt = Date.now();

mkdirSync(netDataDir, { recursive: true });

// The node's identity key persists across restarts (lnd keeps it in its wallet).
const identityFile = join(lnddir, "data", "sim-identity.key");
const ecdh = createECDH("secp256k1");
if (existsSync(identityFile)) ecdh.setPrivateKey(readFileSync(identityFile));
else {
  ecdh.generateKeys();
  writeFileSync(identityFile, ecdh.getPrivateKey(), { mode: 0o600 });
}
const identityPubkey = ecdh.getPublicKey("hex", "compressed");

// tls.cert / tls.key: made once, kept across restarts (as lnd does while they are valid).
const certPath = join(lnddir, "tls.cert");
const keyPath = join(lnddir, "tls.key");
if (tls && !(existsSync(certPath) && existsSync(keyPath))) {
  const ips = new Set(["127.0.0.1", "::1", ...flags.list("tlsextraip")]);
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) if (!i.address.startsWith("fe80")) ips.add(i.address);
  }
  const dns = new Set([
    "localhost",
    hostname(),
    "unix",
    "unixpacket",
    "bufconn",
    ...flags.list("tlsextradomain"),
  ]);
  const { certPem, keyPem } = selfSignedCert([...dns], [...ips], 425);
  writeFileSync(keyPath, keyPem, { mode: 0o600 });
  writeFileSync(certPath, certPem, { mode: 0o644 });
  new X509Certificate(certPem); // fail now, not at the first TLS handshake, if it were malformed
}

// Macaroons: random bytes standing in for lnd's serialized macaroons (checked byte for byte).
const macaroonPaths = {
  admin: join(netDataDir, "admin.macaroon"),
  readonly: join(netDataDir, "readonly.macaroon"),
};
const macaroons = new Map<string, "admin" | "readonly">();
for (const [kind, path] of Object.entries(macaroonPaths) as ["admin" | "readonly", string][]) {
  if (!existsSync(path))
    writeFileSync(path, Buffer.concat([Buffer.from([2, 1]), randomBytes(78)]), { mode: 0o600 });
  chmodSync(path, 0o600);
  macaroons.set(readFileSync(path).toString("hex"), kind);
}

const bitcoind = watchBitcoind(
  flags.str("bitcoind") ?? flags.str("bitcoind.rpchost"),
  flags.str("bitcoind-cookie") ?? flags.str("bitcoind.rpccookie"),
  flags.num("bitcoind-poll-ms", 1000),
);

interface ChannelSpec {
  remote_pubkey: string;
  capacity?: number | string;
  active?: boolean;
  chan_id?: string;
  [k: string]: unknown;
}

function channelSpecs(): ChannelSpec[] {
  const specs: ChannelSpec[] = [];
  for (const pk of flags.list("treasury-pubkey"))
    specs.push({ remote_pubkey: pk, active: true, capacity: 5_000_000 });
  for (const c of flags.list("channel")) {
    const [remote_pubkey = "", capacity = "1000000", state = "active"] = c.split(":");
    specs.push({ remote_pubkey, capacity: Number(capacity), active: state !== "inactive" });
  }
  if (existsSync(channelsFile)) {
    try {
      const fromFile = JSON.parse(readFileSync(channelsFile, "utf8")) as unknown;
      if (Array.isArray(fromFile)) specs.push(...(fromFile as ChannelSpec[]));
    } catch (e) {
      log("warn", `channels file unreadable: ${(e as Error).message}`);
    }
  }
  return specs;
}

function channels() {
  return channelSpecs().map((c, i) => {
    const capacity = Number(c.capacity ?? 1_000_000);
    const local = Math.floor(capacity / 2);
    const { remote_pubkey, active, chan_id, capacity: _c, ...rest } = c;
    const txid = Buffer.from(`${remote_pubkey}${i}`).toString("hex").padEnd(64, "0").slice(0, 64);
    return {
      active: active !== false,
      remote_pubkey,
      channel_point: `${txid}:0`,
      // uint64/int64 fields are JSON strings in lnd's REST (grpc-gateway) output
      chan_id: chan_id ?? String((BigInt(840_000 + i) << 40n) | (1n << 16n)),
      capacity: String(capacity),
      local_balance: String(local - 3_000),
      remote_balance: String(capacity - local),
      commit_fee: String(3_000),
      commit_weight: "772",
      fee_per_kw: "2500",
      unsettled_balance: "0",
      total_satoshis_sent: "0",
      total_satoshis_received: "0",
      num_updates: "0",
      pending_htlcs: [],
      csv_delay: 144,
      private: false,
      initiator: true,
      chan_status_flags: "ChanStatusDefault",
      local_chan_reserve_sat: String(Math.floor(capacity / 100)),
      remote_chan_reserve_sat: String(Math.floor(capacity / 100)),
      static_remote_key: false,
      commitment_type: "ANCHORS",
      lifetime: String(Math.floor((Date.now() - startedAt) / 1000)),
      uptime: String(Math.floor((Date.now() - startedAt) / 1000)),
      close_address: "",
      push_amount_sat: "0",
      thaw_height: 0,
      peer_alias: "",
      zero_conf: false,
      ...rest,
    };
  });
}

function getinfo() {
  const b = bitcoind();
  const list = channels();
  const active = list.filter((c) => c.active).length;
  const synced = b.configured
    ? b.reachable && !b.initialblockdownload && b.blocks >= b.headers
    : true;
  const height = b.configured ? b.blocks : standaloneHeight;
  return {
    version: "0.18.4-beta commit=v0.18.4-beta (agentd-sim)",
    commit_hash: "0000000000000000000000000000000000000000",
    identity_pubkey: identityPubkey,
    alias,
    color: "#3399ff",
    num_pending_channels: 0,
    num_active_channels: active,
    num_inactive_channels: list.length - active,
    num_peers: list.length,
    block_height: height,
    block_hash: Buffer.from(`block${height}`).toString("hex").padEnd(64, "0").slice(0, 64),
    best_header_timestamp: String(Math.floor(Date.now() / 1000) - 60),
    synced_to_chain: synced,
    synced_to_graph: synced,
    testnet: network !== "mainnet",
    chains: [{ chain: "bitcoin", network }],
    uris: [],
    features: {},
    require_htlc_interceptor: false,
    store_final_htlc_resolutions: false,
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

/** lnd's errors through grpc-gateway: `{code, message, details}` with the mapped HTTP status. */
function grpcError(res: ServerResponse, status: number, code: number, message: string): void {
  sendJson(res, status, { code, message, details: [] });
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://lnd");
  const mode = unhealthyMode(unhealthyFile);
  if (mode === "hang") return;
  if (req.method === "GET" && url.pathname === "/v1/state") {
    // No macaroon needed (as lnd's State service).
    sendJson(res, 200, { state: mode === null ? "SERVER_ACTIVE" : "RPC_ACTIVE" });
    return;
  }
  const route = `${req.method} ${url.pathname}`;
  const known = ["GET /v1/getinfo", "GET /v1/channels", "POST /v1/stop"];
  if (!known.includes(route)) {
    grpcError(res, 404, 5, "Not Found");
    return;
  }
  const header = req.headers["grpc-metadata-macaroon"];
  const given = typeof header === "string" ? header.trim().toLowerCase() : "";
  if (given === "") {
    grpcError(res, 500, 2, "expected 1 macaroon, got 0");
    return;
  }
  let kind: "admin" | "readonly" | undefined;
  for (const [hex, k] of macaroons) {
    const a = Buffer.from(hex);
    const b = Buffer.from(given);
    if (a.length === b.length && timingSafeEqual(a, b)) kind = k;
  }
  if (kind === undefined) {
    grpcError(res, 500, 2, "verification failed: signature mismatch after caveat verification");
    return;
  }
  if (mode !== null) {
    grpcError(res, 503, 14, "server is still in the process of starting");
    return;
  }
  switch (route) {
    case "GET /v1/getinfo":
      sendJson(res, 200, getinfo());
      return;
    case "GET /v1/channels": {
      const activeOnly = url.searchParams.get("active_only") === "true";
      const inactiveOnly = url.searchParams.get("inactive_only") === "true";
      const peer = url.searchParams.get("peer");
      const list = channels().filter(
        (c) =>
          (!activeOnly || c.active) &&
          (!inactiveOnly || !c.active) &&
          (peer === null || Buffer.from(peer, "base64").toString("hex") === c.remote_pubkey),
      );
      sendJson(res, 200, { channels: list });
      return;
    }
    case "POST /v1/stop":
      if (kind !== "admin") {
        grpcError(res, 500, 2, "permission denied");
        return;
      }
      sendJson(res, 200, { status: "shutdown initiated, check logs for progress" });
      setTimeout(() => exit(0, "StopDaemon: stopping"), 50);
      return;
  }
}

const server = tls
  ? createHttpsServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) }, handle)
  : createHttpServer(handle);
server.on("error", (e) => exit(1, `REST server: ${e.message}`));
server.listen(restPort, restHost, () => {
  cleanups.push(() => {
    server.close();
    server.closeAllConnections();
  });
  const address = server.address();
  const port = address !== null && typeof address === "object" ? address.port : restPort;
  process.stdout.write(
    `${JSON.stringify({
      ready: true,
      service: SIM,
      host: restHost,
      restport: port,
      tls,
      tlscert: tls ? certPath : null,
      macaroon: macaroonPaths.admin,
      readonlymacaroon: macaroonPaths.readonly,
      identity_pubkey: identityPubkey,
      lnddir,
    })}\n`,
  );
  log("info", "REST listening", { port, tls, network });
  crashAfter(flags.num("crash-after-s", 0));
});
