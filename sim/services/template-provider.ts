import { existsSync, readFileSync } from "node:fs";
import { createServer as createHttpServer, request as httpRequest } from "node:http";
import { createServer, type Socket } from "node:net";

/**
 * A simulated Stratum V2 Template Provider for the supervisor's tests (sim/services/README.md):
 * it accepts TCP connections on the SV2 TP port and holds them (no Noise handshake, no SV2
 * messages: out of scope), opens that port only once a bitcoind it polls is out of IBD (as the
 * TP waits for the node), and serves `GET /health` on a monitoring port. One file with node:
 * imports only, so it runs alone in a container (`node /sim/services/template-provider.ts
 * --bind 0.0.0.0 --monitor-port 8443`).
 */

const SIM = "template-provider";

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
// ---- bitcoind, as the Template Provider sees it (polled over JSON-RPC with its cookie) ----

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
