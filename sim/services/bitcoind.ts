import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { homedir } from "node:os";
import { join } from "node:path";
import { cleanups, crashAfter, exit, Flags, log, simName, unhealthyMode, usage } from "./common.ts";

/**
 * A simulated bitcoind for the supervisor's tests (sim/services/README.md): Bitcoin Core's
 * JSON-RPC over HTTP with cookie auth, a chain sync that progresses over time, and switches that
 * make it unhealthy or crash. Node: modules and ./common.ts only, so it runs in a container
 * (`node /sim/services/bitcoind.ts --datadir /data --rpcbind 0.0.0.0`).
 */

const SIM = "bitcoind";
simName(SIM);

// ---- bitcoind ----

const CHAINS: Record<string, { port: number; subdir: string; p2p: number }> = {
  main: { port: 8332, subdir: "", p2p: 8333 },
  test: { port: 18332, subdir: "testnet3", p2p: 18333 },
  testnet4: { port: 48332, subdir: "testnet4", p2p: 48333 },
  signet: { port: 38332, subdir: "signet", p2p: 38333 },
  regtest: { port: 18443, subdir: "regtest", p2p: 18444 },
};

const flags = new Flags(process.argv.slice(2), {
  datadir: "value",
  chain: "value",
  rpcport: "value",
  rpcbind: "value",
  rpcuser: "value",
  rpcpassword: "value",
  "sync-seconds": "value",
  height: "value",
  "start-height": "value",
  "crash-after-s": "value",
  "unhealthy-file": "value",
});

const chainName = flags.str("chain") ?? "main";
const chain = CHAINS[chainName];
if (chain === undefined) usage(`--chain must be one of ${Object.keys(CHAINS).join(", ")}`);
const datadir = flags.str("datadir") ?? join(homedir(), ".bitcoin");
const netdir = chain.subdir === "" ? datadir : join(datadir, chain.subdir);
const rpcport = flags.num("rpcport", chain.port);
const rpcbind = flags.str("rpcbind") ?? "127.0.0.1";
const syncSeconds = flags.num("sync-seconds", 0);
const tip = Math.floor(flags.num("height", chainName === "regtest" ? 200 : 850_000));
const startHeight = Math.min(tip, Math.floor(flags.num("start-height", 0)));
const unhealthyFile = flags.str("unhealthy-file") ?? join(datadir, "sim-unhealthy");
const startedAt = Date.now();

mkdirSync(netdir, { recursive: true });

// Credentials: -rpcuser/-rpcpassword when given (then, as bitcoind, no cookie), else the cookie.
let credentials: string;
let cookiePath: string | null = null;
const rpcpassword = flags.str("rpcpassword");
if (rpcpassword !== undefined) {
  credentials = `${flags.str("rpcuser") ?? ""}:${rpcpassword}`;
} else {
  credentials = `__cookie__:${randomBytes(32).toString("hex")}`;
  cookiePath = join(netdir, ".cookie");
  // bitcoind writes .cookie.tmp and renames it; 0600 (its -rpccookieperms default).
  writeFileSync(`${cookiePath}.tmp`, credentials, { mode: 0o600 });
  chmodSync(`${cookiePath}.tmp`, 0o600);
  renameSync(`${cookiePath}.tmp`, cookiePath);
  const written = cookiePath;
  cleanups.push(() => rmSync(written, { force: true }));
}
const expectedAuth = Buffer.from(`Basic ${Buffer.from(credentials).toString("base64")}`);

function authorized(req: IncomingMessage): boolean {
  const got = Buffer.from(req.headers.authorization ?? "");
  return got.length === expectedAuth.length && timingSafeEqual(got, expectedAuth);
}

function blockHash(height: number): string {
  const h = createHash("sha256").update(`sim-block-${chainName}-${height}`).digest();
  return createHash("sha256").update(h).digest().reverse().toString("hex");
}

function chainState() {
  const elapsed = (Date.now() - startedAt) / 1000;
  const frac = syncSeconds <= 0 ? 1 : Math.min(1, elapsed / syncSeconds);
  const blocks = frac >= 1 ? tip : Math.floor(startHeight + (tip - startHeight) * frac);
  const synced = blocks >= tip;
  return {
    blocks,
    synced,
    // Bitcoin Core's estimate never quite reaches 1; a synced node reports 0.99999…
    progress: synced ? 0.9999996 : tip === 0 ? 0 : Math.min(0.999, blocks / tip),
  };
}

const RPC_METHOD_NOT_FOUND = -32601;
const RPC_INVALID_REQUEST = -32600;
const RPC_PARSE_ERROR = -32700;
const RPC_IN_WARMUP = -28;

class RpcError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

