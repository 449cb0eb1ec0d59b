/**
 * Processes as bench/agent.ts starts them for start-to-ready and memory: spawned, timed from
 * just before `spawn()` to the first complete stdout line (the `data` event that holds its
 * newline, timestamped before anything is parsed), then stopped with SIGTERM and waited for.
 *
 * The agent is started the two ways it can be: `source` is `./bin/agentd` (a shell script
 * that execs the pinned Node on cli/main.ts: type stripping at every start, what a checkout
 * runs); `built` is the pinned Node with bin/agentd's flags on dist/cli/main.js (`npm run
 * build`: plain JavaScript, what packaging ships). The baselines run the same Node binary
 * with the same flags.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";

export const REPO = resolve(import.meta.dirname, "..", "..");
export const AGENTD = join(REPO, "bin", "agentd");
/** The Node binary bin/agentd runs (the `node` devDependency). */
export const NODE = join(REPO, "node_modules", ".bin", "node");
/** bin/agentd's flags for every verb but `cp` (1 MiB young generation). */
export const NODE_FLAGS = ["--disable-warning=ExperimentalWarning", "--max-semi-space-size=1"];

export type Entry = "source" | "built";

export interface Command {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
}

export function baseEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root" };
}

/**
 * The agentd CLI by entry, with `nodeOptions` (e.g. --cpu-prof) given to Node: in
 * NODE_OPTIONS for the script, on the command line for the built entry.
 */
export function agentdCommand(entry: Entry, nodeOptions: readonly string[] = []): Command {
  if (entry === "source") {
    return {
      command: AGENTD,
      args: [],
      env:
        nodeOptions.length === 0
          ? baseEnv()
          : { ...baseEnv(), NODE_OPTIONS: nodeOptions.join(" ") },
    };
  }
  return {
    command: NODE,
    args: [...NODE_FLAGS, ...nodeOptions, join(REPO, "dist", "cli", "main.js")],
    env: baseEnv(),
  };
}

/** The module graph of the CLI (cli/program.ts or its build), for the import-only figures. */
export function programModule(entry: Entry): string {
  return entry === "source"
    ? join(REPO, "cli", "program.ts")
    : join(REPO, "dist", "cli", "program.js");
}

export interface Timed {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** From just before spawn() to the first complete stdout line, ms. */
  readonly ms: number;
  readonly line: string;
  /** Date.now() just before spawn(), to compare with the agent's audit records. */
  readonly spawnedWall: number;
  stderrTail(): string;
  /** SIGTERM (SIGKILL after 10 s); resolves with the exit code and how long it took, ms. */
  stop(): Promise<{ code: number | null; ms: number }>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

export function spawnTimed(
  c: Command,
  args: readonly string[],
  timeoutMs = 30_000,
): Promise<Timed> {
  const spawnedWall = Date.now();
  const t0 = performance.now();
  const proc = spawn(c.command, [...c.args, ...args], {
    env: c.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(proc);
  const exited = new Promise<number | null>((r) =>
    proc.once("exit", (code) => {
      live.delete(proc);
      r(code);
    }),
  );
  let tail = "";
  proc.stderr?.setEncoding("utf8");
  proc.stderr?.on("data", (d: string) => {
    tail = (tail + d).slice(-4000);
  });
  return new Promise((resolveTimed, reject) => {
    let out = "";
    let done = false;
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(
        new Error(`${c.command} ${args.join(" ")}: no stdout line in ${timeoutMs} ms: ${tail}`),
      );
    }, timeoutMs);
    // "close", not "exit": a process that prints its line and exits at once (the baselines)
    // may exit before its stdout has been read.
    proc.once("close", (code) => {
      if (done) return;
      clearTimeout(timer);
      reject(new Error(`${c.command} ${args.join(" ")} exited ${code} before a line: ${tail}`));
    });
    proc.stdout?.setEncoding("utf8");
    proc.stdout?.on("data", (d: string) => {
      if (done) return;
      const t1 = performance.now();
      out += d;
      const nl = out.indexOf("\n");
      if (nl < 0) return;
      done = true;
      clearTimeout(timer);
      resolveTimed({
        proc,
        pid: proc.pid as number,
        ms: t1 - t0,
        line: out.slice(0, nl),
        spawnedWall,
        stderrTail: () => tail,
        stop: async () => {
          const s = performance.now();
          if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
          const kill = setTimeout(() => proc.kill("SIGKILL"), 10_000);
          const code = await exited;
          clearTimeout(kill);
          return { code, ms: performance.now() - s };
        },
      });
    });
  });
}
