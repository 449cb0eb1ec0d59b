/**
 * The process driver: the same services as native child processes, where there is no Docker
 * Engine API to run containers on (issue 7): a ServiceDriver the reconciler drives exactly as
 * it drives docker-driver.ts, so health, backoff and crash-loop semantics are the
 * reconciler's and identical on both drivers.
 *
 * IMAGE IDS. The owner's consent allows an image id, `sha256:<64 hex>`. For this driver the
 * "image" of a service is the executable file its `spec.command[0]` resolves to — an absolute
 * path as is, a bare name looked up on the PATH the process gets (the spec's `env.PATH`, else
 * the agent's; relative directories on it are skipped; a relative path with a slash is
 * refused) — and its id is `sha256:` + the SHA-256 of that file's bytes (symlinks followed),
 * i.e. `sha256sum $(command -v bitcoind)`. So:
 *   - `hasImage(id)` is true only if the executable of one of the specs this driver may run
 *     (`specs` option, plus the executables of the services it already created) hashes to id;
 *   - `create` refuses (throws) when the executable does not hash to the image id it is given,
 *     and `start` checks again before every spawn: an executable replaced on disk (an upgrade,
 *     a tampered file) is not the allowed one and does not run until the consent allows its id.
 *   Hashes are cached by (path, device, inode, size, mtime, ctime), so a 100 MB bitcoind is
 *   read once, not on every call; any change of the file changes the key. What this does not
 *   cover: a script's interpreter and the shared libraries are not hashed, and a file swapped
 *   in the instant between the check and exec would run (whoever can write the executable can
 *   equally write agentd itself).
 *
 * A "CONTAINER" is one record: created (not running), started (a process), exited (not
 * running, can be started again), removed (forgotten). A start spawns `spec.command` as argv
 * — never through a shell — in its own session and process group (`detached`), so it
 * survives an agent restart and a stop signals the whole group; when the leader exits, what
 * is left of its group is killed, as a container's processes die with its init.
 *   - environment: only `spec.env` and the `secretEnv` given to create, plus `PATH` (the
 *     agent's) when the spec sets none; the agent's own environment is never inherited.
 *     Secret values are held in memory only: a stopped record whose secrets were lost with an
 *     agent restart is listed with an empty spec hash, so the planner replaces it.
 *   - working directory: the first volume's source (an absolute host path, created if
 *     missing like a bind mount's), else `/`. Volumes are not mounted and ports are not
 *     published: the process sees the host's file system and listens where its command says,
 *     so a spec for this driver names host paths and host ports.
 *   - output: stdout and stderr go to `<stateDir>/logs/<id>.log` (a file, not a pipe: a pipe's
 *     reader dies with the agent and the service's next write would kill it with SIGPIPE, or
 *     block it). The driver reads that file into a ring of the last `logLines` lines (default
 *     500) that `logs()` answers from, and empties the file once it has read past
 *     `logFileBytes` (default 256 KiB), so the disk use is bounded; a line written in the
 *     instant between that read and the truncation can be lost.
 *   - exit codes: a child's own code, or 128 + the signal number when a signal ended it
 *     (SIGKILL: 137, SIGTERM: 143), as Docker reports them. A process adopted after an agent
 *     restart is not our child: its end is noticed by polling /proc every `pollMs` (500 ms),
 *     with exit code null (unknown).
 *
 * OWNERSHIP. `<stateDir>/processes.json` (a versioned state file, written atomically, mode
 * 0600) records each service process agentd created: id, kind, worker, image id, spec hash,
 * how to run it, and while it runs its pid, its start time (field 22 of /proc/<pid>/stat,
 * clock ticks since boot) and the boot id. It plays the role of Docker's labels: `list()`
 * reports only this worker's records, nothing else is ever touched. After an agent restart a
 * record whose pid still runs with the same start time on the same boot is adopted (running);
 * any other is reported as not running, and its pid is never signalled again — a pid reused by
 * another process has another start time. A process group is signalled only while its leader
 * is ours or gone (its number then stays reserved by the kernel while any member lives). One
 * agent per state directory.
 *
 * NOT ENFORCED by this driver (containers enforce them; here they are documented gaps):
 * `memoryBytes` and `cpus` are ignored (that needs cgroups — `prlimit --as` would limit
 * address space, not memory, and break programs that map more than they use);
 * `readOnlyRoot` is ignored (the process can write wherever its user can); `ports` and
 * volume targets as above. `spec.user` IS applied: "uid:gid" numbers, or a name (optionally
 * "name:group") resolved with `id -u`/`id -g`/`getent group`; setting another user needs
 * agentd to run as root, and create refuses clearly otherwise. With `user` null the service
 * runs as agentd's own user.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  accessSync,
  closeSync,
  constants,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
  unlinkSync,
} from "node:fs";
import { open } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import { isAbsolute, join } from "node:path";
import { type Clock, systemClock } from "../lib/clock.ts";
import { fail } from "../lib/errors.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";
import type { Logger } from "../lib/log/logger.ts";
import type { Timers } from "../lib/timers.ts";
import type { DriverEvent, EventSubscription, ServiceDriver } from "./driver.ts";
import type { Actual } from "./plan.ts";
import { IMAGE_ID, SERVICE_KINDS, type ServiceKind, type ServiceSpec } from "./spec.ts";

export interface ProcessDriverOptions {
  /** Where processes.json and the output files live (created 0700 if missing). */
  readonly stateDir: string;
  /** Like Docker's worker label: only this worker's records are listed and touched. */
  readonly worker: string;
  /** For createdAt (default: the system clock). */
  readonly clock?: Clock;
  /** The poll and the waits for a stopped process (production: backgroundTimers). */
  readonly timers: Timers;
  /** Lines of output kept per service for logs() (default 500). */
  readonly logLines?: number;
  /**
   * The specs this driver may be asked to run (the supervisor's): hasImage looks at their
   * executables (and those of the services already created), nowhere else.
   */
  readonly specs?: () => Iterable<ServiceSpec>;
  readonly logger?: Logger;
  /** How often adopted processes are checked and output files read (default 500 ms). */
  readonly pollMs?: number;
  /** An output file is emptied once the ring has read past this many bytes (default 256 KiB). */
  readonly logFileBytes?: number;
  /** The PATH used when a spec sets none (default: the agent's). */
  readonly path?: string;
  /** The uid and gid agentd runs as (default: the process's; injected for tests). */
  readonly uid?: number;
  readonly gid?: number;
}

