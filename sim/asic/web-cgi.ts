/**
 * What the stock Antminer web UI's CGI scripts answer (web-ui.ts serves them): field names as
 * pyasic (`pyasic/web/antminer.py`, `pyasic/miners/backends/antminer.py`) and asic-rs
 * (`asic-rs-firmwares/antminer/src/backends/v2020/`) read them, and as the get_system_info
 * reply captured in asic-rs's test data prints them (plugins/README.md). The S9's older UI has
 * no miner-mode and no serial number.
 */
import { minerModeNumber } from "./api-sections.ts";
import type { SimMiner } from "./miner.ts";
import type { PoolConfig } from "./slots.ts";

type Obj = Record<string, unknown>;

export function systemInfo(m: SimMiner, address: string): Obj {
  const v = m.profile.firmware.version;
  const common: Obj = {
    minertype: m.profile.model,
    nettype: "DHCP",
    netdevice: "eth0",
    // The firmware prints the MAC in upper case.
    macaddr: m.mac.toUpperCase(),
    hostname: m.profile.api === "bmminer-s9" ? "antMiner" : "Antminer",
    ipaddress: address,
    netmask: "255.255.255.0",
    gateway: "",
    dnsservers: "",
    system_mode: "GNU/Linux",
  };
  if (m.profile.api === "bmminer-s9") {
    return {
      ...common,
      ant_hwv: v.Miner ?? "",
      system_kernel_version: "Linux 3.14.0-xilinx-ge8a2f71-dirty #82 SMP PREEMPT",
      system_filesystem_version: v.CompileTime ?? "",
      bmminer_version: v.BMMiner ?? "",
    };
  }
  return {
    ...common,
    system_kernel_version: "Linux 4.9.113 #1 SMP PREEMPT",
    system_filesystem_version: v.CompileTime ?? "",
    firmware_type: "Release",
    serinum: m.serial,
  };
}

/** The three pool slots as the configuration holds them: unused ones are empty strings. */
function confPools(m: SimMiner): Obj[] {
  const out: Obj[] = m.slots
    .slice(0, 3)
    .map((s) => ({ url: s.url.text, user: s.user, pass: s.pass }));
  while (out.length < 3) out.push({ url: "", user: "", pass: "" });
  return out;
}

export function minerConf(m: SimMiner): Obj {
  const base: Obj = {
    pools: confPools(m),
    "api-listen": true,
    "api-network": true,
    "api-groups": "A:stats:pools:devs:summary:version",
    "api-allow": "A:0/0,W:*",
    "bitmain-use-vil": true,
    "bitmain-freq": String(m.profile.chains.freq),
  };
  if (m.profile.api === "bmminer-s9")
    return { ...base, "bitmain-voltage": "0706", "multi-version": "1" };
  return {
    ...base,
    "bitmain-fan-ctrl": false,
    "bitmain-fan-pwm": "100",
    "bitmain-voltage": "1400",
    "bitmain-ccdelay": "0",
    "bitmain-pwth": "0",
    // A string here, a number in what set_miner_conf takes: the firmware is not consistent.
    "bitmain-work-mode": String(minerModeNumber(m)),
    "bitmain-freq-level": "100",
  };
}

/** What a set_miner_conf body asks for; `mode` null when it does not say. */
export interface ConfChange {
  readonly pools: readonly PoolConfig[] | null;
  readonly mode: "normal" | "sleep" | "low" | null;
}

/** Parses a set_miner_conf JSON body; a string saying what is wrong when it is not one. */
export function parseConfChange(body: string): ConfChange | string {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    return "not JSON";
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "not an object";
  const o = v as Obj;
  let pools: PoolConfig[] | null = null;
  if (o.pools !== undefined) {
    if (!Array.isArray(o.pools) || o.pools.length > 3) return "pools: at most three slots";
    pools = [];
    for (const p of o.pools as unknown[]) {
      if (typeof p !== "object" || p === null) return "pools: each slot an object";
      const { url, user, pass } = p as Obj;
      if (typeof url !== "string" || typeof user !== "string" || typeof pass !== "string") {
        return "pools: url, user and pass strings";
      }
      pools.push({ url, user, pass });
    }
  }
  const raw = o["miner-mode"] ?? o["bitmain-work-mode"];
  let mode: ConfChange["mode"] = null;
  if (raw !== undefined) {
    const n = typeof raw === "string" && /^\d+$/.test(raw) ? Number(raw) : raw;
    if (n === 0) mode = "normal";
    else if (n === 1) mode = "sleep";
    else if (n === 3) mode = "low";
    else return "miner-mode: 0, 1 or 3";
  }
  return { pools, mode };
}
