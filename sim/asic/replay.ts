/**
 * Serving replies captured from real hardware, byte for byte (test/fixtures/captures/), so a
 * driver is tested against what firmware really printed and not only against this
 * simulator's idea of it. A 4028 server answers each command with its captured bytes (plus
 * the NUL terminator when the capture was stored without one); a web server answers each CGI
 * path with its captured body behind the same digest authentication as web-ui.ts.
 */
import { type Server as HttpServer, createServer as httpServer } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { DigestGate } from "./web-digest.ts";

export interface ReplayOptions {
  readonly host?: string;
  /**
   * 4028: command name → reply bytes; the key `stats+new_api` answers a stats request with
   * `"new_api": true`. Web: the CGI path (`/cgi-bin/get_system_info.cgi`) → body bytes.
   */
  readonly replies: ReadonlyMap<string, Buffer>;
}

/** What a capture-less command gets: cgminer's "Invalid command" (code 14). */
const INVALID = Buffer.from(
  '{"STATUS":[{"STATUS":"E","When":0,"Code":14,"Msg":"Invalid command","Description":"replay"}],"id":1}',
);

export class ReplayApi {
  readonly #host: string;
  readonly #replies: ReadonlyMap<string, Buffer>;
  #server: Server | null = null;
  #port = 0;
  readonly #sockets = new Set<Socket>();
  /** The commands asked for, in order: for tests. */
  readonly requests: string[] = [];

  constructor(o: ReplayOptions) {
    this.#host = o.host ?? "127.0.0.1";
    this.#replies = o.replies;
  }

  get address(): { host: string; port: number } {
    return { host: this.#host, port: this.#port };
  }

  async listen(): Promise<{ host: string; port: number }> {
    const server = createServer({ allowHalfOpen: true }, (s) => this.#onConnection(s));
    this.#port = await listenOn(server, this.#host);
    this.#server = server;
    return this.address;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    const server = this.#server;
    this.#server = null;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  #onConnection(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => {});
    let buf = "";
    let answered = false;
    const answer = () => {
      if (answered) return;
      answered = true;
      const key = requestKey(buf);
      this.requests.push(key);
      const body = this.#replies.get(key) ?? INVALID;
      socket.end(body.at(-1) === 0 ? body : Buffer.concat([body, Buffer.from([0])]));
    };
    socket.setEncoding("utf8");
    socket.on("data", (c: string) => {
      buf += c;
      if (buf.length > 8192) socket.destroy();
      else if (requestKey(buf) !== "") answer();
    });
    socket.on("end", answer);
  }
}

/** `summary`, or `stats+new_api`; "" while the JSON request is incomplete. */
function requestKey(raw: string): string {
  const text = raw.replace(/\0+$/, "").trim();
  if (!text.startsWith("{")) return text.split("|")[0] ?? "";
  try {
    const o = JSON.parse(text) as { command?: unknown; new_api?: unknown };
    const command = typeof o.command === "string" ? o.command : "?";
    return o.new_api === true ? `${command}+new_api` : command;
  } catch {
    return "";
  }
}

export class ReplayWeb {
  readonly #host: string;
  readonly #replies: ReadonlyMap<string, Buffer>;
  readonly #gate = new DigestGate();
  readonly #password: string;
  #server: HttpServer | null = null;
  #port = 0;
  readonly requests: string[] = [];

  constructor(o: ReplayOptions & { readonly password?: string }) {
    this.#host = o.host ?? "127.0.0.1";
    this.#replies = o.replies;
    this.#password = o.password ?? "root";
  }

  get address(): { host: string; port: number } {
    return { host: this.#host, port: this.#port };
  }

  async listen(): Promise<{ host: string; port: number }> {
    const server = httpServer((req, res) => {
      req.resume();
      req.on("end", () => {
        const uri = req.url ?? "/";
        const ok = this.#gate.verify(
          req.headers.authorization,
          req.method ?? "GET",
          uri,
          "root",
          this.#password,
        );
        if (!ok) {
          res.writeHead(401, { "www-authenticate": this.#gate.challenge() });
          res.end();
          return;
        }
        const path = uri.split("?")[0] ?? "";
        this.requests.push(path);
        const body = this.#replies.get(path);
        if (!body) {
          res.writeHead(404);
          res.end();
          return;
        }
        res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
        res.end(body);
      });
    });
    this.#port = await listenOn(server, this.#host);
    this.#server = server;
    return this.address;
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

async function listenOn(server: Server | HttpServer, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  return addr && typeof addr === "object" ? addr.port : 0;
}
