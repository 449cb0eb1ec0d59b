/**
 * The 4028 API's data sections per firmware (PROTOCOLS.md section 2). Field names follow
 * what real firmware emits and what monitoring tools parse: the S9 (bmminer 2.0.0) with its
 * chains at slots 6–8, `"GHS 5s"` as a string and `temp2_N` chip temperatures; the S19
 * (bmminer 1.0.0) with numeric `"GHS 5s"`, `rate_30m`, `Mode`, `temp_pcbN` strings and the
 * misspelled `"Pool Stale%%"`; bosminer with MHS fields. Values come from the miner's state.
 */
import type { SimMiner } from "./miner.ts";
import type { Slot } from "./slots.ts";

type Obj = Record<string, unknown>;

/** cgminer prints reals with two decimals; keep the same precision. */
function r2(n: number): number {
  return Math.round(n * 100) / 100;
}

/** The S19's low-power mode (miner-mode 3) hashes at this share of nominal. */
const LOW_POWER_SHARE = 0.7;

export function ghs5s(m: SimMiner): number {
  if (!m.hashing) return 0;
  const base = m.mode === "low" ? r2(m.profile.nominalGhs * LOW_POWER_SHARE) : m.profile.nominalGhs;
  if (!m.varyPerRead) return base;
  const v = r2(base + m.drift * 0.01);
  m.recordServed(v);
  return v;
}

function ghsAv(m: SimMiner): number {
  return m.everHashed ? m.profile.nominalGhs : 0;
}

/** Board and chip temperatures: cooler when idle, over the limit when overheating. */
export function temps(m: SimMiner): { pcb: number; chip: number } {
  const t = m.profile.temps;
  if (m.conditions.has("overheat")) return { pcb: t.pcb + 25, chip: t.limitChip + 6 };
  if (!m.hashing) return { pcb: t.pcb - 25, chip: t.chip - 35 };
  return { pcb: t.pcb, chip: t.chip + (m.drift % 5) };
}

/** RPM per API fan position (1-based); a failed fan reads 0. */
export function fanSpeeds(m: SimMiner): Map<number, number> {
  const f = m.profile.fans;
  const out = new Map<number, number>();
  for (const [i, slot] of f.slots.entries()) {
    out.set(slot, m.conditions.has("fan") && i === 0 ? 0 : f.rpm + 60 * i + (m.drift % 50));
  }
  return out;
}

/** cgminer's suffix_string: three significant digits, K/M/G/T/P suffixes. */
export function suffixString(v: number): string {
  const units = ["", "K", "M", "G", "T", "P"];
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  const s = u === 0 && Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(3)));
  return `${s}${units[u]}`;
}

function pct(part: number, whole: number): number {
  return whole > 0 ? r2((100 * part) / whole) : 0;
}

function chipString(chips: number, ok: boolean): string {
  const c = ok ? "o" : "x";
  const groups: string[] = [];
  for (let i = 0; i < chips; i += 8) groups.push(c.repeat(Math.min(8, chips - i)));
  return groups.join(" ");
}

export function versionSection(m: SimMiner): Obj[] {
  return [{ ...m.profile.firmware.version }];
}

export function summarySection(m: SimMiner): Obj[] {
  const t = m.totals;
  const elapsed = m.elapsedSeconds;
  const minutes = Math.max(elapsed / 60, 1 / 60);
  const diffTotal = t.diffAccepted + t.diffRejected + t.diffStale;
  const common: Obj = {
    "Found Blocks": 0,
    Getworks: t.getworks,
    Accepted: t.accepted,
    Rejected: t.rejected,
    "Hardware Errors": m.hardwareErrors,
    Utility: r2(t.accepted / minutes),
    Discarded: t.discarded,
    Stale: t.stale,
    "Get Failures": 0,
    "Local Work": t.getworks,
    "Remote Failures": 0,
    "Network Blocks": 0,
    "Total MH": r2(ghsAv(m) * 1000 * elapsed),
    "Work Utility": r2(t.diffAccepted / minutes),
    "Difficulty Accepted": t.diffAccepted,
    "Difficulty Rejected": t.diffRejected,
    "Difficulty Stale": t.diffStale,
    "Best Share": Math.floor(t.bestShare),
    "Device Hardware%": 0,
    "Device Rejected%": pct(t.diffRejected, diffTotal),
    "Pool Rejected%": pct(t.diffRejected, diffTotal),
    "Pool Stale%": pct(t.diffStale, diffTotal),
    "Last getwork": Math.floor(m.clock.now() / 1000),
  };
  switch (m.profile.api) {
    case "bmminer-s9":
      return [
        { Elapsed: elapsed, "GHS 5s": ghs5s(m).toFixed(2), "GHS av": r2(ghsAv(m)), ...common },
      ];
    case "bmminer-s19":
      return [
        {
          Elapsed: elapsed,
          "GHS 5s": r2(ghs5s(m)),
          "GHS 30m": r2(ghsAv(m)),
          "GHS av": r2(ghsAv(m)),
          ...common,
        },
      ];
    default: {
      const mhs = ghs5s(m) * 1000;
      return [
        {
          Elapsed: elapsed,
          "MHS av": r2(ghsAv(m) * 1000),
          "MHS 5s": r2(mhs),
          "MHS 1m": r2(mhs),
          "MHS 5m": r2(mhs),
          "MHS 15m": r2(mhs),
          ...common,
        },
      ];
    }
  }
}

