/**
 * A simulated Braiins OS gRPC API (port 50051 on hardware) for one SimMiner, speaking
 * lib/braiins/bos.proto (a subset of braiins/bos-plus-api) with @grpc/grpc-js:
 *
 * - AuthenticationService.Login: the token in the `authorization` response header (where
 *   pyasic reads it) and in `LoginResponse.token`; a wrong password is UNAUTHENTICATED. A
 *   token lapses `tokenTtlS` after its last use (the proto: "refreshed to this value with
 *   each request"), on the miner's clock; `expireTokens()` forgets them all (a restart).
 * - PoolService.GetPoolGroups / SetPoolGroups: one group holding the miner's slots; a set
 *   replaces every slot with the groups' pools, in order (not under `write-ignored`).
 * - PerformanceService.SetPowerTarget: bos-tuner.ts (with `ignoreRaises`, a raise is
 *   acknowledged with the asked value and not applied).
 * - ActionsService.Reboot, MinerService.GetMinerDetails (uid, version, hostname, MAC, serial).
 *
 * Every call but Login needs a live token (UNAUTHENTICATED otherwise).
 */
import { randomBytes } from "node:crypto";
import {
  Metadata,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type sendUnaryData,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { bosServices } from "../../lib/braiins/bos-proto.ts";
import { setPowerTarget, tunerOf } from "./bos-tuner.ts";
import type { SimMiner } from "./miner.ts";

type Obj = Record<string, unknown>;
type Call = ServerUnaryCall<Obj, Obj>;
type Done = sendUnaryData<Obj>;

export interface BosGrpcOptions {
  readonly miner: SimMiner;
  readonly host?: string;
  readonly username?: string;
  /** Default "root" (pyasic's default for Braiins OS). */
  readonly password?: string;
  readonly tokenTtlS?: number;
  /** The fault: power-target raises acknowledged and ignored. */
  readonly ignoreRaises?: boolean;
}

export class BosGrpcServer {
  readonly #o: BosGrpcOptions;
  readonly #server = new Server();
  readonly #tokens = new Map<string, number>();
  #port = 0;
  password: string;
  logins = 0;
  /** The RPCs asked for, in order, with whether the token was good: for tests. */
  readonly requests: string[] = [];

  constructor(o: BosGrpcOptions) {
    this.#o = o;
    this.password = o.password ?? "root";
    tunerOf(o.miner).ignoreRaises = o.ignoreRaises ?? false;
    const s = bosServices();
    const m = o.miner;
    this.#server.addService(s.AuthenticationService.service, { Login: this.#login });
    this.#server.addService(s.PoolService.service, {
      GetPoolGroups: this.#authed("GetPoolGroups", () => ({
        pool_groups: [
          {
            name: "default",
            uid: "1",
            quota: { value: 1 },
            pools: m.slots.map((slot, i) => ({
              uid: String(i),
              url: slot.url.text,
              user: slot.user,
              enabled: slot.enabled,
              alive: slot.alive === true,
              active: m.currentSlot === i,
            })),
          },
        ],
      })),
      SetPoolGroups: this.#authed("SetPoolGroups", (req) => {
        const groups = Array.isArray(req.pool_groups) ? (req.pool_groups as Obj[]) : [];
        const pools = groups.flatMap((g) => (Array.isArray(g.pools) ? (g.pools as Obj[]) : []));
        const configs = pools.map((p) => ({
          url: String(p.url ?? ""),
          user: String(p.user ?? ""),
          pass: String(p.password ?? ""),
        }));
        // `write-ignored`: acknowledged, not applied.
        if (!m.conditions.has("write-ignored")) m.setPools(configs);
        return { pool_groups: groups };
      }),
    });
    this.#server.addService(s.PerformanceService.service, {
      SetPowerTarget: this.#authed("SetPowerTarget", (req) => {
        const watt = Number((req.power_target as Obj | null)?.watt ?? 0);
        return { power_target: { watt: setPowerTarget(m, watt) } };
      }),
    });
    this.#server.addService(s.ActionsService.service, {
      Reboot: this.#authed("Reboot", () => {
        m.reboot();
        return {};
      }),
    });
    this.#server.addService(s.MinerService.service, {
      GetMinerDetails: this.#authed("GetMinerDetails", () => ({
        uid: m.id,
        bos_version: {
          current: String(m.profile.firmware.version.BOSminer ?? ""),
          major: "",
          bos_plus: true,
        },
        hostname: m.id,
        mac_address: m.mac,
        serial_number: m.serial,
      })),
    } satisfies UntypedServiceImplementation);
  }

  get address(): { host: string; port: number } {
    return { host: this.#o.host ?? "127.0.0.1", port: this.#port };
  }

  listen(): Promise<void> {
    const { host } = this.address;
    return new Promise((resolve, reject) => {
      this.#server.bindAsync(`${host}:0`, ServerCredentials.createInsecure(), (err, port) => {
        if (err) reject(err);
        else {
          this.#port = port;
          resolve();
        }
      });
    });
  }

  close(): Promise<void> {
    this.#server.forceShutdown();
    return Promise.resolve();
  }

  /** Forgets every token, as a bosminer restart does. */
  expireTokens(): void {
    this.#tokens.clear();
  }

  get #ttlMs(): number {
    return (this.#o.tokenTtlS ?? 3600) * 1000;
  }

  #login = (call: Call, done: Done): void => {
    const req = call.request;
    this.requests.push("Login");
    if (req.username !== (this.#o.username ?? "root") || req.password !== this.password) {
      done({ code: status.UNAUTHENTICATED, details: "invalid username or password" });
      return;
    }
    this.logins++;
    const token = randomBytes(16).toString("hex");
    this.#tokens.set(token, this.#o.miner.clock.now() + this.#ttlMs);
    const md = new Metadata();
    md.set("authorization", token);
    call.sendMetadata(md);
    done(null, { token, timeout_s: this.#ttlMs / 1000 });
  };

  #authed(name: string, run: (req: Obj) => Obj) {
    return (call: Call, done: Done): void => {
      const token = call.metadata.get("authorization")[0];
      const now = this.#o.miner.clock.now();
      const until = typeof token === "string" ? this.#tokens.get(token) : undefined;
      if (typeof token !== "string" || until === undefined || now >= until) {
        if (typeof token === "string") this.#tokens.delete(token);
        this.requests.push(`${name}:unauthenticated`);
        done({ code: status.UNAUTHENTICATED, details: "missing or expired token" });
        return;
      }
      this.#tokens.set(token, now + this.#ttlMs);
      this.requests.push(name);
      try {
        done(null, run(call.request));
      } catch (err) {
        done({ code: status.INVALID_ARGUMENT, details: String(err) });
      }
    };
  }
}