export interface ProcessDriver extends ServiceDriver {
  /** The pid of a running service, null when it does not run (or is unknown). */
  pid(id: string): number | null;
  /**
   * Stops watching — timers, child handlers, event listeners — without touching any process
   * or writing any state: what happens to the services when the agent exits.
   */
  close(): void;
}

/** One service process agentd created, as processes.json keeps it. */
interface ProcessRecord {
  id: string;
  kind: ServiceKind;
  worker: string;
  image: string;
  hash: string;
  /** The resolved executable (what is hashed and spawned) and argv[0] as the spec gave it. */
  program: string;
  argv0: string;
  args: string[];
  /** The spec's environment (no secrets) and the names of the secret variables. */
  env: Record<string, string>;
  secretKeys: string[];
  cwd: string | null;
  uid: number | null;
  gid: number | null;
  createdAt: number;
  /** While it runs: pid, /proc start time (clock ticks since boot), and the boot it ran in. */
  pid: number | null;
  starttime: number | null;
  bootId: string | null;
}

interface Entry {
  rec: ProcessRecord;
  /** Our own child (spawned by this driver); null for an adopted or stopped process. */
  child: ChildProcess | null;
  /** Secret environment given to create; null when unknown (lost with an agent restart). */
  secretEnv: Record<string, string> | null;
  ring: string[];
  partial: string;
  /** How far the output file has been read. */
  offset: number;
  /** Called once when the running process is found dead. */
  waiters: Set<() => void>;
}

