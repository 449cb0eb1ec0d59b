/**
 * The processes bench/proxy-scale.ts runs next to itself — the sim pool, the proxy, the
 * baseline server — each started with its ready line (the first stdout line, JSON) awaited,
 * later stdout lines handed to listeners, the end of stderr kept for error messages, and
 * stopped with SIGTERM (SIGKILL if it lingers). Every child is killed if the bench exits.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly ready: Record<string, unknown>;
  /** Listens to every later stdout line. */
  onLine(f: (line: string) => void): void;
  /** Writes one line to its stdin. */
  send(line: string): void;
  stderrTail(): string;
  stop(): Promise<number | null>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) if (c.exitCode === null) c.kill("SIGKILL");
});

export function startChild(
  name: string,
  command: string,
  args: readonly string[],
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<Child> {
  const proc = spawn(command, args, { env, stdio: ["pipe", "pipe", "pipe"] });
  live.add(proc);
  let tail = "";
  proc.stderr?.setEncoding("utf8");
  proc.stderr?.on("data", (d: string) => {
    tail = (tail + d).slice(-4000);
  });
  const listeners: ((line: string) => void)[] = [];
  const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  exited.then(() => live.delete(proc));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`${name}: no ready line within ${timeoutMs} ms: ${tail}`));
    }, timeoutMs);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited ${code} before its ready line: ${tail}`));
    });
    let first = true;
    lines.on("line", (line) => {
      if (!first) {
        for (const f of listeners) f(line);
        return;
      }
      first = false;
      clearTimeout(timer);
      let ready: Record<string, unknown>;
      try {
        ready = JSON.parse(line) as Record<string, unknown>;
      } catch {
        reject(new Error(`${name}: first stdout line is not JSON: ${line.slice(0, 200)}`));
        return;
      }
      resolve({
        name,
        proc,
        pid: proc.pid as number,
        ready,
        onLine: (f) => void listeners.push(f),
        send: (l) => void proc.stdin?.write(`${l}\n`),
        stderrTail: () => tail,
        stop: async () => {
          if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
          proc.kill("SIGTERM");
          const kill = setTimeout(() => proc.kill("SIGKILL"), 10_000);
          const code = await exited;
          clearTimeout(kill);
          return code;
        },
      });
    });
  });
}
