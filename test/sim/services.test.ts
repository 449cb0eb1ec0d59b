import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { connect, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { nodeBinary, SIM_SERVICES_DIR } from "../support/podman.ts";
import { useTmpDir } from "../support/tmp.ts";

/**
 * The simulated node services (sim/services/, README there) run as real child processes on the
 * host, as the supervisor's native mode would run them, and spoken to over their real
 * protocols: bitcoind's JSON-RPC with cookie auth, lnd's REST over TLS with macaroons, CLN's
 * JSON-RPC on a unix socket, the Template Provider's TCP port and health endpoint, the SRI
 * translator's config file, SV1 port and monitoring API.
 */

const NODE = nodeBinary();
const tmp = useTmpDir("agentd-svc-");

interface Sim {
  readonly child: ChildProcessWithoutNullStreams;
  readonly lines: string[];
  /** The n-th stdout line (from 1), parsed. */
  line<T = Record<string, unknown>>(n: number): Promise<T>;
  /** The first stdout line, the ready line. */
  ready<T = Record<string, unknown>>(): Promise<T>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

const running: Sim[] = [];
afterEach(() => {
  for (const s of running.splice(0)) if (s.child.exitCode === null) s.child.kill("SIGKILL");
});

function sim(name: string, args: string[]): Sim {
  const child = spawn(NODE, [join(SIM_SERVICES_DIR, `${name}.ts`), ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root" },
  });
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  let err = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (s: string) => {
    err = (err + s).slice(-8000);
  });
  createInterface({ input: child.stdout }).on("line", (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => {
      resolve({ code, signal });
      for (const w of waiters.splice(0)) w();
    }),
  );
  const line = async <T>(n: number): Promise<T> => {
    while (lines.length < n) {
      if (child.exitCode !== null) throw new Error(`${name} exited before line ${n}: ${err}`);
      await new Promise<void>((r) => waiters.push(r));
    }
    return JSON.parse(lines[n - 1] as string) as T;
  };
  const s: Sim = {
    child,
    lines,
    line,
    ready: <T>() => line<T>(1),
    exited,
    stderr: () => err,
  };
  running.push(s);
  return s;
}

/** SIGTERM, and the exit code and how long it took. */
async function terminate(s: Sim): Promise<{ code: number | null; ms: number }> {
  const t0 = performance.now();
  s.child.kill("SIGTERM");
  const { code } = await s.exited;
  return { code, ms: performance.now() - t0 };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > deadline) return v;
    await sleep(50);
  }
}

// ---- bitcoind ----

interface RpcReply {
  status: number;
  body: { result?: unknown; error?: { code: number; message: string } | null; id?: unknown };
  headers: Headers;
}

