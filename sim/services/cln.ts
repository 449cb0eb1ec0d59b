import { createECDH, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import {
  cleanups,
  crashAfter,
  exit,
  Flags,
  log,
  simName,
  unhealthyMode,
  usage,
  watchBitcoind,
} from "./common.ts";

/**
 * A simulated Core Lightning for the supervisor's tests (sim/services/README.md): lightningd's
 * JSON-RPC 2.0 over its unix socket (`<lightning-dir>/<network>/lightning-rpc`), with `getinfo`
 * and `listpeerchannels`, bitcoind polled for the sync warnings, and switches that make it
 * unhealthy or crash. Node: modules and ./common.ts only, so it runs in a container
 * (`node /sim/services/cln.ts --lightning-dir /data`).
 */

const SIM = "cln";
simName(SIM);

// ---- bitcoind ----
// ---- Core Lightning ----

const NETWORKS = ["bitcoin", "testnet", "testnet4", "signet", "regtest"];

const flags = new Flags(process.argv.slice(2), {
  "lightning-dir": "value",
  network: "value",
  "rpc-file": "value",
  alias: "value",
  bitcoind: "value",
  "bitcoind-cookie": "value",
  "bitcoind-poll-ms": "value",
  height: "value",
  channel: "list",
  "treasury-pubkey": "list",
  "channels-file": "value",
  "crash-after-s": "value",
  "unhealthy-file": "value",
});

const network = flags.str("network") ?? "bitcoin";
if (!NETWORKS.includes(network)) usage(`--network must be one of ${NETWORKS.join(", ")}`);
const lightningDir = flags.str("lightning-dir") ?? join(homedir(), ".lightning");
const netDir = join(lightningDir, network);
const rpcFile = resolve(netDir, flags.str("rpc-file") ?? "lightning-rpc");
const alias = flags.str("alias") ?? "agentd-sim-cln";
const unhealthyFile = flags.str("unhealthy-file") ?? join(lightningDir, "sim-unhealthy");
const channelsFile = flags.str("channels-file") ?? join(lightningDir, "sim-channels.json");
const standaloneHeight = Math.floor(flags.num("height", 850_000));

mkdirSync(netDir, { recursive: true });

// The node id comes from hsm_secret (32 bytes), kept across restarts as lightningd does.
const hsmSecret = join(netDir, "hsm_secret");
if (!existsSync(hsmSecret)) writeFileSync(hsmSecret, randomBytes(32), { mode: 0o400 });
const ecdh = createECDH("secp256k1");
ecdh.setPrivateKey(readFileSync(hsmSecret));
const nodeId = ecdh.getPublicKey("hex", "compressed");

const bitcoind = watchBitcoind(
  flags.str("bitcoind"),
  flags.str("bitcoind-cookie"),
  flags.num("bitcoind-poll-ms", 1000),
);

interface ChannelSpec {
  peer_id?: string;
  remote_pubkey?: string;
  capacity?: number;
  active?: boolean;
  state?: string;
  [k: string]: unknown;
}

function channelSpecs(): ChannelSpec[] {
  const specs: ChannelSpec[] = [];
  for (const pk of flags.list("treasury-pubkey"))
    specs.push({ peer_id: pk, active: true, capacity: 5_000_000 });
  for (const c of flags.list("channel")) {
    const [peer_id = "", capacity = "1000000", state = "active"] = c.split(":");
    specs.push({ peer_id, capacity: Number(capacity), active: state !== "inactive" });
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

function peerChannels() {
  return channelSpecs().map((c, i) => {
    const { peer_id, remote_pubkey, capacity: cap, active, state, ...rest } = c;
    const peer = peer_id ?? remote_pubkey ?? "";
    const capacity = Number(cap ?? 1_000_000);
    const totalMsat = capacity * 1000;
    const toUs = Math.floor(totalMsat / 2);
    const funding = Buffer.from(`${peer}${i}`).toString("hex").padEnd(64, "0").slice(0, 64);
    return {
      peer_id: peer,
      peer_connected: active !== false,
      reestablished: active !== false,
      state: state ?? "CHANNELD_NORMAL",
      short_channel_id: `${840_000 + i}x1x0`,
      direction: 0,
      channel_id: funding,
      funding_txid: funding,
      funding_outnum: 0,
      opener: "local",
      private: false,
      features: ["option_static_remotekey", "option_anchors"],
      total_msat: totalMsat,
      to_us_msat: toUs,
      spendable_msat: Math.max(0, toUs - totalMsat / 100),
      receivable_msat: Math.max(0, totalMsat - toUs - totalMsat / 100),
      fee_base_msat: 1000,
      fee_proportional_millionths: 10,
      status: [`CHANNELD_NORMAL:Channel ready for use.`],
      htlcs: [],
      ...rest,
    };
  });
}

class RpcError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

function getinfo() {
  const b = bitcoind();
  const channels = peerChannels();
  const active = channels.filter((c) => c.peer_connected && c.state === "CHANNELD_NORMAL").length;
  const info: Record<string, unknown> = {
    id: nodeId,
    alias,
    color: nodeId.slice(2, 8),
    num_peers: new Set(channels.map((c) => c.peer_id)).size,
    num_pending_channels: 0,
    num_active_channels: active,
    num_inactive_channels: channels.length - active,
    address: [],
    binding: [{ type: "ipv4", address: "0.0.0.0", port: 9735 }],
    version: "v24.08.2-agentd-sim",
    blockheight: b.configured ? b.blocks : standaloneHeight,
    network,
    fees_collected_msat: 0,
    "lightning-dir": netDir,
    our_features: {
      init: "08a0880a8a59a1",
      node: "88a0880a8a59a1",
      channel: "",
      invoice: "02000002024100",
    },
  };
  if (b.configured && (!b.reachable || b.initialblockdownload)) {
    info.warning_bitcoind_sync = "Bitcoind is not up-to-date with network.";
  } else if (b.configured && b.blocks < b.headers) {
    info.warning_lightningd_sync = "Still loading latest blocks from bitcoind.";
  }
  return info;
}

function call(method: string, params: unknown): unknown {
  switch (method) {
    case "getinfo":
      return getinfo();
    case "listpeerchannels": {
      const id = Array.isArray(params)
        ? params[0]
        : typeof params === "object" && params !== null
          ? (params as Record<string, unknown>).id
          : undefined;
      if (id !== undefined && (typeof id !== "string" || !/^0[23][0-9a-f]{64}$/.test(id))) {
        throw new RpcError(-32602, "id: should be a node id: invalid token");
      }
      return { channels: peerChannels().filter((c) => id === undefined || c.peer_id === id) };
    }
    case "stop":
      setTimeout(() => exit(0, "stop RPC: stopping"), 50);
      return "Shutdown complete";
    default:
      throw new RpcError(-32601, `Unknown command '${method}'`);
  }
}

/** Splits a stream of JSON values (lightningd needs no separators between them). */
function takeJsonValues(buffer: string): { values: string[]; rest: string; bad: boolean } {
  const values: string[] = [];
  let depth = 0;
  let inString = false;
  let escaped = false;
  let start = -1;
  for (let i = 0; i < buffer.length; i++) {
    const ch = buffer[i];
    if (depth === 0 && start === -1) {
      if (ch === " " || ch === "\n" || ch === "\r" || ch === "\t") continue;
      if (ch !== "{" && ch !== "[") return { values, rest: "", bad: true };
      start = i;
    }
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === "\\") escaped = true;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === "{" || ch === "[") depth++;
    else if (ch === "}" || ch === "]") {
      depth--;
      if (depth === 0) {
        values.push(buffer.slice(start, i + 1));
        start = -1;
      }
    }
  }
  return { values, rest: start === -1 ? "" : buffer.slice(start), bad: false };
}

function reply(
  socket: Socket,
  id: unknown,
  outcome: { result: unknown } | { error: RpcError },
): void {
  const body =
    "result" in outcome
      ? { jsonrpc: "2.0", id, result: outcome.result }
      : { jsonrpc: "2.0", id, error: { code: outcome.error.code, message: outcome.error.message } };
  // lightningd ends each response with two newlines
  socket.write(`${JSON.stringify(body)}\n\n`);
}

const sockets = new Set<Socket>();
const server = createServer((socket) => {
  sockets.add(socket);
  socket.on("close", () => sockets.delete(socket));
  socket.on("error", () => socket.destroy());
  let buffer = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buffer += chunk;
    if (buffer.length > 16 * 1024 * 1024) {
      socket.destroy();
      return;
    }
    const { values, rest, bad } = takeJsonValues(buffer);
    buffer = rest;
    for (const text of values) {
      let req: Record<string, unknown>;
      try {
        req = JSON.parse(text) as Record<string, unknown>;
      } catch {
        reply(socket, null, { error: new RpcError(-32700, "Parse error") });
        continue;
      }
      const mode = unhealthyMode(unhealthyFile);
      if (mode === "hang") continue;
      if (mode !== null) {
        reply(socket, req.id ?? null, { error: new RpcError(-1, "sim: lightningd is unhealthy") });
        continue;
      }
      if (typeof req.method !== "string") {
        reply(socket, req.id ?? null, {
          error: new RpcError(-32600, "Expected string for method"),
        });
        continue;
      }
      try {
        reply(socket, req.id ?? null, { result: call(req.method, req.params ?? {}) });
      } catch (e) {
        reply(socket, req.id ?? null, {
          error: e instanceof RpcError ? e : new RpcError(-1, String(e)),
        });
      }
    }
    if (bad) {
      reply(socket, null, { error: new RpcError(-32700, "Parse error: expected a JSON object") });
      socket.end();
    }
  });
});

rmSync(rpcFile, { force: true });
server.on("error", (e) => exit(1, `RPC socket: ${e.message}`));
server.listen(rpcFile, () => {
  chmodSync(rpcFile, 0o600); // lightningd's --rpc-file-mode default
  cleanups.push(() => {
    server.close();
    for (const s of sockets) s.destroy();
    rmSync(rpcFile, { force: true });
  });
  process.stdout.write(
    `${JSON.stringify({ ready: true, service: SIM, rpc: rpcFile, id: nodeId, network, lightningDir })}\n`,
  );
  log("info", "JSON-RPC listening", { rpcFile, network });
  crashAfter(flags.num("crash-after-s", 0));
});
