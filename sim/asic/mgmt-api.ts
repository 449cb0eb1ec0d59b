/**
 * The cgminer-compatible management API (TCP 4028 on real hardware): one request per
 * connection, as JSON `{"command":"summary","parameter":"0"}` or plain `summary|0`; the
 * reply is JSON followed by a NUL byte, then the server closes the socket. Privileged
 * commands need write access, granted by an `--api-allow`-style list.
 */

import { createServer, isIPv4, type Server, type Socket } from "node:net";
import { listenTcp } from "../../lib/http/listen.ts";
import {
  type Answer,
  accessDenied,
  commandsFor,
  envelope,
  INVALID_COMMAND,
  ignoredWrite,
  joinsSupported,
} from "./api-commands.ts";
import { malformReply, sendReply } from "./api-faults.ts";
import { newApiStats } from "./api-sections.ts";
import type { SimMiner } from "./miner.ts";

const MAX_REQUEST_BYTES = 8 * 1024;

export interface MgmtApiOptions {
  readonly miner: SimMiner;
  readonly host?: string;
  /** 0 picks a free port; after a reboot the API comes back on the port it had. */
  readonly port?: number;
  /**
   * cgminer's --api-allow: `W:addr[/prefix]` grants write access, `addr[/prefix]` read-only,
   * `*` (or `0/0`) any address. Clients matching no entry are disconnected unanswered.
   * Default `["W:*"]`, as stock Antminer firmware ships (`A:0/0,W:*`).
   */
  readonly allow?: readonly string[];
}

export class MgmtApi {
  readonly miner: SimMiner;
  readonly #host: string;
  #port: number;
  readonly #allow: readonly AllowEntry[];
  #server: Server | null = null;
  readonly #sockets = new Set<Socket>();
  #downForReboot = false;
  readonly #unsubscribe: () => void;