async function rpc(
  port: number,
  auth: string | null,
  body: unknown,
): Promise<RpcReply & { text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/`, {
    method: "POST",
    headers:
      auth === null ? {} : { authorization: `Basic ${Buffer.from(auth).toString("base64")}` },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: RpcReply["body"] = {};
  try {
    parsed = JSON.parse(text) as RpcReply["body"];
  } catch {
    // not JSON (401, 503)
  }
  return { status: res.status, body: parsed, headers: res.headers, text };
}

const call = (method: string, params: unknown[] = []) => ({
  jsonrpc: "1.0",
  id: "t",
  method,
  params,
});

interface BitcoindReady {
  rpcport: number;
  cookie: string;
}

describe("sim bitcoind", () => {
  it("writes a cookie, refuses other auth, syncs over time, answers like Bitcoin Core", async () => {
    const dir = tmp();
    const b = sim("bitcoind", [
      "--datadir",
      dir,
      "--rpcport",
      "0",
      "--sync-seconds",
      "1.2",
      "--height",
      "1000",
    ]);
    const ready = await b.ready<BitcoindReady>();
    expect(ready).toMatchObject({ ready: true, service: "bitcoind", chain: "main" });
    expect(ready.cookie).toBe(join(dir, ".cookie"));
    const cookie = readFileSync(ready.cookie, "utf8");
    expect(cookie).toMatch(/^__cookie__:[0-9a-f]{64}$/);
    expect(statSync(ready.cookie).mode & 0o777).toBe(0o600);

    const none = await rpc(ready.rpcport, null, call("uptime"));
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toBe('Basic realm="jsonrpc"');
    expect((await rpc(ready.rpcport, "__cookie__:00", call("uptime"))).status).toBe(401);

    const early = await rpc(ready.rpcport, cookie, call("getblockchaininfo"));
    expect(early.status).toBe(200);
    expect(early.body.error).toBeNull();
    const info0 = early.body.result as Record<string, number | boolean | string>;
    expect(info0).toMatchObject({ chain: "main", headers: 1000, initialblockdownload: true });
    expect(info0.blocks).toBeLessThan(1000);
    expect(info0.verificationprogress).toBeLessThan(0.999 + 1e-9);
    const synced = await eventually(
      async () =>
        (await rpc(ready.rpcport, cookie, call("getblockchaininfo"))).body.result as Record<
          string,
          unknown
        >,
      (r) => r.initialblockdownload === false,
    );
    expect(synced).toMatchObject({ blocks: 1000, headers: 1000, initialblockdownload: false });
    expect(synced.verificationprogress).toBeGreaterThan(0.9999);

    const net = await rpc(ready.rpcport, cookie, call("getnetworkinfo"));
    expect(net.body.result).toMatchObject({ version: expect.any(Number), networkactive: true });
    expect(typeof (await rpc(ready.rpcport, cookie, call("uptime"))).body.result).toBe("number");

    // unknown method: 1.0 style → HTTP 404; 2.0 → HTTP 200; both -32601
    const unknown = await rpc(ready.rpcport, cookie, call("nosuchmethod"));
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toEqual({ code: -32601, message: "Method not found" });
    const unknown2 = await rpc(ready.rpcport, cookie, {
      jsonrpc: "2.0",
      id: 7,
      method: "nosuchmethod",
    });
    expect(unknown2.status).toBe(200);
    expect(unknown2.body).toEqual({
      jsonrpc: "2.0",
      error: { code: -32601, message: "Method not found" },
      id: 7,
    });
    const batch = await rpc(ready.rpcport, cookie, [
      call("getblockcount"),
      call("getbestblockhash"),
    ]);
    expect(batch.status).toBe(200);
    expect((batch.body as unknown as { result: unknown }[]).map((r) => r.result)).toEqual([
      1000,
      expect.stringMatching(/^[0-9a-f]{64}$/),
    ]);

    // the health switch: 503 (work queue full), warmup (-28), then healthy again
    const sw = join(dir, "sim-unhealthy");
    writeFileSync(sw, "");
    const busy = await rpc(ready.rpcport, cookie, call("uptime"));
    expect(busy.status).toBe(503);
    writeFileSync(sw, "warmup\n");
    const warm = await rpc(ready.rpcport, cookie, call("getblockchaininfo"));
    expect(warm.status).toBe(500);
    expect(warm.body.error?.code).toBe(-28);
    rmSync(sw);
    expect((await rpc(ready.rpcport, cookie, call("uptime"))).status).toBe(200);

    // `stop` exits 0 and removes the cookie
    expect((await rpc(ready.rpcport, cookie, call("stop"))).body.result).toBe(
      "Bitcoin Core stopping",
    );
    expect((await b.exited).code).toBe(0);
    expect(existsSync(ready.cookie)).toBe(false);
  });

  it("puts the cookie in the chain's subdirectory; --crash-after-s exits 1", async () => {
    const dir = tmp();
    const b = sim("bitcoind", [
      "--datadir",
      dir,
      "--chain",
      "regtest",
      "--rpcport",
      "0",
      "--crash-after-s",
      "0.4",
    ]);
    const ready = await b.ready<BitcoindReady & { chain: string }>();
    expect(ready.chain).toBe("regtest");
    expect(ready.cookie).toBe(join(dir, "regtest", ".cookie"));
    const info = await rpc(
      ready.rpcport,
      readFileSync(ready.cookie, "utf8"),
      call("getblockchaininfo"),
    );
    expect(info.body.result).toMatchObject({ chain: "regtest", initialblockdownload: false });
    expect((await b.exited).code).toBe(1);
  });

  it("refuses unknown flags with exit 2", async () => {
    const b = sim("bitcoind", ["--no-such-flag"]);
    expect((await b.exited).code).toBe(2);
    expect(b.stderr()).toContain("unknown flag --no-such-flag");
  });
});

// ---- lnd ----

interface LndReady {
  restport: number;
  tlscert: string;
  macaroon: string;
  readonlymacaroon: string;
  identity_pubkey: string;
}

function lndGet(
  ready: LndReady,
  path: string,
  macaroon: string | null,
  method = "GET",
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port: ready.restport,
        path,
        method,
        ca: readFileSync(ready.tlscert),
        headers: macaroon === null ? {} : { "Grpc-Metadata-macaroon": macaroon },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (s: string) => {
          text += s;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

const PK = (c: string) => `02${c.repeat(64)}`;

describe("sim lnd", () => {
  it("serves REST over TLS with its own cert, checks macaroons, follows bitcoind's sync", async () => {
    const dir = tmp();
    const b = sim("bitcoind", [
      "--datadir",
      join(dir, "btc"),
      "--rpcport",
      "0",
      // long enough that lnd's first answer comes before bitcoind is synced, also when the
      // machine is busy (at 1 s a loaded run saw lnd already synced)
      "--sync-seconds",
      "8",
      "--height",
      "500",
    ]);
    const bReady = await b.ready<BitcoindReady>();
    const lnddir = join(dir, "lnd");
    const l = sim("lnd", [
      "--lnddir",
      lnddir,
      "--restlisten",
      "127.0.0.1:0",
      "--bitcoind",
      `127.0.0.1:${bReady.rpcport}`,
      "--bitcoind-cookie",
      bReady.cookie,
      "--bitcoind-poll-ms",
      "100",
      "--treasury-pubkey",
      PK("a"),
      "--channel",
      `${PK("b")}:2000000:inactive`,
    ]);
    const ready = await l.ready<LndReady>();
    expect(ready.tlscert).toBe(join(lnddir, "tls.cert"));
    expect(ready.macaroon).toBe(join(lnddir, "data/chain/bitcoin/mainnet/admin.macaroon"));
    const cert = new X509Certificate(readFileSync(ready.tlscert));
    expect(cert.subjectAltName).toContain("IP Address:127.0.0.1");
    expect(cert.subjectAltName).toContain("DNS:localhost");
    expect(cert.verify(cert.publicKey)).toBe(true); // self-signed
    expect(cert.ca).toBe(true);

    expect(await lndGet(ready, "/v1/getinfo", null)).toEqual({
      status: 500,
      body: { code: 2, message: "expected 1 macaroon, got 0", details: [] },
    });
    const wrong = await lndGet(ready, "/v1/getinfo", "00".repeat(80));
    expect(wrong.status).toBe(500);
    expect(wrong.body.message).toMatch(/verification failed/);
    const mac = readFileSync(ready.macaroon).toString("hex");

    const first = await lndGet(ready, "/v1/getinfo", mac);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({
      identity_pubkey: ready.identity_pubkey,
      synced_to_chain: false,
      num_active_channels: 1,
      num_inactive_channels: 1,
      chains: [{ chain: "bitcoin", network: "mainnet" }],
    });
    expect(ready.identity_pubkey).toMatch(/^0[23][0-9a-f]{64}$/);
    const synced = await eventually(
      async () => (await lndGet(ready, "/v1/getinfo", mac)).body,
      (r) => r.synced_to_chain === true,
      30_000,
    );
    expect(synced).toMatchObject({ synced_to_chain: true, block_height: 500 });

    const channels = (await lndGet(ready, "/v1/channels", mac)).body.channels as Record<
      string,
      unknown
    >[];
    expect(channels.map((c) => [c.remote_pubkey, c.active, c.capacity])).toEqual([
      [PK("a"), true, "5000000"],
      [PK("b"), false, "2000000"],
    ]);
    expect(typeof channels[0]?.chan_id).toBe("string"); // uint64 as a JSON string, as lnd
    const activeOnly = (await lndGet(ready, "/v1/channels?active_only=true", mac)).body.channels;
    expect(activeOnly).toHaveLength(1);
    // the channel list can change at run time through the channels file
    writeFileSync(
      join(lnddir, "sim-channels.json"),
      JSON.stringify([{ remote_pubkey: PK("c"), active: true }]),
    );
    expect(((await lndGet(ready, "/v1/channels", mac)).body.channels as unknown[]).length).toBe(3);

    // bitcoind gone: not synced any more
    await terminate(b);
    const lost = await eventually(
      async () => (await lndGet(ready, "/v1/getinfo", mac)).body,
      (r) => r.synced_to_chain === false,
    );
    expect(lost.synced_to_chain).toBe(false);

    // unhealthy: 503 / code 14, and /v1/state (no macaroon) says RPC_ACTIVE
    writeFileSync(join(lnddir, "sim-unhealthy"), "");
    expect(await lndGet(ready, "/v1/getinfo", mac)).toMatchObject({
      status: 503,
      body: { code: 14 },
    });
    expect((await lndGet(ready, "/v1/state", null)).body).toEqual({ state: "RPC_ACTIVE" });
    rmSync(join(lnddir, "sim-unhealthy"));
    expect((await lndGet(ready, "/v1/state", null)).body).toEqual({ state: "SERVER_ACTIVE" });

    // the read-only macaroon reads but cannot stop; the admin one stops (exit 0)
    const ro = readFileSync(ready.readonlymacaroon).toString("hex");
    expect((await lndGet(ready, "/v1/getinfo", ro)).status).toBe(200);
    expect((await lndGet(ready, "/v1/stop", ro, "POST")).status).toBe(500);
    expect((await lndGet(ready, "/v1/stop", mac, "POST")).status).toBe(200);
    expect((await l.exited).code).toBe(0);

    // a restart keeps tls.cert, the macaroons and the identity
    const again = sim("lnd", ["--lnddir", lnddir, "--restlisten", "127.0.0.1:0"]);
    const ready2 = await again.ready<LndReady>();
    expect(ready2.identity_pubkey).toBe(ready.identity_pubkey);
    expect(new X509Certificate(readFileSync(ready2.tlscert)).fingerprint256).toBe(
      cert.fingerprint256,
    );
    const info = await lndGet(ready2, "/v1/getinfo", mac);
    expect(info.body).toMatchObject({ synced_to_chain: true, block_height: 850000 }); // no bitcoind
  });

  it("reports synced_to_chain false when bitcoind is unreachable; --no-rest-tls serves plain HTTP", async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const a = s.address();
        s.close(() => resolve(a !== null && typeof a === "object" ? a.port : 0));
      });
    });
    const lnddir = tmp();
    const l = sim("lnd", [
      "--lnddir",
      lnddir,
      "--restlisten",
      "127.0.0.1:0",
      "--no-rest-tls",
      "--bitcoind",
      `127.0.0.1:${closed}`,
      "--bitcoind-poll-ms",
      "100",
    ]);
    const ready = await l.ready<LndReady & { tls: boolean }>();
    expect(ready.tls).toBe(false);
    expect(existsSync(join(lnddir, "tls.cert"))).toBe(false);
    const mac = readFileSync(ready.macaroon).toString("hex");
    await sleep(250);
    const res = await fetch(`http://127.0.0.1:${ready.restport}/v1/getinfo`, {
      headers: { "Grpc-Metadata-macaroon": mac },
    });
    expect(await res.json()).toMatchObject({ synced_to_chain: false, block_height: 0 });
  });
});

