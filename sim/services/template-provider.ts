import { createServer as createHttpServer } from "node:http";
import { createServer, type Socket } from "node:net";
import {
  cleanups,
  crashAfter,
  exit,
  Flags,
  log,
  simName,
  unhealthyMode,
  watchBitcoind,
} from "./common.ts";

/**
 * A simulated Stratum V2 Template Provider for the supervisor's tests (sim/services/README.md):
 * it accepts TCP connections on the SV2 TP port and holds them (no Noise handshake, no SV2
 * messages: out of scope), opens that port only once a bitcoind it polls is out of IBD (as the
 * TP waits for the node), and serves `GET /health` on a monitoring port. Node: modules and ./common.ts only, so it runs in a container (`node /sim/services/template-provider.ts
 * --bind 0.0.0.0 --monitor-port 8443`).
 */

const SIM = "template-provider";
simName(SIM);

// ---- bitcoind ----
// ---- Template Provider ----

const flags = new Flags(process.argv.slice(2), {
  port: "value",
  sv2port: "value",
  bind: "value",
  "monitor-port": "value",
  "monitor-bind": "value",
  datadir: "value",
  bitcoind: "value",
  "bitcoind-cookie": "value",
  "bitcoind-poll-ms": "value",
  "crash-after-s": "value",
  "unhealthy-file": "value",
});

const port = flags.num("port", flags.num("sv2port", 8442));
const bind = flags.str("bind") ?? "127.0.0.1";
const monitorPortFlag = flags.str("monitor-port");
const monitorBind = flags.str("monitor-bind") ?? bind;
const datadir = flags.str("datadir");
const unhealthyFile =
  flags.str("unhealthy-file") ?? (datadir === undefined ? undefined : `${datadir}/sim-unhealthy`);
const bitcoind = watchBitcoind(
  flags.str("bitcoind"),
  flags.str("bitcoind-cookie"),
  flags.num("bitcoind-poll-ms", 1000),
);
const startedAt = Date.now();

const held = new Set<Socket>();
let bytesReceived = 0;
const tp = createServer((socket) => {
  if (unhealthyMode(unhealthyFile) !== null) {
    socket.destroy();
    return;
  }
  // Held open: a real client would now start the Noise NX handshake; its bytes are read and
  // dropped, nothing is ever sent back.
  held.add(socket);
  socket.on("data", (b: Buffer) => {
    bytesReceived += b.length;
  });
  socket.on("error", () => socket.destroy());
  socket.on("close", () => held.delete(socket));
});
tp.on("error", (e) => exit(1, `SV2 port: ${e.message}`));

function status(): { code: number; body: Record<string, unknown> } {
  const b = bitcoind();
  const mode = unhealthyMode(unhealthyFile);
  const base = {
    timestamp: Math.floor(Date.now() / 1000),
    uptime: Math.floor((Date.now() - startedAt) / 1000),
    sv2_listening: tp.listening,
    connections: held.size,
    bytes_received: bytesReceived,
    bitcoind: b.configured
      ? {
          reachable: b.reachable,
          blocks: b.blocks,
          initialblockdownload: b.initialblockdownload,
          error: b.error,
        }
      : null,
  };
  if (mode !== null) return { code: 503, body: { status: "unhealthy", ...base } };
  if (!tp.listening) return { code: 503, body: { status: "starting", ...base } };
  return { code: 200, body: { status: "ok", ...base } };
}

const waitForBitcoind = flags.str("bitcoind") !== undefined;
let readyPrinted = false;
let monitorPort: number | null = null;
function sv2Port(): number | null {
  const address = tp.address();
  return address !== null && typeof address === "object" ? address.port : null;
}
/**
 * The ready line, once the monitoring port (if any) listens and the SV2 port either listens or
 * waits for bitcoind (then `port` is null and `{"sv2Listening":true,"port":N}` follows later).
 */
function printReady(): void {
  if (readyPrinted || (monitorPortFlag !== undefined && monitorPort === null)) return;
  if (!tp.listening && !waitForBitcoind) return;
  readyPrinted = true;
  const ready = { ready: true, service: SIM, host: bind, port: sv2Port(), monitorPort };
  process.stdout.write(
    `${JSON.stringify(tp.listening ? ready : { ...ready, waiting: "bitcoind" })}\n`,
  );
}

function openSv2Port(): void {
  tp.listen(port, bind, () => {
    cleanups.push(() => {
      tp.close();
      for (const s of held) s.destroy();
    });
    log("info", "SV2 port open", { port: sv2Port() });
    if (readyPrinted) {
      process.stdout.write(`${JSON.stringify({ sv2Listening: true, port: sv2Port() })}\n`);
    } else printReady();
  });
}

if (monitorPortFlag !== undefined) {
  const monitor = createHttpServer((req, res) => {
    if (unhealthyMode(unhealthyFile) === "hang") return;
    const path = new URL(req.url ?? "/", "http://tp").pathname;
    if (req.method !== "GET" || (path !== "/health" && path !== "/api/v1/health")) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"error":"not found"}');
      return;
    }
    const { code, body } = status();
    res.writeHead(code, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  });
  monitor.on("error", (e) => exit(1, `monitoring port: ${e.message}`));
  monitor.listen(flags.num("monitor-port", 0), monitorBind, () => {
    cleanups.push(() => {
      monitor.close();
      monitor.closeAllConnections();
    });
    const address = monitor.address();
    monitorPort = address !== null && typeof address === "object" ? address.port : null;
    log("info", "monitoring listening", { monitorPort });
    printReady();
  });
}

if (!waitForBitcoind) openSv2Port();
else {
  // The TP opens its port once the node is out of initial block download.
  const wait = setInterval(() => {
    const b = bitcoind();
    if (b.reachable && !b.initialblockdownload) {
      clearInterval(wait);
      openSv2Port();
    }
  }, 200);
  log("info", "waiting for bitcoind to leave IBD before opening the SV2 port");
  printReady();
}
crashAfter(flags.num("crash-after-s", 0));
