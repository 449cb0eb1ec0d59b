/**
 * A Bitaxe's AxeOS HTTP API (ESP-Miner, port 80 on hardware), as far as a driver uses it
 * (sim/README.md, "AxeOS"):
 *
 * - `GET /api/system/info` (axeos-info.ts);
 * - `PATCH /api/system`: saves pools (flat keys up to v2.14, a `pools` array from v2.15),
 *   answers 200 with an empty body, and changes nothing the miner mines with until a restart;
 * - `POST /api/system/restart`: answers, then restarts `restartDelayMs` later (1 s on hardware);
 *   the whole miner reboots, this server too, and comes back mining with the saved pools and
 *   unpaused (ESP-Miner keeps the pause in memory only);
 * - `POST /api/system/pause` / `resume` from v2.14.0 (404 before, as the firmware has no such
 *   route), and `miningPaused` in the info reply.
 *
 * No login. `privateOnly` answers 401 "Unauthorized" to clients outside 10/8, 172.16/12 and
 * 192.168/16 as ESP-Miner does (loopback included). Faults (`setFault`): `write-ignored`
 * (PATCH and pause answered, nothing changed), `malformed` (a body that is not JSON), `huge`
 * (a 10 MiB info reply); a slow restart is the miner's `rebootMs`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { listenTcp } from "../../lib/http/listen.ts";
import { systemTimers, type TimerHandle, type Timers } from "../../lib/timers.ts";
import { type AxeSaved, applyPatch, atLeast, info, poolOf } from "./axeos-info.ts";
import { HUGE_REPLY_BYTES } from "./faults.ts";
import type { SimMiner } from "./miner.ts";

export const AXEOS_FAULTS = ["write-ignored", "malformed", "huge"] as const;
export type AxeFault = (typeof AXEOS_FAULTS)[number];

/** A version with pause and the `pools` array: the newest the sources here describe. */
export const DEFAULT_AXEOS_VERSION = "v2.15.0";

const MAX_BODY_BYTES = 16 * 1024;

export interface AxeOsOptions {
  readonly miner: SimMiner;
  readonly host?: string;
  readonly port?: number;
  readonly version?: string;
  readonly privateOnly?: boolean;
  /** Between the restart's reply and the reboot (ESP-Miner: 1 s). */
  readonly restartDelayMs?: number;
  readonly timers?: Timers;
}

export class AxeOsApi {
  readonly miner: SimMiner;
  readonly version: string;
  readonly #host: string;
  #port: number;
  readonly #privateOnly: boolean;
  readonly #restartDelayMs: number;
  readonly #timers: Timers;
  readonly #sockets = new Set<Socket>();
  readonly #pending = new Set<TimerHandle>();
  readonly #unsubscribe: () => void;
  #server: Server | null = null;
  #down = false;
  #fault: AxeFault | null = null;
  /** ESP-Miner's NVS: what the info reply shows and a restart mines with. */
  #saved: AxeSaved;
  /** Requests answered, by "METHOD path": for tests. */
  readonly requests: string[] = [];