const STATE_FORMAT = 1;
const STATE_FILE = "processes.json";
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** A line longer than this is cut into pieces in the ring. */
const MAX_LINE = 16 * 1024;
/** How long a SIGKILLed group may take to be gone before stop/remove give up. */
const KILL_WAIT_MS = 5_000;
/** How often a wait for an adopted process (not our child: no exit event) looks at /proc. */
const ADOPTED_POLL_MS = 20;

export function processDriver(o: ProcessDriverOptions): ProcessDriver {
  const timers = o.timers;
  const clock = o.clock ?? systemClock;
  const logLines = Math.max(1, o.logLines ?? 500);
  const pollMs = o.pollMs ?? 500;
  const logFileBytes = o.logFileBytes ?? 256 * 1024;
  const agentPath = o.path ?? process.env.PATH ?? DEFAULT_PATH;
  const selfUid = o.uid ?? (typeof process.getuid === "function" ? process.getuid() : 0);
  const selfGid = o.gid ?? (typeof process.getgid === "function" ? process.getgid() : 0);
  const statePath = join(o.stateDir, STATE_FILE);
  const logDir = join(o.stateDir, "logs");
  const bootId = readBootId();

  const entries = new Map<string, Entry>();
  /** Records of other workers in the same file: kept as they are. */
  const foreign: ProcessRecord[] = [];
  let loaded = false;
  let closed = false;
  const listeners = new Set<(e: DriverEvent) => void>();
  const timer = timers.setInterval(() => tick(), pollMs);

  const warn = (obj: Record<string, unknown>, msg: string) => o.logger?.warn(obj, msg);

  // ---- state ----------------------------------------------------------------------------------

  function load(): void {
    if (loaded) return;
    mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
    mkdirSync(logDir, { recursive: true, mode: 0o700 });
    const file = readStateFile(statePath, { format: STATE_FORMAT });
    const records = file === undefined ? [] : parseRecords(file.data, statePath);
    let changed = false;
    for (const rec of records) {
      if (rec.worker !== o.worker) {
        foreign.push(rec);
        continue;
      }
      const e: Entry = {
        rec,
        child: null,
        secretEnv: rec.secretKeys.length === 0 ? {} : null,
        ring: [],
        partial: "",
        offset: 0,
        waiters: new Set(),
      };
      entries.set(rec.id, e);
      if (rec.pid !== null && !ownsLiveProcess(rec)) {
        // Gone while the agent was away (or a reboot, or a reused pid): not running, and its
        // pid is never signalled. Its end was not seen, so there is no die event for it.
        rec.pid = null;
        rec.starttime = null;
        rec.bootId = null;
        changed = true;
      }
      // What it wrote while the agent was away, as far as the ring holds.
      readOutput(e, rec.pid === null);
    }
    loaded = true;
    if (changed) save();
  }

  function save(): void {
    const records = [...foreign, ...[...entries.values()].map((e) => e.rec)];
    writeStateFile(statePath, STATE_FORMAT, { records });
  }

  /** From an exit handler or the poller: a failure to write is logged, never thrown. */
  function saveQuietly(): void {
    try {
      save();
    } catch (err) {
      warn({ err }, "could not write the process state file");
    }
  }

  function entry(id: string): Entry {
    load();
    const e = entries.get(id);
    if (e === undefined) {
      throw fail("AGENTD_E_INTERNAL", `no service process ${id}`, { id });
    }
    return e;
  }

  // ---- processes ------------------------------------------------------------------------------

  /** Whether rec's pid is, on this boot, still the process we started (and not a zombie). */
  function ownsLiveProcess(rec: ProcessRecord): boolean {
    if (rec.pid === null || rec.starttime === null || rec.bootId !== bootId) return false;
    const st = readProcStat(rec.pid);
    return st !== null && st.starttime === rec.starttime && st.state !== "Z";
  }

  /** Whether it runs now; an adopted process found dead is marked so (and `die` emitted). */
  function alive(e: Entry): boolean {
    if (e.rec.pid === null) return false;
    if (e.child !== null) return true; // our child: its exit handler clears pid
    if (ownsLiveProcess(e.rec)) return true;
    died(e, null);
    return false;
  }

  /**
   * Signals the process group of rec's pid, never anything else: not when the pid now belongs
   * to a process with another start time (or the record is from another boot).
   */
  function signalGroup(rec: ProcessRecord, signal: NodeJS.Signals): void {
    const { pid, starttime } = rec;
    if (pid === null || starttime === null || rec.bootId !== bootId) return;
    const st = readProcStat(pid);
    // A process with that pid and another start time: ours is gone and the number reused, so
    // no process of our group can exist (the kernel keeps a group's number while it has one).
    if (st !== null && st.starttime !== starttime) return;
    try {
      process.kill(-pid, signal);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ESRCH")
        warn({ err, pid, signal }, "could not signal a service's process group");
    }
  }

  /** The leader is gone: what is left of its group goes too, then the record says so. */
  function died(e: Entry, exitCode: number | null): void {
    if (e.rec.pid === null) return;
    signalGroup(e.rec, "SIGKILL");
    readOutput(e, true);
    e.rec.pid = null;
    e.rec.starttime = null;
    e.rec.bootId = null;
    e.child = null;
    saveQuietly();
    for (const w of e.waiters) w();
    e.waiters.clear();
    emit({ kind: e.rec.kind, id: e.rec.id, action: "die", exitCode });
  }

  /** Resolves true when e is not running, false after ms. */
  async function waitDead(e: Entry, ms: number): Promise<boolean> {
    if (ms <= 0) return !alive(e);
    let expired = false;
    let wake: (() => void) | null = null;
    const deadline = timers.setTimeout(() => {
      expired = true;
      wake?.();
    }, ms);
    try {
      while (alive(e)) {
        if (expired) return false;
        await new Promise<void>((resolve) => {
          const done = () => {
            if (poll !== null) timers.clearTimeout(poll);
            e.waiters.delete(done);
            wake = null;
            resolve();
          };
          // our child's exit resolves at once (a waiter); an adopted process is polled
          const poll = e.child === null ? timers.setTimeout(done, ADOPTED_POLL_MS) : null;
          e.waiters.add(done);
          wake = done;
        });
      }
      return true;
    } finally {
      timers.clearTimeout(deadline);
    }
  }

  function emit(ev: DriverEvent): void {
    for (const l of listeners) {
      try {
        l(ev);
      } catch (err) {
        warn({ err }, "a driver event listener threw");
      }
    }
  }

  function tick(): void {
    if (closed || !loaded) return;
    for (const e of entries.values()) {
      if (e.rec.pid !== null && e.child === null) alive(e); // adopted: noticed within pollMs
      if (e.rec.pid !== null) readOutput(e, false);
    }
  }

  // ---- output ---------------------------------------------------------------------------------

  function logPath(id: string): string {
    return join(logDir, `${id}.log`);
  }

  /** Reads what the process wrote since last time into the ring; empties a big file. */
  function readOutput(e: Entry, flush: boolean): void {
    let fd: number;
    try {
      fd = openSync(logPath(e.rec.id), constants.O_RDWR);
    } catch {
      return; // not started yet, or removed
    }
    try {
      const size = fstatSync(fd).size;
      if (size < e.offset) e.offset = 0; // emptied by someone else
      // More than the ring can hold arrived: skip to what it would keep anyway.
      const from = Math.max(e.offset, size - logFileBytes);
      if (from > e.offset) e.partial = "";
      if (size > from) {
        const buf = Buffer.alloc(size - from);
        let got = 0;
        while (got < buf.length) {
          const n = readSync(fd, buf, got, buf.length - got, from + got);
          if (n <= 0) break;
          got += n;
        }
        e.offset = from + got;
        addOutput(e, buf.subarray(0, got).toString("utf8"));
      }
      if (flush && e.partial !== "") {
        pushLine(e, e.partial);
        e.partial = "";
      }
      if (e.offset >= logFileBytes) {
        // Everything is in the ring; the writer appends (O_APPEND) at the new end.
        ftruncateSync(fd, 0);
        e.offset = 0;
      }
    } catch (err) {
      warn({ err, id: e.rec.id }, "could not read a service's output");
    } finally {
      closeSync(fd);
    }
  }

  function addOutput(e: Entry, text: string): void {
    const parts = (e.partial + text).split("\n");
    e.partial = parts.pop() ?? "";
    for (const line of parts) pushLine(e, line);
    while (e.partial.length > MAX_LINE) {
      pushLine(e, e.partial.slice(0, MAX_LINE));
      e.partial = e.partial.slice(MAX_LINE);
    }
  }

  function pushLine(e: Entry, line: string): void {
    const l = line.endsWith("\r") ? line.slice(0, -1) : line;
    if (l === "") return; // as docker-driver.ts: empty lines are dropped
    e.ring.push(l);
    if (e.ring.length > logLines) e.ring.splice(0, e.ring.length - logLines);
  }

  // ---- executables ----------------------------------------------------------------------------

  /** The executables this driver may be asked to run. */
  function candidates(): string[] {
    const out = new Set<string>();
    for (const spec of o.specs?.() ?? []) {
      const p = resolveExecutable(spec.command[0] ?? "", spec.env.PATH ?? agentPath);
      if (p !== null) out.add(p);
    }
    for (const e of entries.values()) out.add(e.rec.program);
    return [...out];
  }

  // ---- the driver -----------------------------------------------------------------------------

  const driver: ProcessDriver = {
    name: "processes",

    async list(): Promise<Actual[]> {
      load();
      const out: Actual[] = [];
      for (const e of entries.values()) {
        const running = alive(e);
        out.push({
          id: e.rec.id,
          kind: e.rec.kind,
          image: e.rec.image,
          // Its secrets were lost with an agent restart: it cannot be started as it was, so
          // the planner sees an outdated one and replaces it.
          hash: !running && e.secretEnv === null ? "" : e.rec.hash,
          running,
          createdAt: e.rec.createdAt,
        });
      }
      return out;
    },

    async hasImage(image) {
      if (!IMAGE_ID.test(image)) return false;
      load();
      for (const p of candidates()) {
        try {
          if ((await executableImageId(p)) === image) return true;
        } catch {
          // not readable: not this image
        }
      }
      return false;
    },

    async create({ kind, spec, image, hash, secretEnv }) {
      load();
      if (!IMAGE_ID.test(image)) {
        throw fail("AGENTD_E_CONFIG_RANGE", `${kind}: ${image} is not an image id`, { kind });
      }
      const argv0 = spec.command[0];
      if (argv0 === undefined || argv0 === "") {
        throw fail("AGENTD_E_CONFIG_RANGE", `${kind}: the spec has no command to run`, { kind });
      }
      const program = resolveExecutable(argv0, spec.env.PATH ?? agentPath);
      if (program === null) {
        throw fail(
          "AGENTD_E_IO",
          `${kind}: ${JSON.stringify(argv0)} is not an executable file (an absolute path, or a name on PATH)`,
          { kind, path: argv0, op: "resolve", errno: "ENOENT" },
        );
      }
      const found = await executableImageId(program);
      if (found !== image) throw mismatch(kind, program, image, found);
      const first = spec.volumes[0];
      if (first !== undefined && !isAbsolute(first.source)) {
        throw fail(
          "AGENTD_E_CONFIG_RANGE",
          `${kind}: volume source ${JSON.stringify(first.source)} is not an absolute host path (named volumes need the Docker driver)`,
          { kind },
        );
      }
      const user = spec.user === null ? null : resolveUser(spec.user, kind);
      if (user !== null && (user.uid !== selfUid || user.gid !== selfGid) && selfUid !== 0) {
        throw fail(
          "AGENTD_E_CONFIG_RANGE",
          `${kind}: running as user ${JSON.stringify(spec.user)} needs agentd to run as root (it runs as uid ${selfUid})`,
          { kind, user: spec.user, uid: selfUid },
        );
      }
      const same = user !== null && user.uid === selfUid && user.gid === selfGid;
      const rec: ProcessRecord = {
        id: randomBytes(16).toString("hex"),
        kind,
        worker: o.worker,
        image,
        hash,
        program,
        argv0,
        args: spec.command.slice(1),
        env: { ...spec.env },
        secretKeys: Object.keys(secretEnv ?? {}).sort(),
        cwd: first?.source ?? null,
        uid: user === null || same ? null : user.uid,
        gid: user === null || same ? null : user.gid,
        createdAt: clock.now(),
        pid: null,
        starttime: null,
        bootId: null,
      };
      entries.set(rec.id, {
        rec,
        child: null,
        secretEnv: { ...(secretEnv ?? {}) },
        ring: [],
        partial: "",
        offset: 0,
        waiters: new Set(),
      });
      try {
        save();
      } catch (err) {
        entries.delete(rec.id);
        throw err;
      }
      return rec.id;
    },

    async start(id) {
      const e = entry(id);
      if (alive(e)) return;
      const rec = e.rec;
      if (e.secretEnv === null) {
        throw fail(
          "AGENTD_E_CONFIG_RANGE",
          `${rec.kind}: its secret environment was lost with an agent restart; remove it and create it again`,
          { kind: rec.kind, id },
        );
      }
      // The allowed executable, still: checked before every spawn.
      const found = await executableImageId(rec.program);
      if (found !== rec.image) throw mismatch(rec.kind, rec.program, rec.image, found);
      if (alive(e)) return; // started meanwhile
      if (rec.cwd !== null) mkdirSync(rec.cwd, { recursive: true });
      readOutput(e, true); // what an earlier run left, before this one appends
      const out = openSync(
        logPath(id),
        constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT,
        0o600,
      );
      let child: ChildProcess;
      try {
        child = spawn(rec.program, rec.args, {
          argv0: rec.argv0,
          cwd: rec.cwd ?? "/",
          env: { PATH: agentPath, ...rec.env, ...e.secretEnv },
          stdio: ["ignore", out, out],
          detached: true,
          ...(rec.uid === null ? {} : { uid: rec.uid }),
          ...(rec.gid === null ? {} : { gid: rec.gid }),
        });
      } finally {
        closeSync(out); // the child has its own copy
      }
      const pid = child.pid;
      if (pid === undefined) {
        // exec failed (ENOENT, EACCES, EPERM): reported on the next tick
        const err = await new Promise<unknown>((resolve) => child.once("error", resolve));
        throw fail(
          "AGENTD_E_IO",
          `${rec.kind}: cannot run ${rec.program}: ${err instanceof Error ? err.message : String(err)}`,
          { kind: rec.kind, path: rec.program, op: "spawn" },
          err,
        );
      }
      child.on("error", (err) => warn({ err, id }, "a service process reported an error"));
      // Read now, before the event loop can reap it: alive or a zombie, /proc has it.
      const st = readProcStat(pid);
      rec.pid = pid;
      rec.starttime = st?.starttime ?? null;
      rec.bootId = bootId;
      e.child = child;
      child.once("exit", (code, signal) => {
        if (closed || e.child !== child) return;
        const n = signal === null ? null : osConstants.signals[signal];
        died(e, code ?? (n === undefined || n === null ? null : 128 + n));
      });
      child.unref();
      try {
        save();
      } catch (err) {
        // not recorded, so not ours after a restart: do not leave it running
        signalGroup(rec, "SIGKILL");
        throw err;
      }
      emit({ kind: rec.kind, id, action: "start", exitCode: null });
    },

    async stop(id, timeoutS) {
      const e = entry(id);
      if (!alive(e)) return;
      signalGroup(e.rec, "SIGTERM");
      if (!(await waitDead(e, Math.max(0, timeoutS) * 1000))) {
        signalGroup(e.rec, "SIGKILL");
        if (!(await waitDead(e, KILL_WAIT_MS))) {
          throw fail("AGENTD_E_INTERNAL", `${e.rec.kind}: still running after SIGKILL`, { id });
        }
      }
      emit({ kind: e.rec.kind, id, action: "stop", exitCode: null });
    },

    async remove(id) {
      load();
      const e = entries.get(id);
      if (e === undefined) return; // as Docker's 404: already gone
      if (alive(e)) {
        // as Docker's forced removal: killed, not asked
        signalGroup(e.rec, "SIGKILL");
        if (!(await waitDead(e, KILL_WAIT_MS))) {
          throw fail("AGENTD_E_INTERNAL", `${e.rec.kind}: still running after SIGKILL`, { id });
        }
      }
      entries.delete(id);
      save();
      try {
        unlinkSync(logPath(id));
      } catch {
        // never started, or already gone
      }
      emit({ kind: e.rec.kind, id, action: "destroy", exitCode: null });
    },

    async logs(id, lines) {
      const e = entry(id);
      readOutput(e, !alive(e));
      return lines <= 0 ? [] : e.ring.slice(-lines);
    },

    events(onEvent, _onEnd): EventSubscription {
      // In-process: the stream never ends, so onEnd is never called.
      listeners.add(onEvent);
      return { close: () => listeners.delete(onEvent) };
    },

    async ping() {},

    pid(id) {
      const e = entries.get(id);
      return e !== undefined && alive(e) ? e.rec.pid : null;
    },

    close() {
      closed = true;
      timers.clearInterval(timer);
      listeners.clear();
      for (const e of entries.values()) e.child = null;
    },
  };
  return driver;
}

