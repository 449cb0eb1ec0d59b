/**
 * The cgminer API's commands, their status codes and messages (cgminer api.c), and which
 * need write access. Per firmware: neither stock Antminer sleeps through 4028 (the S19 sleeps
 * through its web UI's miner-mode, web-ui.ts; the S9 cannot); bosminer pauses.
 */
import { unixSeconds } from "../../lib/clock.ts";
import {
  configSection,
  devdetailsSection,
  devsSection,
  fansSection,
  poolsSection,
  statsSection,
  summarySection,
  tempsSection,
  versionSection,
} from "./api-sections.ts";
import { tunerStatusSection } from "./bos-tuner.ts";
import type { SimMiner } from "./miner.ts";

type Obj = Record<string, unknown>;

export interface Status {
  readonly STATUS: "S" | "I" | "W" | "E" | "F";
  readonly Code: number;
  readonly Msg: string;
}

/** A command's answer: a status and, for data commands, one named section. */
export interface Answer {
  readonly status: Status;
  readonly section?: { readonly name: string; readonly rows: readonly Obj[] };
  /** quit/restart answer a bare `{"STATUS":"BYE"}`-style object instead of the envelope. */
  readonly bare?: string;
  /** Run after the reply is sent (restart). */
  readonly after?: () => void;
}

interface Command {
  readonly privileged: boolean;
  /** May appear in `cmd1+cmd2` joins (read-only data commands). */
  readonly joinable: boolean;
  readonly run: (m: SimMiner, param: string) => Answer;
}

const ok = (Code: number, Msg: string): Status => ({ STATUS: "S", Code, Msg });
const err = (Code: number, Msg: string): Status => ({ STATUS: "E", Code, Msg });
const info = (Code: number, Msg: string): Status => ({ STATUS: "I", Code, Msg });

export const INVALID_COMMAND = err(14, "Invalid command");
export const accessDenied = (cmd: string): Status => err(45, `Access denied to '${cmd}' command`);

function data(code: number, msg: string, name: string, rows: readonly Obj[]): Answer {
  return { status: ok(code, msg), section: { name, rows } };
}

/** A pool id parameter, or the status explaining why it is not one. */
function poolId(m: SimMiner, param: string): number | Status {
  if (param.trim() === "") return err(25, "Missing pool id parameter");
  const id = Number(param);
  const max = m.slots.length - 1;
  if (!Number.isInteger(id) || id < 0 || id > max) {
    return err(26, `Invalid pool id ${param} - range is 0 - ${max}`);
  }
  return id;
}

function withPool(m: SimMiner, param: string, fn: (id: number, url: string) => Status): Answer {
  const id = poolId(m, param);
  if (typeof id !== "number") return { status: id };
  return { status: fn(id, m.slots[id]?.url.text ?? "") };
}

