/**
 * What bench/proxy-scale.ts reads about processes from /proc (Linux only): resident memory
 * (VmRSS, and its peak VmHWM), CPU time (utime + stime) and the open-file limit, and the one
 * thing it changes: its own RLIMIT_NOFILE, raised with util-linux `prlimit` because Node has
 * no setrlimit. Children spawned afterwards inherit the raised limit.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

export interface Memory {
  readonly rss_kib: number;
  readonly hwm_kib: number;
  readonly anon_kib: number;
  readonly file_kib: number;
}

/** VmRSS, VmHWM, RssAnon and RssFile of a live process, in KiB. */
export function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status);
    return m === null ? Number.NaN : Number(m[1]);
  };
  return {
    rss_kib: field("VmRSS"),
    hwm_kib: field("VmHWM"),
    // RSS in two parts: the process's own memory (heap, stacks) and file-backed pages (the
    // Node binary's code that has been touched: shared, and reclaimable under pressure).
    anon_kib: field("RssAnon"),
    file_kib: field("RssFile"),
  };
}

let ticks: number | null = null;

/** Clock ticks per second (CLK_TCK), the unit of utime and stime. */
function clockTicks(): number {
  if (ticks === null) {
    const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
    const n = Number(r.stdout?.trim());
    ticks = Number.isInteger(n) && n > 0 ? n : 100;
  }
  return ticks;
}

/** User + system CPU seconds a process has used so far. */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state), so utime (field 14) and stime (field 15) are 11 and 12.
  return (Number(rest[11]) + Number(rest[12])) / clockTicks();
}

/**
 * User + system CPU seconds used so far by every process whose command name is `comm` (for
 * example the PostgreSQL server and its backends, "postgres"). A process that ends between
 * two readings takes its CPU with it: read around windows in which they all live.
 */
export function cpuSecondsOfCommand(comm: string): number {
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (name === comm) total += cpuSecondsOf(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

export interface FdLimit {
  readonly soft: number;
  readonly hard: number;
}

/** RLIMIT_NOFILE of a process ("unlimited" reads as Infinity). */
export function fdLimitOf(pid: number | "self"): FdLimit {
  const text = readFileSync(`/proc/${pid}/limits`, "utf8");
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  const n = (s: string | undefined) => (s === "unlimited" ? Infinity : Number(s));
  return { soft: n(m?.[1]), hard: n(m?.[2]) };
}

export interface FdRaise {
  readonly before: FdLimit;
  readonly after: FdLimit;
  /** How: "prlimit" when it ran and succeeded, "none" when already enough, else "failed". */
  readonly method: "prlimit" | "none" | "failed";
  readonly error?: string;
}

/**
 * Raises this process's RLIMIT_NOFILE (soft and hard) to `want` with
 * `prlimit --pid <self> --nofile=want:want` (raising the hard limit needs root or
 * CAP_SYS_RESOURCE). Never lowers it. The caller checks `after` against what it needs.
 */
export function raiseOwnFdLimit(want: number): FdRaise {
  const before = fdLimitOf("self");
  if (before.soft >= want && before.hard >= want) return { before, after: before, method: "none" };
  const r = spawnSync("prlimit", ["--pid", String(process.pid), `--nofile=${want}:${want}`], {
    encoding: "utf8",
  });
  const after = fdLimitOf("self");
  if (r.error !== undefined || r.status !== 0) {
    const error = r.error?.message ?? (r.stderr.trim() || `prlimit exited ${r.status}`);
    return { before, after, method: "failed", error };
  }
  return { before, after, method: "prlimit" };
}