  constructor(options: MgmtApiOptions) {
    this.miner = options.miner;
    this.#host = options.host ?? "127.0.0.1";
    this.#port = options.port ?? 0;
    this.#allow = (options.allow ?? ["W:*"]).map(parseAllow);
    // A rebooting miner refuses API connections until it is back.
    this.#unsubscribe = options.miner.on((e) => {
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

  get listening(): boolean {
    return this.#server !== null;
  }

  async listen(): Promise<{ host: string; port: number }> {
    if (this.#server) return this.address;
    const server = createServer({ allowHalfOpen: true }, (s) => this.#onConnection(s));
    this.#port = (await listenTcp(server, this.#port, this.#host)).port;
    this.#server = server;
    return this.address;
  }

  async close(): Promise<void> {
    this.#unsubscribe();
    this.#downForReboot = false;
    await this.#shutdown();
  }

  async #shutdown(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    if (!server) return;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #onConnection(socket: Socket): void {
    const access = accessFor(this.#allow, socket.remoteAddress ?? "");
    if (access === "none") {
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => {});
    let buf = "";
    let answered = false;
    const answer = () => {
      if (answered) return;
      answered = true;
      const { text, after } = this.handle(buf, access === "write");
      // A restart runs once the reply has left, so that the client still gets it.
      const conditions = this.miner.conditions;
      sendReply(socket, malformReply(text, conditions), conditions, after);
    };
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      if (answered) return;
      buf += chunk;
      if (buf.length > MAX_REQUEST_BYTES) {
        socket.destroy();
        return;
      }
      // JSON: answer once the object is complete. Plain text: what arrived is the request,
      // as cgminer answers after a single read.
      if (!buf.trimStart().startsWith("{") || isCompleteJson(buf)) answer();
    });
    socket.on("end", answer);
  }

  /** One request's reply text (without the NUL), for the socket or for tests. */
  handle(raw: string, write: boolean): { text: string; after?: () => void } {
    const req = parseRequest(raw);
    const m = this.miner;
    m.noteRead();
    if (req === null) return { text: JSON.stringify(envelope(m, { status: INVALID_COMMAND })) };
    const table = commandsFor(m);
    const names = req.command.split("+");
    if (names.length > 1) {
      if (!joinsSupported(m))
        return { text: JSON.stringify(envelope(m, { status: INVALID_COMMAND })) };
      const out: Record<string, unknown> = {};
      for (const name of names) {
        const cmd = table[name];
        const answer: Answer = !cmd
          ? { status: INVALID_COMMAND }
          : !cmd.joinable
            ? { status: accessDenied(name) }
            : cmd.run(m, req.parameter);
        out[name] = [envelope(m, answer)];
      }
      out.id = 1;
      return { text: JSON.stringify(out) };
    }
    const cmd = Object.hasOwn(table, req.command) ? table[req.command] : undefined;
    if (!cmd) return { text: JSON.stringify(envelope(m, { status: INVALID_COMMAND })) };
    if (cmd.privileged && !write) {
      return { text: JSON.stringify(envelope(m, { status: accessDenied(req.command) })) };
    }
    if (m.conditions.has("write-ignored")) {
      const ack = ignoredWrite(m, req.command, req.parameter);
      if (ack) return { text: JSON.stringify(envelope(m, { status: ack })) };
    }
    // The S19's bmminer answers `new_api: true` with its newer format; the S9's ignores it.
    if (req.command === "stats" && req.newApi && m.profile.api === "bmminer-s19") {
      return { text: JSON.stringify(newApiStats(m)) };
    }
    const answer = cmd.run(m, req.parameter);
    const after = answer.after;
    if (answer.bare !== undefined) {
      return { text: JSON.stringify({ STATUS: answer.bare }), ...(after ? { after } : {}) };
    }
    if (req.command === "stats" && m.conditions.has("api-glitch")) {
      return { text: glitchedStats(envelope(m, answer)) };
    }
    return { text: JSON.stringify(envelope(m, answer)), ...(after ? { after } : {}) };
  }
}

/** Some S9 builds print `}{` with no comma between STATS objects (the api-glitch fault). */
function glitchedStats(env: Record<string, unknown>): string {
  const rows = (env.STATS as unknown[]).map((r) => JSON.stringify(r)).join("");
  const { STATS: _stats, id: _id, ...rest } = env;
  const head = JSON.stringify(rest).slice(0, -1);
  return `${head},"STATS":[${rows}],"id":1}`;
}

function isCompleteJson(s: string): boolean {
  try {
    JSON.parse(s.replace(/\0+$/, ""));
    return true;
  } catch {
    return false;
  }
}

interface Request {
  readonly command: string;
  readonly parameter: string;
  /** The S19's `"new_api": true` request field. */
  readonly newApi: boolean;
}

function parseRequest(raw: string): Request | null {
  const text = raw.replace(/[\0\r\n]+$/g, "").trim();
  if (text === "") return null;
  if (text.startsWith("{")) {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      return null;
    }
    if (v === null || typeof v !== "object") return null;
    const o = v as Record<string, unknown>;
    if (typeof o.command !== "string") return null;
    const p = o.parameter;
    return {
      command: o.command.trim(),
      parameter: typeof p === "string" ? p : typeof p === "number" ? String(p) : "",
      newApi: o.new_api === true,
    };
  }
  const bar = text.indexOf("|");
  return bar < 0
    ? { command: text, parameter: "", newApi: false }
    : { command: text.slice(0, bar), parameter: text.slice(bar + 1), newApi: false };
}

interface AllowEntry {
  readonly write: boolean;
  readonly any: boolean;
  readonly v4?: { readonly net: number; readonly bits: number };
  readonly exact?: string;
}

function parseAllow(entry: string): AllowEntry {
  const write = /^W:/i.test(entry);
  const addr = write ? entry.slice(2) : entry;
  if (addr === "*" || addr === "0/0") return { write, any: true };
  const [ip = "", prefix] = addr.split("/");
  if (isIPv4(ip)) {
    const bits = prefix === undefined ? 32 : Number(prefix);
    return { write, any: false, v4: { net: v4ToInt(ip), bits } };
  }
  return { write, any: false, exact: ip.toLowerCase() };
}

function v4ToInt(ip: string): number {
  return ip.split(".").reduce((a, o) => ((a << 8) | Number(o)) >>> 0, 0);
}

function accessFor(allow: readonly AllowEntry[], remote: string): "write" | "read" | "none" {
  const ip = remote.replace(/^::ffff:/i, "").toLowerCase();
  // cgminer: the first matching entry decides.
  for (const e of allow) {
    let match = e.any;
    if (!match && e.v4 && isIPv4(ip)) {
      const mask = e.v4.bits === 0 ? 0 : (0xffffffff << (32 - e.v4.bits)) >>> 0;
      match = (v4ToInt(ip) & mask) >>> 0 === (e.v4.net & mask) >>> 0;
    }
    if (!match && e.exact !== undefined) match = e.exact === ip;
    if (match) return e.write ? "write" : "read";
  }
  return "none";
}