// ---- helpers, exported for tests and for `agentd` to show an executable's image id -------------

/**
 * The executable a command name runs: an absolute path as is, a bare name on `path`'s
 * absolute directories; null when there is none (or the name is a relative path).
 */
export function resolveExecutable(command: string, path: string): string | null {
  if (command === "") return null;
  if (command.includes("/")) return isAbsolute(command) && isExecutable(command) ? command : null;
  for (const dir of path.split(":")) {
    if (!isAbsolute(dir)) continue;
    const p = join(dir, command);
    if (isExecutable(p)) return p;
  }
  return null;
}

function isExecutable(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** path → the file identity it was hashed at, and the id. Keyed so any change misses. */
const hashCache = new Map<string, { readonly key: string; readonly id: Promise<string> }>();

/**
 * `sha256:<hex>` of the file at `path` (symlinks followed): the image id of a process service.
 * Cached by (device, inode, size, mtime, ctime): a replaced or rewritten file is hashed again.
 */
export async function executableImageId(path: string): Promise<string> {
  const fh = await open(path, "r");
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) {
      throw fail("AGENTD_E_FILE_NOT_REGULAR", `${path}: not a regular file`, { path });
    }
    const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    const hit = hashCache.get(path);
    if (hit !== undefined && hit.key === key) return await hit.id;
    const id = (async () => {
      const h = createHash("sha256");
      const buf = Buffer.alloc(1024 * 1024);
      let pos = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        h.update(buf.subarray(0, bytesRead));
        pos += bytesRead;
      }
      return `sha256:${h.digest("hex")}`;
    })();
    hashCache.set(path, { key, id });
    try {
      return await id;
    } catch (err) {
      hashCache.delete(path);
      throw err;
    }
  } finally {
    await fh.close();
  }
}

