/**
 * The stock Antminer web UI's CGI replies and the set_miner_conf body (plugins/README.md for
 * the sources: pyasic `pyasic/web/antminer.py` and `pyasic/config/mining/__init__.py`, asic-rs
 * `asic-rs-firmwares/antminer/src/backends/v2020/mod.rs`).
 *
 * get_miner_conf holds the pool passwords in clear: what is read here is handed back to the
 * firmware unchanged and never put in an error or a reading.
 */
import { AgentdError } from "../../lib/errors.ts";
import { isObject } from "../cgminer/client.ts";
import type { MinerMode, PoolTarget } from "../driver.ts";
import { normalizeMac, num, str } from "./values.ts";

type Obj = Record<string, unknown>;

export interface SystemInfo {
  readonly model: string | null;
  readonly mac: string | null;
  readonly serial: string | null;
  readonly filesystemVersion: string | null;
}

export function parseSystemInfo(o: Obj): SystemInfo {
  return {
    model: str(o.minertype),
    mac: normalizeMac(o.macaddr),
    // `serinum` on stock firmware; asic-rs also reads `serial_no` on some newer builds.
    serial: str(o.serinum) ?? str(o.serial_no),
    filesystemVersion: str(o.system_filesystem_version),
  };
}

/** The web UI's work-mode numbers: 0 normal, 1 sleep, 2 high (some models), 3 low power. */
export const MODE_NUMBER = Object.freeze({ normal: 0, sleep: 1, high: 2, low: 3 });

export function confMode(o: Obj): MinerMode {
  switch (num(o["bitmain-work-mode"] ?? o["miner-mode"])) {
    case 0:
      return "normal";
    case 1:
      return "sleep";
    case 2:
      return "high";
    case 3:
      return "low";
    default:
      return "unknown";
  }
}

export interface ConfPool {
  readonly url: string;
  readonly user: string;
}

/** The configured pool slots in order, unused (empty) ones left out. */
export function confPools(o: Obj): ConfPool[] {
  if (!Array.isArray(o.pools)) return [];
  return o.pools
    .filter(isObject)
    .map((p) => ({
      url: typeof p.url === "string" ? p.url : "",
      user: typeof p.user === "string" ? p.user : "",
    }))
    .filter((p) => p.url !== "");
}

/** Firmware takes exactly three slots: the unused ones as empty strings. */
const SLOTS = 3;

/**
 * A set_miner_conf body: what the current configuration holds for the fields the web UI
 * itself sends back (fan control, frequency level, work mode, pools), with the change on top.
 */
export function buildConf(
  current: Obj,
  change: { readonly pools?: readonly PoolTarget[]; readonly mode?: number },
): Obj {
  const pools: Obj[] = change.pools
    ? change.pools.map((p) => ({ url: p.url, user: p.user, pass: p.password }))
    : (Array.isArray(current.pools) ? current.pools.filter(isObject) : []).map((p) => ({
        url: typeof p.url === "string" ? p.url : "",
        user: typeof p.user === "string" ? p.user : "",
        pass: typeof p.pass === "string" ? p.pass : "",
      }));
  while (pools.length < SLOTS) pools.push({ url: "", user: "", pass: "" });
  const mode = change.mode ?? num(current["bitmain-work-mode"] ?? current["miner-mode"]) ?? 0;
  return {
    "bitmain-fan-ctrl": current["bitmain-fan-ctrl"] ?? false,
    "bitmain-fan-pwm": current["bitmain-fan-pwm"] ?? "100",
    "freq-level": current["freq-level"] ?? current["bitmain-freq-level"] ?? "100",
    "miner-mode": mode,
    pools: pools.slice(0, SLOTS),
  };
}

/** set_miner_conf answers `{"stats":"success",…}`; anything else is the firmware refusing. */
export function checkConfReply(o: Obj): void {
  if (o.stats === "success") return;
  const msg = typeof o.msg === "string" ? o.msg.slice(0, 200) : "no message";
  throw new AgentdError("AGENTD_E_MINER_REFUSED", `set_miner_conf: ${msg}`, {
    context: { stats: typeof o.stats === "string" ? o.stats : null },
  });
}
