import { createInterface } from "node:readline";
import type { Command } from "commander";
import { fail } from "../../lib/errors.ts";
import { componentLogger, createLogger, type LogLevel } from "../../lib/log/logger.ts";
import { parseHostPort } from "../../sim/pool/address.ts";
import { applyControl } from "../../sim/pool/control.ts";
import { DEFAULT_DIFFICULTY } from "../../sim/pool/defaults.ts";
import { FAULT_SYNTAX, parseFault } from "../../sim/pool/faults.ts";
import { globalsOf } from "../config-context.ts";
import type { CliIo } from "../io.ts";
import type { Run } from "../program.ts";
import { untilSignal } from "../signals.ts";
import { simCommand } from "./sim.ts";

interface SimPoolOpts {
  listen: string;
  difficulty: string;
  versionMask: string;
  extranonce1Size: string;
  extranonce2Size: string;
  jobInterval: string;
  blockInterval: string;
  blockTargetDifficulty?: string;
  txCount: string;
  honorSuggestedDifficulty: boolean;
  allowUser?: string[];
  fault?: string;
  controlStdin: boolean;
}

const LEVELS: readonly LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/**
 * `agentd sim pool`: the simulated Stratum V1 pool (sim/README.md). stdout: the ready line,
 * then one JSON line per accepted share (and answers to control lines); logs on stderr.
 * Runs until SIGTERM or SIGINT, then closes every connection and exits 0.
 */
export function registerSimPool(program: Command, io: CliIo, run: Run): void {
  simCommand(program)
    .command("pool")
    .description("run a simulated Stratum V1 pool that validates shares with bitcoinjs-lib")
    .option(
      "--listen <host:port>",
      "address to listen on (port 0: any free port)",
      "127.0.0.1:3333",
    )
    .option("--difficulty <d>", "share difficulty, fractions allowed", String(DEFAULT_DIFFICULTY))
    .option(
      "--version-mask <hex>",
      "BIP 310 version-rolling mask (00000000 refuses rolling)",
      "1fffe000",
    )
    .option("--extranonce1-size <n>", "extranonce1 bytes, unique per connection", "4")
    .option("--extranonce2-size <n>", "extranonce2 bytes the miner rolls", "8")
    .option("--job-interval <s>", "seconds between new (not clean) jobs; 0 never", "30")
    .option("--block-interval <s>", "seconds between new blocks (clean jobs); 0 never", "0")
    .option(
      "--block-target-difficulty <d>",
      "shares meeting this difficulty are block candidates (a clean job follows)",
    )
    .option("--tx-count <n>", "transactions per template besides the coinbase", "40")
    .option("--honor-suggested-difficulty", "apply mining.suggest_difficulty", false)
    .option(
      "--allow-user <name>",
      "only these users may authorize (repeatable; default anyone)",
      (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
    )
    .option("--fault <mode>", `start in a fault mode: ${FAULT_SYNTAX}`)
    .option("--control-stdin", "read control lines from stdin (sim/pool/control.ts)", false)
    .action((opts: SimPoolOpts, cmd: Command) =>
      run(false, async () => {
        const listen = parseHostPort(opts.listen);
        if (!listen) throw usage("--listen", "HOST:PORT", opts.listen);
        const fault = opts.fault === undefined ? null : parseFault(opts.fault);
        if (fault === undefined) throw usage("--fault", FAULT_SYNTAX, opts.fault ?? "");
        const level = globalsOf(cmd).logLevel ?? "info";
        if (!LEVELS.includes(level as LogLevel))
          throw usage("--log-level", LEVELS.join("|"), level);
        const log = componentLogger(createLogger({ level: level as LogLevel }), "sim-pool");
        const allowed = opts.allowUser === undefined ? undefined : new Set(opts.allowUser);

        // Loaded here: bitcoinjs-lib costs every other agentd command ~70 ms otherwise.
        const { SimPool } = await import("../../sim/pool/server.ts");
        const pool = await SimPool.start({
          host: listen.host,
          port: listen.port,
          difficulty: positive("--difficulty", opts.difficulty),
          versionMask: hex32("--version-mask", opts.versionMask),
          extranonce1Size: integer("--extranonce1-size", opts.extranonce1Size),
          extranonce2Size: integer("--extranonce2-size", opts.extranonce2Size),
          jobIntervalMs: seconds("--job-interval", opts.jobInterval),
          blockIntervalMs: seconds("--block-interval", opts.blockInterval),
          blockTargetDifficulty:
            opts.blockTargetDifficulty === undefined
              ? null
              : positive("--block-target-difficulty", opts.blockTargetDifficulty),
          txCount: integer("--tx-count", opts.txCount),
          honorSuggestedDifficulty: opts.honorSuggestedDifficulty,
          ...(allowed === undefined ? {} : { authorize: (user: string) => allowed.has(user) }),
          fault,
          clock: io.clock,
          logger: log,
          onShare: (share) => io.stdout(`${JSON.stringify({ share })}\n`),
        });
        // Handlers first: a signal right after the ready line must still shut down cleanly.
        const stopped = untilSignal();
        io.stdout(`${JSON.stringify({ ready: true, ...pool.address })}\n`);

        const control = opts.controlStdin
          ? createInterface({ input: process.stdin, terminal: false })
          : undefined;
        control?.on("line", (line) => {
          if (line.trim() === "") return;
          io.stdout(`${JSON.stringify({ control: applyControl(pool, line) })}\n`);
        });

        const signal = await stopped;
        log.info({ signal }, "shutting down");
        control?.close();
        process.stdin.destroy();
        await pool.close();
        return 0;
      }),
    );
}

function usage(flag: string, expected: string, got: string) {
  return fail("AGENTD_E_USAGE", `${flag}: expected ${expected}, found ${JSON.stringify(got)}`);
}

function positive(flag: string, text: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n) || n <= 0) throw usage(flag, "a number > 0", text);
  return n;
}

function integer(flag: string, text: string): number {
  if (!/^\d+$/.test(text)) throw usage(flag, "a non-negative integer", text);
  return Number(text);
}

function seconds(flag: string, text: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n) || n < 0) throw usage(flag, "seconds ≥ 0", text);
  return Math.round(n * 1000);
}

function hex32(flag: string, text: string): number {
  if (!/^[0-9a-fA-F]{8}$/.test(text)) throw usage(flag, "8 hex digits", text);
  return Number.parseInt(text, 16);
}