function mismatch(kind: ServiceKind, program: string, image: string, found: string) {
  return fail(
    "AGENTD_E_SERVICE_IMAGE_MISMATCH",
    `${kind}: ${program} is ${found}, not the allowed image ${image} (an executable replaced on disk is not the allowed one)`,
    { kind, path: program, image, found },
  );
}

interface ProcStat {
  readonly state: string;
  readonly pgrp: number;
  readonly starttime: number;
}

/** /proc/<pid>/stat: state, process group and start time; null when there is no such pid. */
export function readProcStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
  // stime cutime cstime priority nice threads itrealvalue starttime …"; comm may hold spaces
  // and parentheses, so fields are counted after the last ")".
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const starttime = Number(f[19]);
  const pgrp = Number(f[2]);
  if (f[0] === undefined || !Number.isSafeInteger(starttime) || !Number.isSafeInteger(pgrp)) {
    return null;
  }
  return { state: f[0], pgrp, starttime };
}

function readBootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "";
  }
}

/** "uid:gid" numbers, or "name" / "name:group" resolved on this host (never through a shell). */
function resolveUser(user: string, kind: ServiceKind): { uid: number; gid: number } {
  const bad = (why: string) =>
    fail("AGENTD_E_CONFIG_RANGE", `${kind}: user ${JSON.stringify(user)}: ${why}`, { kind, user });
  const parts = user.split(":");
  const [u, g] = parts;
  if (parts.length > 2 || u === undefined || u === "" || g === "") {
    throw bad('expected "uid:gid" or a user name (optionally "name:group")');
  }
  const num = /^[0-9]{1,10}$/;
  const run = (file: string, args: string[]): string => {
    try {
      return execFileSync(file, args, { encoding: "utf8", timeout: 5_000, stdio: "pipe" }).trim();
    } catch {
      throw bad(`${file} ${args.join(" ")} found no such entry`);
    }
  };
  const uid = num.test(u) ? Number(u) : Number(run("id", ["-u", "--", u]));
  let gid: number;
  if (g !== undefined) {
    gid = num.test(g) ? Number(g) : Number(run("getent", ["group", g]).split(":")[2]);
  } else if (num.test(u)) {
    throw bad('a numeric uid needs its gid too ("uid:gid")');
  } else {
    gid = Number(run("id", ["-g", "--", u]));
  }
  if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid) || uid < 0 || gid < 0) {
    throw bad("not resolvable to numbers");
  }
  return { uid, gid };
}