function call(method: string): unknown {
  const s = chainState();
  const now = Math.floor(Date.now() / 1000);
  switch (method) {
    case "getblockchaininfo":
      return {
        chain: chainName,
        blocks: s.blocks,
        headers: tip,
        bestblockhash: blockHash(s.blocks),
        bits: "17030ecd",
        target: "0000000000000000000030ecd0000000000000000000000000000000000000000",
        difficulty: 110_451_907_374_649.6,
        time: now - 300,
        mediantime: now - 1800,
        verificationprogress: s.progress,
        initialblockdownload: !s.synced,
        chainwork: s.blocks.toString(16).padStart(64, "0"),
        size_on_disk: 650_000_000_000,
        pruned: false,
        warnings: [],
      };
    case "getnetworkinfo":
      return {
        version: 280100,
        subversion: "/Satoshi:28.1.0(agentd-sim)/",
        protocolversion: 70016,
        localservices: "0000000000000c09",
        localservicesnames: ["NETWORK", "WITNESS", "NETWORK_LIMITED", "P2P_V2"],
        localrelay: true,
        timeoffset: 0,
        networkactive: true,
        connections: 10,
        connections_in: 0,
        connections_out: 10,
        networks: ["ipv4", "ipv6", "onion", "i2p", "cjdns"].map((name) => ({
          name,
          limited: name !== "ipv4" && name !== "ipv6",
          reachable: name === "ipv4" || name === "ipv6",
          proxy: "",
          proxy_randomize_credentials: false,
        })),
        relayfee: 0.00001,
        incrementalfee: 0.00001,
        localaddresses: [],
        warnings: [],
      };
    case "getblockcount":
      return s.blocks;
    case "getbestblockhash":
      return blockHash(s.blocks);
    case "uptime":
      return Math.floor((Date.now() - startedAt) / 1000);
    case "ping":
      return null;
    case "stop":
      setTimeout(() => exit(0, "stop RPC: stopping"), 50);
      return "Bitcoin Core stopping";
    default:
      throw new RpcError(RPC_METHOD_NOT_FOUND, "Method not found");
  }
}

interface Answer {
  status: number;
  body: unknown;
}

/** One JSON-RPC request: 1.0 style (result + error, HTTP errors) or 2.0 (HTTP 200). */
function answer(request: unknown, warmup: boolean): Answer | null {
  const req = (typeof request === "object" && request !== null ? request : {}) as Record<
    string,
    unknown
  >;
  const v2 = req.jsonrpc === "2.0";
  const id = req.id ?? null;
  let result: unknown;
  let error: RpcError | null = null;
  try {
    if (typeof req.method !== "string")
      throw new RpcError(RPC_INVALID_REQUEST, "Method must be a string");
    if (warmup) throw new RpcError(RPC_IN_WARMUP, "Loading block index…");
    result = call(req.method);
  } catch (e) {
    error = e instanceof RpcError ? e : new RpcError(-1, String(e));
  }
  if (v2) {
    if (!("id" in req)) return null; // a notification
    return {
      status: 200,
      body:
        error === null
          ? { jsonrpc: "2.0", result, id }
          : { jsonrpc: "2.0", error: { code: error.code, message: error.message }, id },
    };
  }
  if (error === null) return { status: 200, body: { result, error: null, id } };
  const status =
    error.code === RPC_METHOD_NOT_FOUND ? 404 : error.code === RPC_INVALID_REQUEST ? 400 : 500;
  return {
    status,
    body: { result: null, error: { code: error.code, message: error.message }, id },
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

const server = createServer((req, res) => {
  const mode = unhealthyMode(unhealthyFile);
  if (mode === "hang") return; // never answered: a probe must time out
  if (mode === "" || mode === "503") {
    // What bitcoind answers when its RPC work queue is full.
    res.writeHead(503, { "content-type": "text/html; charset=ISO-8859-1" });
    res.end("Work queue depth exceeded");
    return;
  }
  if (req.method !== "POST") {
    res.writeHead(405, { "content-type": "text/html; charset=ISO-8859-1" });
    res.end("JSONRPC server handles only POST requests");
    return;
  }
  if (!authorized(req)) {
    res.writeHead(401, { "www-authenticate": 'Basic realm="jsonrpc"', "content-length": 0 });
    res.end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      send(res, 500, {
        result: null,
        error: { code: RPC_PARSE_ERROR, message: "Parse error" },
        id: null,
      });
      return;
    }
    const warmup = mode === "warmup";
    if (Array.isArray(parsed)) {
      // A batch: always HTTP 200, one answer per request (none for 2.0 notifications).
      const answers = parsed.map((r) => answer(r, warmup)).filter((a): a is Answer => a !== null);
      send(
        res,
        200,
        answers.map((a) => a.body),
      );
      return;
    }
    const a = answer(parsed, warmup);
    if (a === null) {
      res.writeHead(204);
      res.end();
      return;
    }
    send(res, a.status, a.body);
  });
});

server.on("error", (e) => exit(1, `RPC server: ${e.message}`));
server.listen(rpcport, rpcbind, () => {
  cleanups.push(() => {
    server.close();
    server.closeAllConnections();
  });
  const address = server.address();
  const port = address !== null && typeof address === "object" ? address.port : rpcport;
  process.stdout.write(
    `${JSON.stringify({ ready: true, service: SIM, host: rpcbind, rpcport: port, chain: chainName, cookie: cookiePath, datadir })}\n`,
  );
  log("info", "listening", { rpcport: port, rpcbind, chain: chainName, tip, syncSeconds });
  crashAfter(flags.num("crash-after-s", 0));
});
