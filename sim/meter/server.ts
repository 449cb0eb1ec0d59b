/**
 * A simulated HTTP JSON power meter (sim/README.md, "The simulated power meter"): one HTTP
 * server on a real port, a body of a configurable shape (shapes.ts) whose watts change on
 * every read, and the faults of faults.ts, switchable while it runs.
 *
 * Every body served is a `Served` (its `sim_seq` and the watts in it), announced on the
 * "read" event and kept as `last()`, so a test knows the value a reading must equal.
 */
import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { authenticator, type SimAuth } from "./auth.ts";
import { type Fault, HUGE_BYTES } from "./faults.ts";
import {
  body,
  SHAPE_INFO,
  SHELLY_STATUS_PREFIX,
  type Shape,
  shellyNoSuchSwitch,
  type ValueText,
  valueAt,
  valueText,
} from "./shapes.ts";

export interface SimMeterOptions {
  readonly host?: string;
  readonly port?: number;
  readonly shape?: Shape;
  /** The base watts (outlet 0); each read adds a little (shapes.ts `valueAt`). */
  readonly watts?: number;
  /** The pdu shape's outlets. */
  readonly outlets?: number;
  readonly fault?: Fault | null;
  readonly auth?: SimAuth | null;
  /** How long `slow` holds a request before answering (default 60 s: past any deadline). */
  readonly slowMs?: number;
}

/** One body served: its sequence number (from 1) and the watts per outlet in it. */
export interface Served {
  readonly seq: number;
  readonly watts: readonly number[];
}

/** What happened to a `huge` reply: how many bytes went out, and whether all of them did. */
export interface HugeOutcome {
  readonly bytesWritten: number;
  readonly complete: boolean;
}

export interface SimMeterEvents {
  /** A request arrived (before any answer): a test of `slow` waits on it. */
  request: [{ readonly method: string; readonly url: string }];
  read: [Served];
  huge: [HugeOutcome];
}

export class SimMeter extends EventEmitter<SimMeterEvents> {
  readonly shape: Shape;
  readonly host: string;
  readonly port: number;
  private readonly server: Server;
  private readonly outlets: number;
  private readonly slowMs: number;
  private readonly auth: ReturnType<typeof authenticator> | null;
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private baseWatts: number;
  private fault: Fault | null;
  private seq = 0;
  private lastServed: Served | null = null;

  private constructor(server: Server, address: AddressInfo, o: SimMeterOptions) {
    super();
    this.server = server;
    this.shape = o.shape ?? "shelly";
    this.host = address.address;
    this.port = address.port;
    this.outlets = this.shape === "shelly" ? 1 : (o.outlets ?? 4);
    this.baseWatts = o.watts ?? 1400;
    this.fault = o.fault ?? null;
    this.slowMs = o.slowMs ?? 60_000;
    this.auth = o.auth ? authenticator(o.auth, SHAPE_INFO[this.shape].realm) : null;
  }