// ---- Core Lightning ----

/** Sends raw text on the unix socket; resolves with the `count` JSON answers. */
function clnExchange(path: string, raw: string, count: number): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const s: Socket = connect(path);
    let text = "";
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      text += d;
      const parts = text.split("\n\n").filter((p) => p.trim() !== "");
      if (text.endsWith("\n\n") && parts.length >= count) {
        s.end();
        resolve(parts.map((p) => JSON.parse(p) as Record<string, unknown>));
      }
    });
    s.on("error", reject);
    s.write(raw);
  });
}

const clnReq = (id: unknown, method: string, params: unknown = {}) =>
  JSON.stringify({ jsonrpc: "2.0", id, method, params });

describe("sim cln", () => {
  it("answers JSON-RPC 2.0 on lightning-rpc: getinfo, listpeerchannels, errors, stop", async () => {
    const dir = tmp();
    const c = sim("cln", [
      "--lightning-dir",
      dir,
      "--treasury-pubkey",
      PK("a"),
      "--channel",
      `${PK("b")}:100000:inactive`,
    ]);
    const ready = await c.ready<{ rpc: string; id: string }>();
    expect(ready.rpc).toBe(join(dir, "bitcoin", "lightning-rpc"));
    expect(statSync(ready.rpc).isSocket()).toBe(true);
    expect(statSync(ready.rpc).mode & 0o777).toBe(0o600);

    // two requests back to back with no separator, as lightningd allows
    const [info, chans] = await clnExchange(
      ready.rpc,
      clnReq(1, "getinfo") + clnReq("two", "listpeerchannels"),
      2,
    );
    expect(info).toMatchObject({
      jsonrpc: "2.0",
      id: 1,
      result: { id: ready.id, num_active_channels: 1, network: "bitcoin" },
    });
    const list =
      (chans?.result as { channels: Record<string, unknown>[] } | undefined)?.channels ?? [];
    expect(chans?.id).toBe("two");
    expect(list.map((ch) => [ch.peer_id, ch.state, ch.peer_connected])).toEqual([
      [PK("a"), "CHANNELD_NORMAL", true],
      [PK("b"), "CHANNELD_NORMAL", false],
    ]);
    const [byPeer, unknown] = await clnExchange(
      ready.rpc,
      `${clnReq(3, "listpeerchannels", { id: PK("a") })}\n${clnReq(4, "frobnicate")}`,
      2,
    );
    expect((byPeer?.result as { channels: unknown[] } | undefined)?.channels).toHaveLength(1);
    expect(unknown?.error).toEqual({ code: -32601, message: "Unknown command 'frobnicate'" });

    writeFileSync(join(dir, "sim-unhealthy"), "");
    const [sick] = await clnExchange(ready.rpc, clnReq(5, "getinfo"), 1);
    expect(sick?.error).toMatchObject({ code: -1 });
    rmSync(join(dir, "sim-unhealthy"));

    const [stopped] = await clnExchange(ready.rpc, clnReq(6, "stop"), 1);
    expect(stopped?.result).toBe("Shutdown complete");
    expect((await c.exited).code).toBe(0);
    expect(existsSync(ready.rpc)).toBe(false);
  });
});

