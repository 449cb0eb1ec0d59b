/**
 * The control plane as the benchmarks run it: `agentd cp init` on a directory, then `agentd cp
 * serve` in its own process on 127.0.0.1:0 with warnings-only logs, its ready line awaited
 * (bench/proxy-scale/procs.ts stops it). Every simulated agent and operator of a benchmark
 * comes from 127.0.0.1, so the per-address rate limit is always off; `rateCaller: false`
 * switches the per-caller one off too (an operator sending a thousand commands).
 */
import { join, resolve } from "node:path";
import { type Child, startChild } from "../proxy-scale/procs.ts";

const AGENTD = join(resolve(import.meta.dirname, "..", ".."), "bin", "agentd");

export function benchEnv(nodeOptions?: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/root",
    ...(nodeOptions === undefined || nodeOptions === "" ? {} : { NODE_OPTIONS: nodeOptions }),
  };
}

export async function initCp(dir: string, databaseUrl: string): Promise<void> {
  const init = await startChild(
    "cp init",
    AGENTD,
    ["cp", "init", "--dir", dir, "--database", databaseUrl],
    benchEnv(),
    60_000,
  );
  await init.stop();
}

export function serveCp(
  dir: string,
  databaseUrl: string,
  o: { readonly rateCaller?: boolean; readonly env?: Record<string, string> } = {},
): Promise<Child> {
  return startChild(
    "cp serve",
    AGENTD,
    [
      "cp",
      "serve",
      "--dir",
      dir,
      "--listen",
      "127.0.0.1:0",
      "--database",
      databaseUrl,
      "--log-level",
      "warn",
      "--rate-ip",
      "0",
      ...(o.rateCaller === false ? ["--rate-caller", "0"] : []),
    ],
    o.env ?? benchEnv(),
    60_000,
  );
}

/**
 * A baseline server of bench/cp/ (heartbeat-baseline.ts, push-baseline.ts) on the control
 * plane's own certificate, so both sides pay the same TLS.
 */
export function startBaseline(script: string, keysDir: string): Promise<Child> {
  return startChild(
    "baseline",
    process.execPath,
    [
      join(import.meta.dirname, script),
      "--key",
      join(keysDir, "server.key.pem"),
      "--cert",
      join(keysDir, "server.crt.pem"),
    ],
    benchEnv(),
  );
}
