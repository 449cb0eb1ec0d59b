/**
 * The processes bench/supervisor.ts runs beside itself, each with an IPC channel: the
 * supervisor (bench/supervisor/runner.ts), the same modules imported only, and a trivial Node
 * process. All run on the Node binary bin/agentd runs, with its flags (bench/agent/spawn.ts),
 * so that CPU and memory compare. Each is awaited until it sends `{type:"ready"}`, asked by
 * request/reply messages (`{id, op, …}` → `{type:"reply", id, …}`), and stopped with a `close`
 * request (SIGKILL if it does not exit in 10 s). Every child is killed if the bench exits.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { baseEnv, NODE, NODE_FLAGS } from "../agent/spawn.ts";

export interface IpcChild {
  readonly name: string;
  readonly pid: number;
  request<T = Record<string, unknown>>(
    op: string,
    args?: Record<string, unknown>,
    timeoutMs?: number,
  ): Promise<T>;
  /** Every message that is not a reply. */
  onMessage(f: (m: Record<string, unknown>) => void): void;
  stderrTail(): string;
  stop(): Promise<number | null>;
}

/**
 * A trivial idle Node process that answers `cpu` (process.cpuUsage()) and `close`, with one
 * no-op interval: the floor of an idle Node process on this machine.
 */
export const IDLE_SCRIPT = [
  'process.on("message", (m) => {',
  '  if (m.op === "cpu") process.send({ type: "reply", id: m.id, cpu: process.cpuUsage() });',
  '  else if (m.op === "close") process.send({ type: "reply", id: m.id }, () => process.exit(0));',
  "});",
  'process.send({ type: "ready" });',
  "setInterval(() => {}, 1e6);",
].join("\n");

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

export function startIpcChild(
  name: string,
  args: readonly string[],
  timeoutMs = 30_000,
): Promise<IpcChild> {
  const proc = spawn(NODE, [...NODE_FLAGS, ...args], {
    env: baseEnv(),
    stdio: ["ignore", "ignore", "pipe", "ipc"],
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
  const listeners: ((m: Record<string, unknown>) => void)[] = [];
  const pending = new Map<number, (m: Record<string, unknown>) => void>();
  let nextId = 1;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`${name}: not ready within ${timeoutMs} ms: ${tail}`));
    }, timeoutMs);
    proc.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}) before it was ready: ${tail}`));
      for (const [, p] of pending) p({ error: `${name} exited (${code ?? signal})` });
      pending.clear();
    });
    proc.on("message", (raw) => {
      const m = raw as Record<string, unknown>;
      if (m.type === "reply") {
        const p = pending.get(m.id as number);
        pending.delete(m.id as number);
        p?.(m);
        return;
      }
      if (m.type === "ready") {
        clearTimeout(timer);
        resolve(child);
        return;
      }
      for (const f of listeners) f(m);
    });
    const child: IpcChild = {
      name,
      pid: proc.pid as number,
      request<T>(op: string, args: Record<string, unknown> = {}, ms = 30_000): Promise<T> {
        const id = nextId++;
        return new Promise<T>((done, fail) => {
          const t = setTimeout(() => {
            pending.delete(id);
            fail(new Error(`${name}: no answer to ${op} within ${ms} ms: ${tail}`));
          }, ms);
          pending.set(id, (m) => {
            clearTimeout(t);
            if (typeof m.error === "string") fail(new Error(`${name}: ${op}: ${m.error}`));
            else done(m as T);
          });
          try {
            proc.send({ id, op, ...args });
          } catch (err) {
            pending.delete(id);
            clearTimeout(t);
            fail(err as Error);
          }
        });
      },
      onMessage: (f) => void listeners.push(f),
      stderrTail: () => tail,
      async stop() {
        if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
        const kill = setTimeout(() => proc.kill("SIGKILL"), 10_000);
        child.request("close", {}, 10_000).catch(() => proc.kill("SIGKILL"));
        const code = await exited;
        clearTimeout(kill);
        return code;
      },
    };
  });
}