function poolStatus(s: Readonly<Slot>): string {
  if (!s.enabled) return "Disabled";
  return s.alive === false ? "Dead" : "Alive";
}

export function poolsSection(m: SimMiner): Obj[] {
  const current = m.currentSlot;
  return m.slots.map((s, i) => {
    const c = s.counters;
    const total = c.diffAccepted + c.diffRejected + c.diffStale;
    const staleKey = m.profile.api === "bmminer-s19" ? "Pool Stale%%" : "Pool Stale%";
    return {
      POOL: i,
      URL: s.url.text,
      Status: poolStatus(s),
      Priority: i,
      Quota: 1,
      "Long Poll": "N",
      Getworks: c.getworks,
      Accepted: c.accepted,
      Rejected: c.rejected,
      Discarded: c.discarded,
      Stale: c.stale,
      "Get Failures": 0,
      "Remote Failures": 0,
      User: s.user,
      "Last Share Time": Math.floor(c.lastShareTime / 1000),
      Diff: suffixString(s.difficulty),
      "Diff1 Shares": 0,
      "Proxy Type": "",
      Proxy: "",
      "Difficulty Accepted": c.diffAccepted,
      "Difficulty Rejected": c.diffRejected,
      "Difficulty Stale": c.diffStale,
      "Last Share Difficulty": c.lastShareDifficulty,
      "Has Stratum": true,
      "Stratum Active": current === i,
      "Stratum URL": s.host,
      "Has GBT": false,
      "Best Share": Math.floor(c.bestShare),
      "Pool Rejected%": pct(c.diffRejected, total),
      [staleKey]: pct(c.diffStale, total),
    };
  });
}

export function devsSection(m: SimMiner): Obj[] {
  const chains = m.profile.chains.slots;
  const t = temps(m);
  const share = (n: number) => n / chains.length;
  return chains.map((slot, i) => ({
    ASC: i,
    Name: m.profile.api === "bosminer" ? "BOSminer" : "BTM_SOC",
    ID: slot,
    Enabled: "Y",
    Status: "Alive",
    Temperature: t.pcb,
    "MHS av": r2(share(ghsAv(m)) * 1000),
    "MHS 5s": r2(share(ghs5s(m)) * 1000),
    // bosminer's one-minute window (pyasic reads it per board).
    ...(m.profile.api === "bosminer" ? { "MHS 1m": r2(share(ghs5s(m)) * 1000) } : {}),
    Accepted: Math.floor(share(m.totals.accepted)),
    Rejected: Math.floor(share(m.totals.rejected)),
    "Hardware Errors": 0,
    Utility: 0,
    "Last Share Pool": m.currentSlot ?? -1,
    "Last Share Time": Math.floor(m.totals.lastShareTime / 1000),
    "Total MH": r2(share(ghsAv(m)) * 1000 * m.elapsedSeconds),
    "Difficulty Accepted": share(m.totals.diffAccepted),
    "Difficulty Rejected": share(m.totals.diffRejected),
    "Last Share Difficulty": m.totals.lastShareDifficulty,
    "Device Hardware%": 0,
    "Device Rejected%": 0,
    "Device Elapsed": m.elapsedSeconds,
  }));
}

export function devdetailsSection(m: SimMiner): Obj[] {
  return m.profile.chains.slots.map((slot, i) => ({
    DEVDETAILS: i,
    Name: m.profile.api === "bosminer" ? "BOSminer" : "BTM_SOC",
    ID: slot,
    Driver: m.profile.api === "bosminer" ? "bosminer" : "bitmain",
    Kernel: "",
    Model: m.profile.api === "bosminer" ? `Bitmain ${m.profile.model}` : m.profile.model,
    "Device Path": "",
    // bosminer's chips per board (pyasic `_get_hashboards` reads `Chips`).
    ...(m.profile.api === "bosminer" ? { Chips: m.profile.chains.chips } : {}),
  }));
}