  constructor(o: AxeOsOptions) {
    this.miner = o.miner;
    this.version = o.version ?? DEFAULT_AXEOS_VERSION;
    this.#host = o.host ?? "127.0.0.1";
    this.#port = o.port ?? 0;
    this.#privateOnly = o.privateOnly ?? false;
    this.#restartDelayMs = o.restartDelayMs ?? 1_000;
    this.#timers = o.timers ?? systemTimers;
    const s = o.miner.slots;
    const first = s[0];
    if (!first) throw new RangeError("a Bitaxe needs a pool");
    const primary = poolOf(first.url, first.user, first.pass);
    const second = s[1];
    this.#saved = {
      primary,
      fallback: second ? poolOf(second.url, second.user, second.pass) : primary,
    };
    this.#unsubscribe = o.miner.on((e) => {
      if (e.type === "reboot" && this.#server) {
        this.#down = true;
        void this.#shutdown();
      } else if (e.type === "boot" && this.#down) {
        this.#down = false;
        this.#boot();
        void this.listen().catch(() => {});
      }
    });
  }

  get address(): { host: string; port: number } {
    return { host: this.#host, port: this.#port };
  }

  get saved(): AxeSaved {
    return this.#saved;
  }

  setFault(f: AxeFault | null): void {
    this.#fault = f;
  }

  async listen(): Promise<{ host: string; port: number }> {
    if (this.#server) return this.address;
    const server = createServer((req, res) => this.#onRequest(req, res));
    server.on("connection", (s) => {
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
    });
    this.#port = (await listenTcp(server, this.#port, this.#host)).port;
    this.#server = server;
    return this.address;
  }

  async close(): Promise<void> {
    this.#unsubscribe();
    this.#down = false;
    for (const h of this.#pending) this.#timers.clearTimeout(h);
    this.#pending.clear();
    await this.#shutdown();
  }

  /** Boot: mine with what was saved, unpaused. */
  #boot(): void {
    const { primary: p, fallback: f } = this.#saved;
    const url = (x: typeof p) => `stratum+tcp://${x.host}:${x.port}`;
    try {
      this.miner.setPools([
        { url: url(p), user: p.user, pass: p.pass },
        { url: url(f), user: f.user, pass: f.pass },
      ]);
    } catch {
      // A host the miner cannot parse: it mines nowhere, as ESP-Miner with a bad URL.
    }
    this.miner.setMode("normal");
  }

  async #shutdown(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    if (!server) return;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) req.destroy();
      else chunks.push(c);
    });
    req.on("end", () => this.#route(req, res, Buffer.concat(chunks).toString("utf8")));
    req.on("error", () => {});
  }

  #route(req: IncomingMessage, res: ServerResponse, body: string): void {
    const method = req.method ?? "GET";
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    this.requests.push(`${method} ${path}`);
    if (this.#privateOnly && !isPrivate(req.socket.remoteAddress ?? "")) {
      res.writeHead(401, { "content-type": "text/plain" }).end("Unauthorized");
      return;
    }
    const m = this.miner;
    m.noteRead();
    const ignored = this.#fault === "write-ignored";
    const pause = atLeast(this.version, 2, 14);
    if (method === "GET" && path === "/api/system/info") {
      this.#info(res);
    } else if (method === "PATCH" && path === "/api/system") {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        res.writeHead(400, { "content-type": "text/plain" }).end("Invalid JSON");
        return;
      }
      const next = applyPatch(this.#saved, parsed, this.version);
      if (typeof next === "string") {
        res.writeHead(400, { "content-type": "text/plain" }).end("Wrong API input");
        return;
      }
      if (!ignored) this.#saved = next;
      res.writeHead(200).end();
    } else if (method === "POST" && path === "/api/system/restart") {
      this.#json(res, { message: "System will restart shortly." });
      const h = this.#timers.setTimeout(() => {
        this.#pending.delete(h);
        m.reboot();
      }, this.#restartDelayMs);
      this.#pending.add(h);
    } else if (pause && method === "POST" && path === "/api/system/pause") {
      if (!ignored) m.setMode("sleep");
      this.#json(res, { message: "Mining paused" });
    } else if (pause && method === "POST" && path === "/api/system/resume") {
      if (!ignored) m.setMode("normal");
      this.#json(res, { message: "Mining resumed" });
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("Not Found");
    }
  }

  #info(res: ServerResponse): void {
    const fault = this.#fault;
    let text = JSON.stringify(info(this.miner, this.#saved, this.version, this.#host));
    if (fault === "malformed") text = `${text.slice(0, -1)},"hashRate":NaN,}`;
    if (fault === "huge") text = `{"pad":"${"x".repeat(HUGE_REPLY_BYTES)}"}`;
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
    });
    res.end(text);
  }

  #json(res: ServerResponse, value: unknown): void {
    const text = JSON.stringify(value);
    res.writeHead(200, { "content-type": "application/json" }).end(text);
  }
}

/** ESP-Miner's `ip_in_private_range`: 10/8, 172.16/12, 192.168/16 (IPv4, or IPv4-mapped). */
export function isPrivate(address: string): boolean {
  const m = /^(?:::ffff:)?(\d+)\.(\d+)\.\d+\.\d+$/.exec(address);
  if (!m) return false;
  const a = Number(m[1]);
  const b = Number(m[2]);
  return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168);
}
