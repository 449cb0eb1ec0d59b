/**
 * VNish's REST replies, as its published API description defines them (asic-rs
 * `meta/vnish/v1.3.4/api-doc (JSON)`: `Summary`/`AntmMinerStats`, `InfoJson`, `ViewConfig`) and
 * as pyasic and asic-rs read them. No reply captured from a VNish miner is public: see
 * plugins/README.md, "VNish".
 */
import { normalizeMac, num, str, temps } from "../antminer/values.ts";
import { invalidReply, isObject } from "../cgminer/client.ts";
import type { Board, Fan, PoolSlot, PoolStatus, Power } from "../driver.ts";

type Obj = Record<string, unknown>;

const obj = (v: unknown): Obj => (isObject(v) ? v : {});
const list = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObject) : []);

export interface VnishInfo {
  readonly model: string;
  readonly firmware: string;
  readonly mac: string | null;
  readonly serial: string | null;
}

/** `GET /api/v1/info`: `miner` (model), `fw_name`/`fw_version`, `serial`, the MAC. */
export function parseInfo(info: Obj): VnishInfo {
  const model = str(info.miner);
  if (model === null) invalidReply("info", "no miner");
  const fw = [str(info.fw_name) ?? "VNish", str(info.fw_version)].filter((x) => x !== null);
  return {
    model,
    firmware: fw.join(" "),
    mac: normalizeMac(obj(obj(info.system).network_status).mac),
    serial: str(info.serial),
  };
}

export interface VnishSummary {
  readonly state: string;
  readonly boards: Board[];
  readonly fans: Fan[];
  readonly power: Power | null;
  readonly pools: PoolSlot[];
  readonly errors: string[];
}

/** States in which the miner is not hashing by its own account (pyasic `_is_mining`). */
export const STOPPED_STATES = new Set(["stopped", "shutting-down", "failure"]);

/**
 * `GET /api/v1/summary` → `miner`. Watts: `power_consumption`, an estimate (nothing says the
 * firmware measures it). Not `power_usage`, which pyasic reads as watts but which the v1.3.4
 * API description calls a deprecated alias of `power_efficiency` (J/TH).
 */
export function parseSummary(summary: Obj): VnishSummary {
  const m = summary.miner;
  if (!isObject(m)) invalidReply("summary", "no miner");
  const state = str(obj(m.miner_status).miner_state);
  if (state === null) invalidReply("summary", "no miner_status.miner_state");
  const errors: string[] = [];
  const boards = list(m.chains).map((c, i): Board => {
    const status = obj(c.status);
    if (status.state === "failure") {
      errors.push(`chain ${num(c.id) ?? i}: ${str(status.description) ?? "failure"}`);
    }
    const range = (v: unknown) => temps([obj(v).min, obj(v).max]);
    return {
      index: num(c.id) ?? i,
      hashrateGhs: num(c.hashrate_rt),
      chips: null,
      pcbTempC: range(c.pcb_temp),
      chipTempC: range(c.chip_temp),
    };
  });
  const fans = list(obj(m.cooling).fans)
    .map((f, i) => ({ index: num(f.id) ?? i, rpm: num(f.rpm) ?? 0 }))
    .filter((f) => f.rpm > 0);
  const watts = num(m.power_consumption);
  return {
    state,
    boards,
    fans,
    power:
      watts === null || watts < 0 ? null : { watts, provenance: "estimated", source: "firmware" },
    pools: list(m.pools).map((p, i) => ({
      index: num(p.id) ?? i,
      url: withScheme(typeof p.url === "string" ? p.url : ""),
      user: typeof p.user === "string" ? p.user : "",
      status: poolStatus(p.status),
      active: p.status === "active",
    })),
    errors,
  };
}

function poolStatus(v: unknown): PoolStatus {
  switch (v) {
    case "active":
    case "working":
      return "alive";
    case "offline":
    case "rejecting":
      return "dead";
    case "disabled":
      return "disabled";
    default:
      return "unknown";
  }
}

/** `GET /api/v1/settings` → `miner.pools` (up to three `{url, user, pass}`; "" url: empty). */
export function parseSettingsPools(settings: Obj): { url: string; user: string }[] {
  const pools = obj(settings.miner).pools;
  if (!Array.isArray(pools)) invalidReply("settings", "no miner.pools");
  return list(pools)
    .filter((p) => typeof p.url === "string" && p.url !== "")
    .map((p) => ({
      url: withScheme(String(p.url)),
      user: typeof p.user === "string" ? p.user : "",
    }));
}

/** VNish keeps pool URLs without a scheme (pyasic `Pool.from_vnish` adds `stratum+tcp://`). */
export function withScheme(url: string): string {
  return url === "" || url.includes("://") ? url : `stratum+tcp://${url}`;
}

export function withoutScheme(url: string): string {
  return url.replace(/^stratum\+tcp:\/\//, "");
}
