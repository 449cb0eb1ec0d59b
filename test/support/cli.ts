import { spawn, spawnSync } from "node:child_process";
import { resolve } from "node:path";

export const REPO_ROOT = resolve(import.meta.dirname, "..", "..");
export const AGENTD_BIN = resolve(REPO_ROOT, "bin", "agentd");

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the real `./bin/agentd` (the pinned Node, a real process) with a minimal environment:
 * no AGENTD_* variables leak in from the test runner's environment.
 */
export function agentd(
  args: readonly string[],
  env: Record<string, string> = {},
  cwd?: string,
): CliResult {
  const r = spawnSync(AGENTD_BIN, args, {
    ...(cwd === undefined ? {} : { cwd }),
    encoding: "utf8",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root", ...env },
    timeout: 30_000,
  });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * The same, awaited without blocking this process: for tests whose simulators or agent run in
 * the test process itself and must keep answering while the CLI talks to them.
 */
export function agentdAsync(args: readonly string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(AGENTD_BIN, args, {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