const COMMON: Readonly<Record<string, Command>> = {
  version: {
    privileged: false,
    joinable: true,
    run: (m) => data(22, "CGMiner versions", "VERSION", versionSection(m)),
  },
  config: {
    privileged: false,
    joinable: true,
    run: (m) => data(33, "CGMiner config", "CONFIG", configSection(m)),
  },
  summary: {
    privileged: false,
    joinable: true,
    run: (m) => data(11, "Summary", "SUMMARY", summarySection(m)),
  },
  pools: {
    privileged: false,
    joinable: true,
    run: (m) => data(7, `${m.slots.length} Pool(s)`, "POOLS", poolsSection(m)),
  },
  devs: {
    privileged: false,
    joinable: true,
    run: (m) => data(9, `${m.profile.chains.slots.length} ASC(s)`, "DEVS", devsSection(m)),
  },
  edevs: {
    privileged: false,
    joinable: true,
    run: (m) => data(9, `${m.profile.chains.slots.length} ASC(s)`, "DEVS", devsSection(m)),
  },
  devdetails: {
    privileged: false,
    joinable: true,
    run: (m) => data(69, "Device Details", "DEVDETAILS", devdetailsSection(m)),
  },
  stats: {
    privileged: false,
    joinable: true,
    run: (m) => data(70, "CGMiner stats", "STATS", statsSection(m)),
  },
  estats: {
    privileged: false,
    joinable: true,
    run: (m) => data(70, "CGMiner stats", "STATS", statsSection(m)),
  },
  switchpool: {
    privileged: true,
    joinable: false,
    run: (m, param) =>
      withPool(m, param, (id, url) => {
        m.switchPool(id);
        return ok(27, `Switching to pool ${id}:'${url}'`);
      }),
  },
  enablepool: {
    privileged: true,
    joinable: false,
    run: (m, param) =>
      withPool(m, param, (id, url) => {
        if (m.slots[id]?.enabled) return info(49, `Pool ${id}:'${url}' already enabled`);
        m.enablePool(id);
        return ok(47, `Enabling pool ${id}:'${url}'`);
      }),
  },
  disablepool: {
    privileged: true,
    joinable: false,
    run: (m, param) =>
      withPool(m, param, (id, url) => {
        if (!m.slots[id]?.enabled) return info(50, `Pool ${id}:'${url}' already disabled`);
        if (m.slots.filter((s) => s.enabled).length <= 1) {
          return err(51, `Cannot disable last active pool ${id}:'${url}'`);
        }
        m.disablePool(id);
        return ok(48, `Disabling pool ${id}:'${url}'`);
      }),
  },
  addpool: {
    privileged: true,
    joinable: false,
    run: (m, param) => {
      if (param.trim() === "") return { status: err(52, "Missing addpool details") };
      const [url, user, pass] = param.split(",");
      if (!url || user === undefined || pass === undefined) {
        return { status: err(53, `Invalid addpool details '${param}'`) };
      }
      try {
        const id = m.addPool({ url, user, pass });
        return { status: ok(55, `Added pool ${id}: '${url}'`) };
      } catch {
        return { status: err(53, `Invalid addpool details '${param}'`) };
      }
    },
  },
  removepool: {
    privileged: true,
    joinable: false,
    run: (m, param) =>
      withPool(m, param, (id, url) => {
        if (m.currentSlot === id) return err(67, `Cannot remove active pool ${id}:'${url}'`);
        m.removePool(id);
        return ok(68, `Removed pool ${id}:'${url}'`);
      }),
  },
  // cgminer's own check of this client's write access: 46 when granted, else (as for every
  // privileged command) 45 "Access denied" — what a driver asks before it tries a write.
  privileged: {
    privileged: true,
    joinable: false,
    run: () => ({ status: ok(46, "Privileged access OK") }),
  },
  // bmminer is restarted by its watchdog after quit, so both come back as a restart.
  restart: {
    privileged: true,
    joinable: false,
    run: (m) => ({ status: ok(0, "RESTART"), bare: "RESTART", after: () => m.reboot() }),
  },
  quit: {
    privileged: true,
    joinable: false,
    run: (m) => ({ status: ok(0, "BYE"), bare: "BYE", after: () => m.reboot() }),
  },
};

const BOSMINER: Readonly<Record<string, Command>> = {
  pause: {
    privileged: true,
    joinable: false,
    run: (m) => {
      m.setMode("sleep");
      return { status: ok(131, "Mining paused") };
    },
  },
  resume: {
    privileged: true,
    joinable: false,
    run: (m) => {
      m.setMode("normal");
      return { status: ok(132, "Mining resumed") };
    },
  },
  temps: {
    privileged: false,
    joinable: true,
    run: (m) => data(201, `${m.profile.chains.slots.length} Temp(s)`, "TEMPS", tempsSection(m)),
  },
  fans: {
    privileged: false,
    joinable: true,
    run: (m) => data(202, `${m.profile.fans.slots.length} Fan(s)`, "FANS", fansSection(m)),
  },
  // The status code and message are this simulator's (no public capture shows them).
  tunerstatus: {
    privileged: false,
    joinable: true,
    run: (m) => data(203, "Tuner Status", "TUNERSTATUS", tunerStatusSection(m)),
  },
};

export function commandsFor(m: SimMiner): Readonly<Record<string, Command>> {
  return m.profile.sleep === "pause" ? { ...COMMON, ...BOSMINER } : COMMON;
}

/**
 * The `write-ignored` fault: a pool write answered with its success code and not applied.
 * null for commands it does not touch (and for a bad pool id, still refused as usual).
 */
export function ignoredWrite(m: SimMiner, command: string, param: string): Status | null {
  const codes: Readonly<Record<string, [number, string]>> = {
    switchpool: [27, "Switching to pool"],
    enablepool: [47, "Enabling pool"],
    disablepool: [48, "Disabling pool"],
    removepool: [68, "Removed pool"],
  };
  if (command === "addpool") {
    const url = param.split(",")[0] ?? "";
    return ok(55, `Added pool ${m.slots.length}: '${url}'`);
  }
  const entry = codes[command];
  if (!entry) return null;
  const id = poolId(m, param);
  if (typeof id !== "number") return null;
  return ok(entry[0], `${entry[1]} ${id}:'${m.slots[id]?.url.text ?? ""}'`);
}

/** Whether the firmware accepts `a+b` joins (the S19's does not). */
export function joinsSupported(m: SimMiner): boolean {
  return m.profile.api !== "bmminer-s19";
}

export function envelope(m: SimMiner, answer: Answer): Obj {
  const status = {
    STATUS: answer.status.STATUS,
    When: unixSeconds(m.clock),
    Code: answer.status.Code,
    Msg: answer.status.Msg,
    Description: m.profile.firmware.description,
  };
  const out: Obj = { STATUS: [status] };
  if (answer.section) out[answer.section.name] = answer.section.rows;
  out.id = 1;
  return out;
}
