/**
 * A simulated VNish miner: its REST API (`/api/v1/…`, shaped by the API description VNish
 * publishes, asic-rs `meta/vnish/v1.3.4/api-doc (JSON)`) and a small 4028 API (`version`,
 * `summary`). No reply captured from a VNish miner is public, so every value here is the
 * simulator's own, in the documented shapes (sim/README.md, "VNish").
 *
 * As the firmware does, writes answer 200 even when nothing changed (`ignore-writes`).
 * Tokens come from `POST /api/v1/unlock {"pw"}` (403 on a wrong password) and are refused
 * with 401 once `expireTokens()` is called. Faults on `GET /api/v1/summary`: `malformed`
 * (not JSON), `huge` (10 MB).
 */
import { randomBytes } from "node:crypto";
import { createServer as httpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import type { Clock } from "../../lib/clock.ts";
import { listenTcp } from "../../lib/http/listen.ts";

export type VnishFault = "ignore-writes" | "malformed" | "huge";

export interface VnishSimOptions {
  readonly clock: Clock;
  readonly password?: string;
  readonly fault?: VnishFault | null;
}

interface Pool {
  url: string;
  user: string;
  pass: string;
}

const MAX_BODY = 64 * 1024;

export class VnishSim {
  readonly #clock: Clock;
  readonly #password: string;
  readonly #web = httpServer((req, res) => this.#onHttp(req, res));
  readonly #api: Server = createServer((s) => this.#onApi(s));
  readonly #sockets = new Set<Socket>();
  #tokens = new Set<string>();
  #reads = 0;
  readonly #served: number[] = [];

  /** The hashrates 4028 `summary` served since the last call (bench/drivers.ts checks readings). */
  takeServed(): number[] {
    return this.#served.splice(0);
  }
  webPort = 0;
  apiPort = 0;
  fault: VnishFault | null;
  state = "mining";
  bootedAt: number;
  pools: Pool[] = [
    { url: "stratum.owner-pool.example:3333", user: "owner.rig7", pass: "x" },
    { url: "", user: "", pass: "" },
    { url: "", user: "", pass: "" },
  ];
  /** Requests as `METHOD path auth?`, never the token (tests check what was asked). */
  readonly requests: string[] = [];
  /** Every token issued, for the tests' "never in an error" checks. */
  readonly tokensIssued: string[] = [];

  constructor(o: VnishSimOptions) {
    this.#clock = o.clock;
    this.#password = o.password ?? "admin";
    this.fault = o.fault ?? null;
    this.bootedAt = this.#clock.now() - 7_200_000;
  }

  async listen(): Promise<void> {
    this.webPort = (await listenTcp(this.#web, 0, "127.0.0.1")).port;
    this.apiPort = (await listenTcp(this.#api, 0, "127.0.0.1")).port;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    this.#web.closeAllConnections();
    await new Promise<void>((r) => this.#web.close(() => r()));
    await new Promise<void>((r) => this.#api.close(() => r()));
  }

  /** Every token issued so far is refused from now on (expiry, a firmware restart). */
  expireTokens(): void {
    this.#tokens = new Set();
  }

  #uptimeS(): number {
    return Math.max(0, Math.floor((this.#clock.now() - this.bootedAt) / 1000));
  }

  #mining(): boolean {
    return this.state !== "stopped";
  }

  /** Requests answered, 4028 and REST (bench/drivers.ts makes as many for its baseline). */
  answered = 0;

  #onApi(socket: Socket): void {
    this.answered++;
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    let text = "";
    socket.on("data", (c: Buffer) => {
      text += c.toString("utf8");
      if (text.length > MAX_BODY) return void socket.destroy();
      let req: Record<string, unknown>;
      try {
        req = JSON.parse(text) as Record<string, unknown>;
      } catch {
        return;
      }
      text = "";
      const status = (Code: number, Msg: string, S = "S") => [
        {
          STATUS: S,
          When: Math.floor(this.#clock.now() / 1000),
          Code,
          Msg,
          Description: "cgminer 4.11.1 (vnish 1.3.4)",
        },
      ];
      let reply: Record<string, unknown>;
      if (req.command === "version") {
        reply = {
          STATUS: status(22, "CGMiner versions"),
          VERSION: [{ CGMiner: "4.11.1", API: "3.7", Type: "Antminer S19 Pro (vnish 1.3.4)" }],
          id: 1,
        };
      } else if (req.command === "summary") {
        this.#reads++;
        const ghs = this.#mining() ? 110_000 + (this.#reads % 997) / 100 : 0;
        if (this.#served.length < 256) this.#served.push(ghs);
        reply = {
          STATUS: status(11, "Summary"),
          SUMMARY: [
            {
              "GHS 5s": ghs,
              Elapsed: this.#uptimeS(),
            },
          ],
          id: 1,
        };
      } else reply = { STATUS: status(14, "Invalid command", "E"), id: 1 };
      socket.end(`${JSON.stringify(reply)}\0`);
    });
  }

  #onHttp(req: IncomingMessage, res: ServerResponse): void {
    this.answered++;
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString("utf8");
      if (body.length > MAX_BODY) req.destroy();
    });
    req.on("end", () => {
      const path = (req.url ?? "").replace(/\?.*$/, "");
      const auth = req.headers.authorization ?? "";
      const token = auth.startsWith("Bearer ") ? auth.slice(7) : null;
      const authed = token !== null && this.#tokens.has(token);
      this.requests.push(`${req.method} ${path}${token ? " bearer" : ""}`);
      const send = (status: number, value?: unknown) => {
        const text = value === undefined ? "" : JSON.stringify(value);
        res.writeHead(status, { "content-type": "application/json" });
        res.end(text);
      };
      const needAuth = () => {
        if (!authed) send(401);
        return authed;
      };
      const ignore = this.fault === "ignore-writes";
      switch (`${req.method} ${path}`) {
        case "POST /api/v1/unlock": {
          let pw: unknown;
          try {
            pw = (JSON.parse(body) as { pw?: unknown }).pw;
          } catch {
            return send(400, { err: "bad body" });
          }
          if (pw !== this.#password) return send(403, { err: "wrong password" });
          const t = randomBytes(16).toString("hex");
          this.#tokens.add(t);
          this.tokensIssued.push(t);
          return send(200, { token: t });
        }
        case "GET /api/v1/info":
          return send(200, {
            fw_name: "Vnish",
            fw_version: "1.3.4",
            platform: "xil",
            install_type: "sd",
            build_time: "2024-01-01",
            miner: "Antminer S19 Pro",
            model: "s19pro",
            algorithm: "sha256d",
            hr_measure: "GH/s",
            serial: "VNSIM0000000042",
            system: {
              os: "GNU/Linux",
              miner_name: "rig7",
              file_system_version: "1.3.4",
              uptime: "2h",
              network_status: {
                mac: "02:A0:5E:00:00:42",
                ip: "127.0.0.1",
                netmask: "255.0.0.0",
                gateway: "127.0.0.1",
                dns: [],
                hostname: "rig7",
              },
            },
          });
        case "GET /api/v1/summary":
          if (this.fault === "huge") {
            res.writeHead(200, { "content-type": "application/json" });
            return void res.end(Buffer.alloc(10 * 1024 * 1024, 0x20));
          }
          if (this.fault === "malformed") {
            res.writeHead(200, { "content-type": "application/json" });
            return void res.end('{"miner":{"miner_status":');
          }
          return send(200, this.#summary());
        case "GET /api/v1/settings":
          if (!needAuth()) return;
          return send(200, { miner: { pools: this.pools }, ui: {}, regional: {}, network: {} });
        case "POST /api/v1/settings": {
          if (!needAuth()) return;
          try {
            const pools = (JSON.parse(body) as { miner?: { pools?: Pool[] } }).miner?.pools;
            if (Array.isArray(pools) && !ignore) {
              this.pools = [0, 1, 2].map((i) => {
                const p = pools[i];
                return p
                  ? { url: p.url, user: p.user, pass: p.pass }
                  : { url: "", user: "", pass: "" };
              });
            }
          } catch {
            // VNish answers success whatever happened (pyasic's note): so does the simulator.
          }
          return send(200, { restart_required: false, reboot_required: false });
        }
        case "POST /api/v1/mining/pause":
          if (!needAuth()) return;
          if (!ignore) this.state = "stopped";
          return send(200);
        case "POST /api/v1/mining/resume":
          if (!needAuth()) return;
          if (!ignore) this.state = "mining";
          return send(200);
        case "POST /api/v1/system/reboot":
          if (!needAuth()) return;
          if (!ignore) {
            this.bootedAt = this.#clock.now();
            this.#tokens = new Set();
          }
          return send(200);
        default:
          return send(404);
      }
    });
  }

  #summary(): unknown {
    this.#reads++;
    const on = this.#mining();
    const chain = (id: number) => ({
      id,
      frequency: 525,
      voltage: 13_600,
      power_consumption: on ? 1080 : 0,
      hashrate_ideal: 36_000,
      hashrate_rt: on ? 36_500 + id * 10 + (this.#reads % 9) : 0,
      hashrate_percentage: 101,
      hr_error: 0,
      hw_errors: 0,
      pcb_temp: { min: 48, max: 61 },
      chip_temp: { min: 63, max: 76 },
      chip_statuses: { red: 0, orange: 0, grey: 0 },
      status: { state: on ? "mining" : "stopped", description: null },
    });
    const live = this.pools.filter((p) => p.url !== "");
    return {
      miner: {
        miner_status: { miner_state: this.state, throttled: 100, miner_state_time: 600 },
        miner_type: "Antminer S19 Pro (Vnish 1.3.4)",
        hr_realtime: on ? 110_000 : 0,
        power_consumption: on ? 3240 + (this.#reads % 11) : 0,
        power_usage: 29,
        power_efficiency: 29.4,
        pools: live.map((p, i) => ({
          id: i,
          url: p.url,
          user: p.user,
          status: on && i === 0 ? "active" : "working",
          pool_type: "UserPool",
          asic_boost: false,
          diff: "65K",
          accepted: 10,
          rejected: 0,
          stale: 0,
          ls_diff: 65536,
          ls_time: "0:00:03",
          diffa: 655360,
          ping: 40,
        })),
        cooling: {
          fan_num: 4,
          fan_duty: 60,
          settings: {},
          fans: [0, 1, 2, 3].map((id) => ({
            id,
            rpm: 4800 + id * 30,
            status: "ok",
            max_rpm: 6000,
          })),
        },
        chains: [1, 2, 3].map(chain),
      },
    };
  }
}