// ---- Template Provider ----

async function health(
  port: number,
  path = "/health",
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe("sim template-provider", () => {
  it("accepts and holds SV2 TCP connections; /health; the health switch", async () => {
    const dir = tmp();
    const t = sim("template-provider", ["--port", "0", "--monitor-port", "0", "--datadir", dir]);
    const ready = await t.ready<{ port: number; monitorPort: number }>();
    expect(ready.port).toBeGreaterThan(0);
    const sock = connect(ready.port, "127.0.0.1");
    let closed = false;
    let received = 0;
    sock.on("close", () => {
      closed = true;
    });
    sock.on("data", (b: Buffer) => {
      received += b.length;
    });
    await new Promise<void>((r) => sock.once("connect", () => r()));
    sock.write(Buffer.alloc(64, 1)); // where a Noise handshake would start
    await sleep(300);
    expect(closed).toBe(false);
    expect(received).toBe(0);
    expect(await health(ready.monitorPort)).toMatchObject({
      status: 200,
      body: { status: "ok", connections: 1, bytes_received: 64 },
    });
    writeFileSync(join(dir, "sim-unhealthy"), "");
    expect((await health(ready.monitorPort)).status).toBe(503);
    const refused = connect(ready.port, "127.0.0.1");
    await new Promise<void>((r) => refused.once("close", () => r()));
    sock.destroy();
  });

  it("opens the SV2 port only once bitcoind is out of IBD", async () => {
    const dir = tmp();
    const b = sim("bitcoind", ["--datadir", dir, "--rpcport", "0", "--sync-seconds", "1"]);
    const bReady = await b.ready<BitcoindReady>();
    const t = sim("template-provider", [
      "--port",
      "0",
      "--monitor-port",
      "0",
      "--bitcoind",
      `127.0.0.1:${bReady.rpcport}`,
      "--bitcoind-cookie",
      bReady.cookie,
      "--bitcoind-poll-ms",
      "100",
    ]);
    const ready = await t.ready<{ port: number | null; monitorPort: number; waiting: string }>();
    expect(ready).toMatchObject({ port: null, waiting: "bitcoind" });
    expect(await health(ready.monitorPort)).toMatchObject({
      status: 503,
      body: { status: "starting" },
    });
    const open = await t.line<{ sv2Listening: boolean; port: number }>(2);
    expect(open.sv2Listening).toBe(true);
    expect((await health(ready.monitorPort)).status).toBe(200);
  });
});

// ---- SRI translator ----

const AUTHORITY = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";

const TRANSLATOR_TOML = `# as sv2-apps' translator config examples
downstream_address = "127.0.0.1"
downstream_port = 0
max_supported_version = 2
min_supported_version = 2
downstream_extranonce2_size = 4
verify_payout = false
aggregate_channels = true
supported_extensions = [
    0x0002,  # Worker-Specific Hashrate Tracking
]
monitoring_address = "127.0.0.1:0"
monitoring_cache_refresh_secs = 15

[miner_telemetry]
cidrs = ["192.168.1.0/24"]

[downstream_difficulty_config]
min_individual_miner_hashrate=10_000_000_000_000.0
shares_per_minute = 6.0
enable_vardiff = true
job_keepalive_interval_secs = 60

[[upstreams]]
address = "pool.example"
port = 3333
authority_pubkey = "${AUTHORITY}"
user_identity = "owner.worker"

[[upstreams]]
address = 'backup.example'
port = 3334
authority_pubkey = "${AUTHORITY}"
user_identity = "owner.worker"
`;

class LineClient {
  readonly lines: Record<string, unknown>[] = [];
  readonly #waiters: (() => void)[] = [];
  readonly socket: Socket;
  constructor(port: number) {
    this.socket = connect(port, "127.0.0.1");
    this.socket.setEncoding("utf8");
    let buf = "";
    this.socket.on("data", (d: string) => {
      buf += d;
      let nl = buf.indexOf("\n");
      while (nl !== -1) {
        this.lines.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf("\n");
      }
      for (const w of this.#waiters.splice(0)) w();
    });
  }
  async next(pred: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    for (;;) {
      const m = this.lines.find(pred);
      if (m !== undefined) return m;
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }
  async request(id: number, method: string, params: unknown[]): Promise<Record<string, unknown>> {
    this.socket.write(`${JSON.stringify({ id, method, params })}\n`);
    return this.next((m) => m.id === id);
  }
}

describe("sim translator", () => {
  it("parses the SRI config file (--print-config) with its real field names", async () => {
    const dir = tmp();
    writeFileSync(join(dir, "translator-config.toml"), TRANSLATOR_TOML);
    const p = sim("translator", ["-c", join(dir, "translator-config.toml"), "--print-config"]);
    const printed = await p.ready<{
      config: Record<string, unknown>;
      valid: boolean;
      errors: string[];
    }>();
    expect((await p.exited).code).toBe(0);
    expect(printed.valid).toBe(true);
    expect(printed.config).toEqual({
      downstream_address: "127.0.0.1",
      downstream_port: 0,
      max_supported_version: 2,
      min_supported_version: 2,
      downstream_extranonce2_size: 4,
      verify_payout: false,
      aggregate_channels: true,
      supported_extensions: [2],
      monitoring_address: "127.0.0.1:0",
      monitoring_cache_refresh_secs: 15,
      miner_telemetry: { cidrs: ["192.168.1.0/24"] },
      downstream_difficulty_config: {
        min_individual_miner_hashrate: 1e13,
        shares_per_minute: 6,
        enable_vardiff: true,
        job_keepalive_interval_secs: 60,
      },
      upstreams: [
        {
          address: "pool.example",
          port: 3333,
          authority_pubkey: AUTHORITY,
          user_identity: "owner.worker",
        },
        {
          address: "backup.example",
          port: 3334,
          authority_pubkey: AUTHORITY,
          user_identity: "owner.worker",
        },
      ],
    });
  });

  it("refuses a config the real translator would refuse, naming the fields", async () => {
    const dir = tmp();
    const bad = TRANSLATOR_TOML.replace('user_identity = "owner.worker"\n', "")
      .replace(
        `authority_pubkey = "${AUTHORITY}"\nuser_identity`,
        'authority_pubkey = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH7X"\nuser_identity',
      )
      .replace("enable_vardiff = true\n", "");
    writeFileSync(join(dir, "bad.toml"), bad);
    const p = sim("translator", ["--config", join(dir, "bad.toml"), "--print-config"]);
    const printed = await p.ready<{ valid: boolean; errors: string[] }>();
    expect((await p.exited).code).toBe(1);
    expect(printed.valid).toBe(false);
    expect(printed.errors).toEqual(
      expect.arrayContaining([
        "missing field `downstream_difficulty_config.enable_vardiff`",
        "missing field `upstreams[0].user_identity`",
        "upstreams[1].authority_pubkey: expected a base58check secp256k1 key",
      ]),
    );
    const run = sim("translator", ["--config", join(dir, "bad.toml")]);
    expect((await run.exited).code).toBe(1);
    writeFileSync(join(dir, "broken.toml"), "downstream_port = = 3\n");
    const broken = sim("translator", ["--config", join(dir, "broken.toml")]);
    expect((await broken.exited).code).toBe(1);
    expect(broken.stderr()).toContain("TOML line 1");
  });

  it("serves SV1 on the downstream port and the monitoring API's health", async () => {
    const dir = tmp();
    writeFileSync(join(dir, "t.json"), JSON.stringify(tomlAsJson()));
    const t = sim("translator", [
      "--config",
      join(dir, "t.json"),
      "--unhealthy-file",
      join(dir, "sick"),
    ]);
    const ready = await t.ready<{ port: number; monitorPort: number }>();
    const miner = new LineClient(ready.port);
    const conf = await miner.request(1, "mining.configure", [
      ["version-rolling"],
      { "version-rolling.mask": "ffffffff" },
    ]);
    expect(conf.result).toEqual({ "version-rolling": true, "version-rolling.mask": "1fffe000" });
    const sub = await miner.request(2, "mining.subscribe", ["cgminer/4.11"]);
    const [, extranonce1, size] = sub.result as [unknown, string, number];
    expect(extranonce1).toMatch(/^[0-9a-f]{8}$/);
    expect(size).toBe(4);
    expect((await miner.request(3, "mining.authorize", ["owner.rig1", "x"])).result).toBe(true);
    const diff = await miner.next((m) => m.method === "mining.set_difficulty");
    expect((diff.params as number[])[0]).toBeCloseTo((1e13 * 60) / (6 * 2 ** 32), 3);

    expect(await health(ready.monitorPort, "/api/v1/health")).toMatchObject({
      status: 200,
      body: { status: "ok", timestamp: expect.any(Number) },
    });
    expect((await health(ready.monitorPort, "/health")).status).toBe(200);
    const clients = await health(ready.monitorPort, "/api/v1/sv1/clients");
    expect(clients.body).toMatchObject({
      total: 1,
      items: [{ authorized_worker_name: "owner.rig1" }],
    });
    writeFileSync(join(dir, "sick"), "");
    expect((await health(ready.monitorPort, "/api/v1/health")).status).toBe(503);
    miner.socket.destroy();
  });

  it("listens where --downstream-address/--downstream-port say, over the file's 0.0.0.0:34255", async () => {
    // What a supervisor writes (supervisor/translator-config.ts): every address, the fixed port. The
    // devnet overrides both so that it binds loopback only and never collides.
    const dir = tmp();
    const file = join(dir, "t.toml");
    writeFileSync(
      file,
      TRANSLATOR_TOML.replace('downstream_address = "127.0.0.1"', 'downstream_address = "0.0.0.0"')
        .replace("downstream_port = 0", "downstream_port = 34255")
        .replace('monitoring_address = "127.0.0.1:0"\n', ""),
    );
    const port = await new Promise<number>((r) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const a = s.address() as { port: number };
        s.close(() => r(a.port));
      });
    });
    const t = sim("translator", [
      "-c",
      file,
      "--downstream-address",
      "127.0.0.1",
      "--downstream-port",
      String(port),
      "--monitor-port",
      "0",
    ]);
    const ready = await t.ready<{ host: string; port: number; monitorPort: number }>();
    expect(ready).toMatchObject({ host: "127.0.0.1", port });
    const miner = new LineClient(port);
    expect((await miner.request(1, "mining.subscribe", [])).error).toBeNull();
    miner.socket.destroy();
    // --monitor-port still gives the monitoring API (the file has no monitoring_address)
    expect((await health(ready.monitorPort, "/api/v1/health")).status).toBe(200);
    const bad = sim("translator", ["-c", file, "--downstream-address", "localhost"]);
    expect((await bad.exited).code).toBe(2);
  });
});