  static async start(o: SimMeterOptions = {}): Promise<SimMeter> {
    if (o.outlets !== undefined && (!Number.isInteger(o.outlets) || o.outlets < 1)) {
      throw new Error(`outlets: expected an integer ≥ 1, found ${o.outlets}`);
    }
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(o.port ?? 0, o.host ?? "127.0.0.1", () => resolve());
    });
    const meter = new SimMeter(server, server.address() as AddressInfo, o);
    server.on("request", (req, res) => meter.handle(req, res));
    return meter;
  }

  /** The URL a meter spec points at (`http://host:port/path`). */
  get url(): string {
    const host = this.host.includes(":") ? `[${this.host}]` : this.host;
    return `http://${host}:${this.port}${SHAPE_INFO[this.shape].path}`;
  }

  /** The pointer to outlet 0's watts (the Shelly's only one). */
  get pointer(): string {
    return SHAPE_INFO[this.shape].pointer;
  }

  /** The last body served; null before the first. */
  last(): Served | null {
    return this.lastServed;
  }

  /** How many bodies have been served. */
  get reads(): number {
    return this.seq;
  }

  setFault(f: Fault | null): void {
    this.fault = f;
  }

  setWatts(w: number): void {
    this.baseWatts = w;
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? "GET";
    const url = req.url ?? "/";
    this.emit("request", { method, url });
    if (this.auth && !this.auth.check(method, url, req.headers.authorization)) {
      res.writeHead(401, {
        "www-authenticate": this.auth.challenge(),
        "content-type": "text/plain",
      });
      res.end("401 Unauthorized\n");
      return;
    }
    if (
      this.shape === "shelly" &&
      url.startsWith(SHELLY_STATUS_PREFIX) &&
      url !== SHAPE_INFO.shelly.path
    ) {
      res.writeHead(500, { "content-type": "application/json" });
      res.end(shellyNoSuchSwitch(url.slice(SHELLY_STATUS_PREFIX.length).slice(0, 16)));
      return;
    }
    if (url !== SHAPE_INFO[this.shape].path) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    if (method !== "GET") {
      res.writeHead(405, { allow: "GET", "content-type": "text/plain" }).end("GET only\n");
      return;
    }
    const fault = this.fault;
    if (fault === "status-503") {
      res.writeHead(503, { "content-type": "text/plain" }).end("busy\n");
      return;
    }
    if (fault === "slow") {
      const t = setTimeout(() => {
        this.timers.delete(t);
        this.serve(res, null);
      }, this.slowMs);
      this.timers.add(t);
      return;
    }
    this.serve(res, fault);
  }

  /** Serves the next body, written as `fault` says. */
  private serve(res: ServerResponse, fault: Fault | null): void {
    const seq = ++this.seq;
    const off = fault === "relay-off";
    const watts = Array.from({ length: this.outlets }, (_, k) =>
      off ? 0 : valueAt(this.baseWatts, seq, k),
    );
    const texts = watts.map((w): ValueText => {
      if (fault === "not-number") return { text: '"n/a"' };
      if (fault === "negative") return { text: JSON.stringify(-w) };
      if (fault === "nan") return { text: "NaN" };
      if (fault === "missing") return "omit";
      return valueText(w);
    });
    let text = body(this.shape, seq, texts, !off);
    if (fault === "malformed") text = `${text.slice(0, -1)},}`;
    const served: Served = Object.freeze({ seq, watts: Object.freeze(watts) });
    this.lastServed = served;
    this.emit("read", served);

    if (fault === "huge") {
      void this.serveHuge(res, text);
      return;
    }
    const bytes = Buffer.from(text, "utf8");
    res.writeHead(200, { "content-type": "application/json", "content-length": bytes.length });
    if (fault === "reset") {
      // Half the promised body, then the connection dies: a meter rebooting mid-reply.
      res.write(bytes.subarray(0, bytes.length >> 1), () => res.socket?.destroy());
      return;
    }
    res.end(bytes);
  }

  /**
   * 10 MiB of valid JSON (the body with a long pad member), written with backpressure and a
   * turn of the event loop between chunks, as a device streams it: a reader that bounds what
   * it takes closes the connection early, and `huge` says how far the writing got.
   */
  private async serveHuge(res: ServerResponse, text: string): Promise<void> {
    const head = Buffer.from(`${text.slice(0, -1)},"pad":"`, "utf8");
    const tail = Buffer.from('"}', "utf8");
    const chunk = Buffer.alloc(64 * 1024, 0x78); // "x"
    const total = HUGE_BYTES;
    res.writeHead(200, { "content-type": "application/json", "content-length": total });
    let written = 0;
    let closed = false;
    let finished = false;
    res.on("close", () => {
      closed = true;
    });
    res.on("finish", () => {
      finished = true;
    });
    const write = async (b: Buffer) => {
      written += b.length;
      if (!res.write(b)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off("drain", done);
            res.off("close", done);
            resolve();
          };
          res.on("drain", done);
          res.on("close", done);
        });
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    };
    await write(head);
    while (!closed && written + tail.length < total) {
      const n = Math.min(chunk.length, total - tail.length - written);
      await write(n === chunk.length ? chunk : chunk.subarray(0, n));
    }
    if (!closed) {
      written += tail.length;
      await new Promise<void>((resolve) => {
        res.once("close", resolve);
        res.end(tail);
      });
    }
    this.emit("huge", { bytesWritten: written, complete: finished && written === total });
  }
}