/** processes.json's records, checked member by member: a damaged file is refused, not guessed. */
function parseRecords(data: unknown, path: string): ProcessRecord[] {
  const corrupt = (why: string) =>
    fail("AGENTD_E_FILE_CORRUPT", `${path}: not a whole process state file: ${why}`, { path });
  const records = (data as { records?: unknown } | null)?.records;
  if (!Array.isArray(records)) throw corrupt("no records");
  const str = (v: unknown) => typeof v === "string";
  const int = (v: unknown) => Number.isSafeInteger(v);
  const intOrNull = (v: unknown) => v === null || int(v);
  const strMap = (v: unknown) =>
    typeof v === "object" && v !== null && !Array.isArray(v) && Object.values(v).every(str);
  const strList = (v: unknown) => Array.isArray(v) && v.every(str);
  return records.map((r: unknown, i) => {
    const x = r as Record<string, unknown>;
    const ok =
      typeof r === "object" &&
      r !== null &&
      str(x.id) &&
      (SERVICE_KINDS as readonly unknown[]).includes(x.kind) &&
      str(x.worker) &&
      str(x.image) &&
      str(x.hash) &&
      str(x.program) &&
      str(x.argv0) &&
      strList(x.args) &&
      strMap(x.env) &&
      strList(x.secretKeys) &&
      (x.cwd === null || str(x.cwd)) &&
      intOrNull(x.uid) &&
      intOrNull(x.gid) &&
      int(x.createdAt) &&
      intOrNull(x.pid) &&
      intOrNull(x.starttime) &&
      (x.bootId === null || str(x.bootId));
    if (!ok) throw corrupt(`record ${i} is malformed`);
    return { ...(x as unknown as ProcessRecord) };
  });
}