function tomlAsJson(): Record<string, unknown> {
  return {
    downstream_address: "127.0.0.1",
    downstream_port: 0,
    max_supported_version: 2,
    min_supported_version: 2,
    downstream_extranonce2_size: 4,
    aggregate_channels: true,
    monitoring_address: "127.0.0.1:0",
    downstream_difficulty_config: {
      min_individual_miner_hashrate: 1e13,
      shares_per_minute: 6,
      enable_vardiff: true,
      job_keepalive_interval_secs: 60,
    },
    upstreams: [
      { address: "127.0.0.1", port: 3333, authority_pubkey: AUTHORITY, user_identity: "owner" },
    ],
  };
}

// ---- all of them ----

describe("every sim service", () => {
  it("exits 0 within 2 s of SIGTERM", async () => {
    const dir = tmp();
    writeFileSync(join(dir, "t.json"), JSON.stringify(tomlAsJson()));
    const all = [
      sim("bitcoind", ["--datadir", join(dir, "b"), "--rpcport", "0"]),
      sim("lnd", ["--lnddir", join(dir, "l"), "--restlisten", "127.0.0.1:0"]),
      sim("cln", ["--lightning-dir", join(dir, "c")]),
      sim("template-provider", ["--port", "0", "--monitor-port", "0"]),
      sim("translator", ["--config", join(dir, "t.json")]),
    ];
    await Promise.all(all.map((s) => s.ready()));
    // a client connected to each keeps a connection open over the stop
    const held = connect((await all[3]?.ready<{ port: number }>())?.port ?? 0, "127.0.0.1");
    held.on("error", () => undefined);
    const results = await Promise.all(all.map((s) => terminate(s)));
    for (const r of results) {
      expect(r.code).toBe(0);
      expect(r.ms).toBeLessThan(2000);
    }
    held.destroy();
  });
});