export function configSection(m: SimMiner): Obj[] {
  return [
    {
      "ASC Count": m.profile.chains.slots.length,
      "PGA Count": 0,
      "Pool Count": m.slots.length,
      Strategy: "Failover",
      "Log Interval": 5,
      "Device Code": "",
      OS: "Linux",
      "Failover-Only": false,
      ScanTime: 60,
      Queue: 1,
      Expiry: 120,
    },
  ];
}

/** STATS: a header object with the versions, then the miner's object. */
export function statsSection(m: SimMiner): Obj[] {
  // STATS[0] carries the versions, as on the VERSION reply minus the API version.
  const head: Obj = Object.fromEntries(
    Object.entries(m.profile.firmware.version).filter(([k]) => k !== "API"),
  );
  switch (m.profile.api) {
    case "bmminer-s9":
      return [head, s9Stats(m)];
    case "bmminer-s19":
      return [head, s19Stats(m)];
    default:
      return [
        {
          STATS: 0,
          ID: "BOSminer0",
          Elapsed: m.elapsedSeconds,
          Calls: 0,
          Wait: 0,
          Max: 0,
          Min: 99999999,
        },
      ];
  }
}

function baseStats(m: SimMiner, id: string): Obj {
  return { STATS: 0, ID: id, Elapsed: m.elapsedSeconds, Calls: 0, Wait: 0, Max: 0, Min: 99999999 };
}

/** The S9: sixteen chain positions, three populated (6–8), fans 1–8 with two spinning. */
function s9Stats(m: SimMiner): Obj {
  const p = m.profile;
  const t = temps(m);
  const fans = fanSpeeds(m);
  const on = new Set(p.chains.slots);
  const perChain = ghs5s(m) / p.chains.slots.length;
  const o: Obj = {
    ...baseStats(m, "BC50"),
    "GHS 5s": ghs5s(m).toFixed(2),
    "GHS av": r2(ghsAv(m)),
    miner_count: p.chains.slots.length,
    frequency: String(p.chains.freq),
    fan_num: p.fans.slots.length,
  };
  for (let i = 1; i <= p.fans.total; i++) o[`fan${i}`] = fans.get(i) ?? 0;
  o.temp_num = p.chains.slots.length;
  for (let i = 1; i <= 16; i++) o[`temp${i}`] = on.has(i) ? t.pcb : 0;
  for (let i = 1; i <= 16; i++) o[`temp2_${i}`] = on.has(i) ? t.chip : 0;
  for (let i = 1; i <= 16; i++) o[`temp3_${i}`] = 0;
  o.temp_max = t.pcb;
  o["Device Hardware%"] = 0;
  o.no_matching_work = m.hardwareErrors;
  for (let i = 1; i <= 16; i++) o[`chain_acn${i}`] = on.has(i) ? p.chains.chips : 0;
  for (let i = 1; i <= 16; i++)
    o[`chain_acs${i}`] = on.has(i) ? chipString(p.chains.chips, true) : "";
  for (let i = 1; i <= 16; i++) o[`chain_hw${i}`] = 0;
  for (let i = 1; i <= 16; i++) o[`chain_rate${i}`] = on.has(i) ? perChain.toFixed(2) : "";
  for (const i of p.chains.slots) o[`freq_avg${i}`] = p.chains.freq;
  o.total_rateideal = r2(p.nominalGhs);
  o.total_freqavg = p.chains.freq;
  o.total_acn = p.chains.chips * p.chains.slots.length;
  o.total_rate = r2(ghs5s(m));
  o.miner_version = p.firmware.version.Miner ?? "";
  o.miner_id = "80108c2a6d10881c";
  return o;
}

