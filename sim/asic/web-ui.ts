/**
 * A stock Antminer's web UI (port 80 on hardware), as far as a driver uses it: lighttpd with
 * HTTP digest authentication (web-digest.ts) in front of the CGI scripts (web-cgi.ts).
 *
 * - `GET /cgi-bin/get_system_info.cgi`, `GET /cgi-bin/get_miner_conf.cgi` (S9 and S19);
 * - `POST /cgi-bin/set_miner_conf.cgi` (S19: JSON body, three pool slots, `miner-mode`
 *   0/1/3): answers success at once and applies `applyDelayMs` later (~20 s on hardware, as
 *   bmminer restarts); under the `write-ignored` fault it answers success and changes nothing;
 * - `GET|POST /cgi-bin/reboot.cgi`: the whole miner reboots (this server too).
 *
 * The password can be changed (`setPassword`) to simulate an owner who changed it.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { listenTcp } from "../../lib/http/listen.ts";
import { systemTimers, type TimerHandle, type Timers } from "../../lib/timers.ts";
import { HUGE_REPLY_BYTES } from "./faults.ts";
import type { SimMiner } from "./miner.ts";
import { type ConfChange, minerConf, parseConfChange, systemInfo } from "./web-cgi.ts";
import { DigestGate } from "./web-digest.ts";

const MAX_BODY_BYTES = 64 * 1024;
/** What hardware takes to apply set_miner_conf (bmminer restarts). */
export const DEFAULT_APPLY_DELAY_MS = 20_000;

export interface WebUiOptions {
  readonly miner: SimMiner;
  readonly host?: string;
  /** 0 picks a free port; after a reboot the UI comes back on the port it had. */
  readonly port?: number;
  readonly username?: string;
  readonly password?: string;
  readonly applyDelayMs?: number;
  /** What the apply delay waits on (fake time in tests). */
  readonly timers?: Timers;
}

const OK_BODY = { stats: "success", code: "M000", msg: "OK!" };

export class WebUi {
  readonly miner: SimMiner;
  readonly #host: string;
  #port: number;
  readonly #username: string;
  #password: string;
  readonly #applyDelayMs: number;
  readonly #timers: Timers;
  readonly #gate = new DigestGate();
  #server: Server | null = null;
  readonly #sockets = new Set<Socket>();
  readonly #pending = new Set<TimerHandle>();
  #downForReboot = false;
  readonly #unsubscribe: () => void;
  /** set_miner_conf requests received (applied or not): for tests. */
  writes = 0;

  constructor(o: WebUiOptions) {
    this.miner = o.miner;
    this.#host = o.host ?? "127.0.0.1";
    this.#port = o.port ?? 0;
    this.#username = o.username ?? "root";
    this.#password = o.password ?? "root";
    this.#applyDelayMs = o.applyDelayMs ?? DEFAULT_APPLY_DELAY_MS;
    this.#timers = o.timers ?? systemTimers;
    this.#unsubscribe = o.miner.on((e) => {
      if (e.type === "reboot" && this.#server) {
        this.#downForReboot = true;
        void this.#shutdown();
      } else if (e.type === "boot" && this.#downForReboot) {
        this.#downForReboot = false;
        void this.listen().catch(() => {});
      }
    });
  }

  get address(): { host: string; port: number } {
    return { host: this.#host, port: this.#port };
  }

  /** Simulates an owner who changed the web password. */
  setPassword(password: string): void {
    this.#password = password;
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
    this.#downForReboot = false;
    for (const h of this.#pending) this.#timers.clearTimeout(h);
    this.#pending.clear();
    await this.#shutdown();
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
    const uri = req.url ?? "/";
    if (
      !this.#gate.verify(req.headers.authorization, method, uri, this.#username, this.#password)
    ) {
      res.writeHead(401, {
        "www-authenticate": this.#gate.challenge(),
        "content-type": "text/html",
      });
      res.end("<h1>401 - Unauthorized</h1>");
      return;
    }
    const path = uri.split("?")[0];
    const m = this.miner;
    m.noteRead();
    const s19 = m.profile.api === "bmminer-s19";
    switch (path) {
      case "/cgi-bin/get_system_info.cgi":
        this.#json(res, systemInfo(m, this.#host));
        return;
      case "/cgi-bin/get_miner_conf.cgi":
        this.#json(res, minerConf(m));
        return;
      case "/cgi-bin/set_miner_conf.cgi":
        if (!s19 || method !== "POST") break;
        this.#setConf(res, body);
        return;
      case "/cgi-bin/reboot.cgi":
        // The reply leaves first; then the whole machine goes down.
        this.#json(res, OK_BODY, () => m.reboot());
        return;
    }
    res.writeHead(404, { "content-type": "text/html" });
    res.end("<h1>404 - Not Found</h1>");
  }

  #setConf(res: ServerResponse, body: string): void {
    this.writes++;
    const change = parseConfChange(body);
    if (typeof change === "string") {
      this.#json(res, { stats: "error", code: "M001", msg: change });
      return;
    }
    this.#json(res, OK_BODY);
    if (this.miner.conditions.has("write-ignored")) return;
    const h = this.#timers.setTimeout(() => {
      this.#pending.delete(h);
      apply(this.miner, change);
    }, this.#applyDelayMs);
    this.#pending.add(h);
  }

  #json(res: ServerResponse, value: unknown, after?: () => void): void {
    const c = this.miner.conditions;
    let text = JSON.stringify(value);
    if (c.has("web-huge")) text = `{"pad":"${"x".repeat(HUGE_REPLY_BYTES)}"}`;
    const headers = {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
    };
    if (c.has("web-reset")) {
      res.writeHead(200, headers);
      res.write(text.slice(0, Math.floor(text.length / 2)), () => res.socket?.resetAndDestroy());
      return;
    }
    res.writeHead(200, headers);
    res.end(text, () => after?.());
  }
}

function apply(m: SimMiner, change: ConfChange): void {
  try {
    // bmminer restarts on every write; here unchanged pools keep their connection, so a mode
    // change does not cost the test pool a reconnect.
    const used = change.pools?.filter((p) => p.url !== "") ?? [];
    const same =
      used.length === m.slots.length &&
      used.every((p, i) => {
        const s = m.slots[i];
        return s?.url.text === p.url && s.user === p.user && s.pass === (p.pass ?? "");
      });
    if (used.length > 0 && !same) m.setPools(used);
  } catch {
    // A URL the miner cannot parse: bmminer restarts with it and mines nowhere; here the
    // slots simply stay as they were, which a read-back sees just the same.
  }
  if (change.mode) m.setMode(change.mode);
}
