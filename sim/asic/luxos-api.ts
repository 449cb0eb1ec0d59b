/**
 * A simulated LuxOS miner's 4028 API (LUXminer), for the driver tests and `sim/README.md`.
 * It starts from the replies captured from a real S19k Pro (test/fixtures/captures/luxos/,
 * read from the directory it is given) and changes only what the commands change: pool slots,
 * the curtail state (kept across `rebootdevice`, as the vendor documents), the profile, ATM,
 * uptime. Every read moves the hashrate and the watts so no cache can pass for a read.
 *
 * Sessions as the vendor documents them: one at a time, created by `logon` only when none is
 * active, expiring a minute after last use; privileged commands take the id first. The error
 * codes and messages of a refused logon or a bad session id are not documented publicly: the
 * ones here are the simulator's own (sim/README.md).
 *
 * Faults: `session-held` (another actor holds the session), `ignore-writes` (answers success,
 * changes nothing), `malformed` (a reply that is not JSON even after the usual repairs),
 * `huge` (a 10 MB reply).
 */
import { readFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import type { Clock } from "../../lib/clock.ts";
import { listenTcp } from "../../lib/http/listen.ts";

type Obj = Record<string, unknown>;

export type LuxosFault = "session-held" | "ignore-writes" | "malformed" | "huge";

export interface LuxosSimOptions {
  readonly clock: Clock;
  /** test/fixtures/captures/luxos (the captured replies the simulator starts from). */
  readonly capturesDir: string;
  readonly fault?: LuxosFault | null;
}

interface Slot {
  url: string;
  user: string;
  pass: string;
  template: Obj;
}

const SESSION_TTL_MS = 60_000;
const MAX_REQUEST = 64 * 1024;

export class LuxosSim {
  readonly #clock: Clock;
  readonly #captures: Readonly<Record<string, Obj>>;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #port = 0;
  readonly #served: number[] = [];
  fault: LuxosFault | null;
  slots: Slot[];
  active = 0;
  curtailed = false;
  profile: string;
  atm: boolean;
  bootedAt: number;
  session: { id: string; lastUse: number } | null = null;
  #sessionSeq = 0;
  /**
   * The PSU's input power over PMBus, for `psuget`; null: the firmware answers psuget as the
   * vendor's page shows a PSU without that register ("N/A").
   */
  psuInputWatts: number | null = null;
  /** How many of the next sessions expire as soon as they are created (a minute passed). */
  expireSessions = 0;
  #reads = 0;
  /** Every command received, parameter included (tests check what was sent). */
  readonly received: { command: string; parameter: string | null }[] = [];

  constructor(o: LuxosSimOptions) {
    this.#clock = o.clock;
    this.fault = o.fault ?? null;
    const load = (name: string) =>
      JSON.parse(readFileSync(join(o.capturesDir, `4028-${name}.json`), "utf8")) as Obj;
    this.#captures = Object.fromEntries(
      ["version", "summary", "stats", "pools", "power", "profiles", "config"].map((n) => [
        n,
        load(n),
      ]),
    );
    const pools = (this.#captures.pools?.POOLS ?? []) as Obj[];
    this.slots = pools.map((p) => ({
      url: String(p.URL),
      user: String(p.User),
      pass: "x",
      template: p,
    }));
    this.active = Math.max(
      0,
      pools.findIndex((p) => p["Stratum Active"] === true),
    );
    const config = this.#row("config", "CONFIG");
    this.profile = String(config.Profile);
    this.atm = config.IsAtmEnabled === true;
    this.bootedAt = this.#clock.now() - Number(this.#row("summary", "SUMMARY").Elapsed) * 1000;
    this.#server = createServer((s) => this.#serve(s));
  }

  get port(): number {
    return this.#port;
  }

  async listen(): Promise<void> {
    this.#port = (await listenTcp(this.#server, 0, "127.0.0.1")).port;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Another actor takes the one session (as the owner's own tool would). */
  holdSession(): void {
    this.session = { id: "OTHERSID", lastUse: this.#clock.now() };
  }

  #serve(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    let text = "";
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("utf8");
      if (text.length > MAX_REQUEST) {
        socket.destroy();
        return;
      }
      let req: Obj;
      try {
        req = JSON.parse(text) as Obj;
      } catch {
        return; // not whole yet
      }
      text = "";
      const command = typeof req.command === "string" ? req.command : "";
      const parameter = typeof req.parameter === "string" ? req.parameter : null;
      this.received.push({ command, parameter });
      socket.end(this.#reply(command, parameter ?? ""));
    });
  }

  #reply(command: string, parameter: string): string | Buffer {
    if (this.fault === "huge") return Buffer.alloc(10 * 1024 * 1024, 0x20);
    if (this.fault === "malformed") return '{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"GHS 5s":}\0';
    return `${JSON.stringify(this.#answer(command, parameter))}\0`;
  }

  #envelope(code: number, msg: string, extra: Obj = {}, status = "S"): Obj {
    return {
      ...extra,
      STATUS: [
        {
          Code: code,
          Description: this.#description(),
          Msg: msg,
          STATUS: status,
          When: Math.floor(this.#clock.now() / 1000),
        },
      ],
      id: 1,
    };
  }

  #description(): string {
    const s = (this.#captures.version?.STATUS as Obj[] | undefined)?.[0];
    return String(s?.Description ?? "LUXminer");
  }

  #row(capture: string, name: string): Obj {
    const rows = this.#captures[capture]?.[name];
    return (Array.isArray(rows) ? rows[0] : {}) as Obj;
  }

  #uptimeS(): number {
    return Math.max(0, Math.floor((this.#clock.now() - this.bootedAt) / 1000));
  }

  /** A small change on every read, never the same value twice in a row. */
  #jitter(): number {
    this.#reads++;
    return 1 + (this.#reads % 997) / 100_000;
  }

  /** The hashrates `summary` served since the last call (bench/drivers.ts checks readings). */
  takeServed(): number[] {
    return this.#served.splice(0);
  }

  /** Requests answered (bench/drivers.ts makes as many bare ones for its baseline). */
  answered = 0;

  #answer(command: string, parameter: string): Obj {
    this.answered++;
    const params = parameter === "" ? [] : parameter.split(",");
    switch (command) {
      case "version":
        return this.#captures.version as Obj;
      case "summary": {
        const row = this.#row("summary", "SUMMARY");
        const ghs = this.curtailed ? 0 : Number(row["GHS 5s"]) * this.#jitter();
        if (this.#served.length < 256) this.#served.push(ghs);
        return this.#envelope(11, "Summary", {
          SUMMARY: [{ ...row, "GHS 5s": ghs, Elapsed: this.#uptimeS() }],
        });
      }
      case "stats": {
        const stats = (this.#captures.stats?.STATS ?? []) as Obj[];
        return this.#envelope(70, "LUXminer stats", {
          STATS: [stats[0], { ...stats[1], Elapsed: this.#uptimeS() }],
        });
      }
      case "pools":
        return this.#envelope(7, `${this.slots.length} Pool(s)`, {
          POOLS: this.slots.map((s, i) => ({
            ...s.template,
            POOL: i,
            Priority: i,
            URL: s.url,
            User: s.user,
            Status: "Alive",
            "Stratum Active": i === this.active && !this.curtailed,
          })),
        });
      case "config":
        return this.#envelope(33, "LUXminer config", {
          CONFIG: [
            {
              ...this.#row("config", "CONFIG"),
              CurtailMode: this.curtailed ? "Sleep" : "None",
              Profile: this.profile,
              IsAtmEnabled: this.atm,
              "Pool Count": this.slots.length,
            },
          ],
        });
      case "power": {
        const w = this.curtailed
          ? 0
          : Math.round(Number(this.#row("power", "POWER").Watts) * this.#jitter());
        return this.#envelope(311, "Power usage", { POWER: [{ PSU: false, Watts: w }] });
      }
      case "profiles":
        return this.#captures.profiles as Obj;
      case "psuget":
        return this.#envelope(430, "PSU information", {
          PSUMONITORING: [
            { InputPower: this.psuInputWatts === null ? "N/A" : String(this.psuInputWatts) },
          ],
        });
      case "session":
        return this.#envelope(319, "Session information", {
          SESSION: [{ SessionID: this.#liveSession()?.id ?? "" }],
        });
      case "logon":
        return this.#logon();
      case "logoff":
        return this.#privileged(params, () => {
          this.session = null;
          return this.#envelope(317, "Session closed");
        });
      case "addpool": {
        const [url, user, pass] = splitEscaped(parameter);
        if (!url || !user) return this.#envelope(25, "Missing pool details", {}, "E");
        if (this.fault !== "ignore-writes")
          this.slots.push({ url, user, pass: pass ?? "", template: this.slots[0]?.template ?? {} });
        return this.#envelope(55, `Added pool ${this.slots.length - 1}: '${url}'`);
      }
      case "switchpool":
        return this.#pool(params[0], (id) => {
          if (this.fault !== "ignore-writes") this.active = id;
          return this.#envelope(27, `Switching to pool ${id}`);
        });
      case "removepool":
        return this.#pool(params[0], (id) => {
          if (id === this.active) return this.#envelope(67, "Cannot remove active pool", {}, "E");
          if (this.fault !== "ignore-writes") {
            this.slots.splice(id, 1);
            if (this.active > id) this.active--;
          }
          return this.#envelope(68, `Removed pool ${id}`);
        });
      case "curtail":
        return this.#privileged(params, (rest) => {
          const action = rest[0];
          if (action !== "sleep" && action !== "wakeup")
            return this.#envelope(336, "Invalid curtail action", {}, "E");
          if (this.fault !== "ignore-writes") this.curtailed = action === "sleep";
          return this.#envelope(335, "Curtailment command sent", {
            CURTAIL: [{ Action: action === "sleep" ? "sleep mode" : "wake up" }],
          });
        });
      case "atmset":
        return this.#privileged(params, (rest) => {
          for (const kv of rest) {
            const [k, v] = kv.split("=");
            if (k === "enabled" && this.fault !== "ignore-writes") this.atm = v === "true";
          }
          return this.#envelope(340, "Advanced Thermal Management configuration updated");
        });
      case "profileset":
        return this.#privileged(params, (rest) => {
          const name = rest[0] ?? "";
          const known = ((this.#captures.profiles?.PROFILES ?? []) as Obj[]).some(
            (p) => p["Profile Name"] === name,
          );
          if (!known) return this.#envelope(343, `Invalid profile ${name}`, {}, "E");
          if (this.atm) return this.#envelope(344, "ATM is enabled", {}, "E");
          if (this.fault !== "ignore-writes") this.profile = name;
          return this.#envelope(345, "Profile set", { PROFILE: [{ Profile: name }] });
        });
      case "rebootdevice":
        return this.#privileged(params, () => {
          if (this.fault !== "ignore-writes") {
            // A reboot ends the session; the curtail state survives it (vendor's curtail page).
            this.session = null;
            this.bootedAt = this.#clock.now();
          }
          return this.#envelope(346, "Rebooting device");
        });
      default:
        return this.#envelope(14, "Invalid command", {}, "E");
    }
  }

  #liveSession(): { id: string; lastUse: number } | null {
    if (this.session && this.#clock.now() - this.session.lastUse >= SESSION_TTL_MS) {
      this.session = null;
    }
    return this.session;
  }

  #logon(): Obj {
    if (this.fault === "session-held" && this.#liveSession() === null) this.holdSession();
    if (this.#liveSession() !== null) {
      // The simulator's own code and text: the vendor does not publish them.
      return this.#envelope(318, "Another session is active", {}, "E");
    }
    this.#sessionSeq++;
    const id = `s${this.#sessionSeq.toString(36)}Xq${(this.#clock.now() % 9973).toString(36)}`;
    this.session = {
      id,
      lastUse: this.#clock.now() - (this.expireSessions > 0 ? SESSION_TTL_MS : 0),
    };
    if (this.expireSessions > 0) this.expireSessions--;
    return this.#envelope(316, "Session created", { SESSION: [{ SessionID: id }] });
  }

  #privileged(params: readonly string[], run: (rest: string[]) => Obj): Obj {
    const live = this.#liveSession();
    const [sid, ...rest] = params;
    if (live === null || sid !== live.id) {
      // Quotes the id as some firmware messages do: the driver must scrub it.
      return this.#envelope(315, `Invalid session id '${sid ?? ""}'`, {}, "E");
    }
    live.lastUse = this.#clock.now();
    return run(rest);
  }

  #pool(param: string | undefined, run: (id: number) => Obj): Obj {
    const id = Number(param);
    if (!Number.isInteger(id) || id < 0 || id >= this.slots.length)
      return this.#envelope(26, `Invalid pool id ${param ?? ""}`, {}, "E");
    return run(id);
  }
}

/** cgminer's parameter list: `,` separates, `\` escapes the next character. */
function splitEscaped(s: string): string[] {
  const out: string[] = [];
  let cur = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "\\" && i + 1 < s.length) cur += s[++i];
    else if (c === ",") {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}