/** The S19: three chains at 1–3, four fans, PCB/chip temperature strings, `Mode`. */
function s19Stats(m: SimMiner): Obj {
  const p = m.profile;
  const t = temps(m);
  const fans = fanSpeeds(m);
  const n = p.chains.slots.length;
  const perChain = ghs5s(m) / n;
  const o: Obj = {
    ...baseStats(m, "BTM_SOC0"),
    "GHS 5s": r2(ghs5s(m)),
    "GHS av": r2(ghsAv(m)),
    rate_30m: r2(ghsAv(m)),
    // bmminer's work mode: 0 normal, 1 sleep (set through the web UI's miner-mode).
    Mode: minerModeNumber(m),
    miner_count: n,
    frequency: p.chains.freq,
    fan_num: p.fans.slots.length,
  };
  for (let i = 1; i <= p.fans.total; i++) o[`fan${i}`] = fans.get(i) ?? 0;
  o.temp_num = n;
  for (const i of p.chains.slots) o[`temp${i}`] = t.pcb;
  for (const i of p.chains.slots) o[`temp2_${i}`] = t.chip;
  for (const i of p.chains.slots) o[`temp3_${i}`] = t.chip;
  for (const i of p.chains.slots) {
    o[`temp_pcb${i}`] = [t.pcb - 8, t.pcb - 6, t.pcb - 1, t.pcb].join("-");
  }
  for (const i of p.chains.slots) {
    o[`temp_chip${i}`] = [t.chip - 8, t.chip - 6, t.chip - 1, t.chip].join("-");
  }
  o.total_rateideal = r2(p.nominalGhs);
  o.rate_unit = "GH";
  o.total_freqavg = p.chains.freq;
  o.total_acn = p.chains.chips * n;
  o.total_rate = r2(ghs5s(m));
  o.temp_max = t.pcb;
  o.no_matching_work = m.hardwareErrors;
  for (const i of p.chains.slots) o[`chain_acn${i}`] = p.chains.chips;
  for (const i of p.chains.slots) o[`chain_acs${i}`] = chipString(p.chains.chips, true);
  for (const i of p.chains.slots) o[`chain_hw${i}`] = 0;
  for (const i of p.chains.slots) o[`chain_rate${i}`] = perChain.toFixed(2);
  for (const i of p.chains.slots) o[`freq${i}`] = p.chains.freq;
  o.miner_version = p.firmware.version.Miner ?? "";
  o.miner_id = "a4d2b1c0e8f0a4d2";
  return o;
}

/** The web UI's miner-mode numbers: 0 normal, 1 sleep, 3 low power. */
export function minerModeNumber(m: SimMiner): number {
  return m.mode === "sleep" ? 1 : m.mode === "low" ? 3 : 0;
}

/**
 * The S19's `{"command":"stats","new_api":true}` reply: a different envelope (STATUS is an
 * object, INFO carries the versions) and per-chain objects with arrays of temperatures and the
 * board serial `sn`. Shape as pyasic's and asic-rs's Antminer backends read it
 * (`STATS[0].chain[]`: `index`, `rate_real`, `asic_num`, `temp_pcb[]`, `temp_chip[]`, `sn`)
 * and as Bitmain-derived firmware prints it (plugins/README.md has the sources).
 */
export function newApiStats(m: SimMiner): Obj {
  const p = m.profile;
  const t = temps(m);
  const fans = fanSpeeds(m);
  const n = p.chains.slots.length;
  const perChain = r2(ghs5s(m) / n);
  const when = Math.floor(m.clock.now() / 1000);
  return {
    STATUS: { STATUS: "S", when, timestamp: when, api_version: "1.0.0", Msg: "stats" },
    INFO: {
      miner_version: p.firmware.version.Miner ?? "",
      CompileTime: p.firmware.version.CompileTime ?? "",
      type: p.model,
    },
    STATS: [
      {
        elapsed: m.elapsedSeconds,
        rate_5s: r2(ghs5s(m)),
        rate_30m: r2(ghsAv(m)),
        rate_avg: r2(ghsAv(m)),
        rate_ideal: r2(p.nominalGhs),
        rate_unit: "GH/s",
        chain_num: n,
        fan_num: p.fans.slots.length,
        fan: p.fans.slots.map((s) => fans.get(s) ?? 0),
        hwp_total: 0,
        "miner-mode": minerModeNumber(m),
        "freq-level": 100,
        chain: p.chains.slots.map((_, i) => ({
          index: i,
          freq_avg: p.chains.freq,
          rate_ideal: r2(p.nominalGhs / n),
          rate_real: perChain,
          asic_num: p.chains.chips,
          asic: chipString(p.chains.chips, true),
          temp_pic: [t.pcb - 10, t.pcb - 8, t.pcb - 3, t.pcb - 2],
          temp_pcb: [t.pcb - 8, t.pcb - 6, t.pcb - 1, t.pcb],
          temp_chip: [t.chip - 8, t.chip - 6, t.chip - 1, t.chip],
          hw: 0,
          eeprom_loaded: true,
          sn: m.boardSerials[i] ?? "",
          hwp: 0,
        })),
      },
    ],
  };
}

/** bosminer's temps and fans commands. */
export function tempsSection(m: SimMiner): Obj[] {
  const t = temps(m);
  return m.profile.chains.slots.map((slot, i) => ({
    TEMP: i,
    ID: slot,
    Board: t.pcb,
    Chip: t.chip,
  }));
}

export function fansSection(m: SimMiner): Obj[] {
  return [...fanSpeeds(m).entries()].map(([slot, rpm], i) => ({
    FAN: i,
    ID: slot - 1,
    RPM: rpm,
    Speed: rpm === 0 ? 0 : 100,
  }));
}
