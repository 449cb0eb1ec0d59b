#!/usr/bin/env node
/**
 * The agentd binary's entry: wires the real process to the CLI and exits once.
 * Everything else is in program.ts, testable in-process.
 */
import { systemClock } from "../lib/clock.ts";
import { systemTimers } from "../lib/timers.ts";
import { runCli } from "./program.ts";

const code = await runCli(process.argv.slice(2), {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  env: process.env,
  clock: systemClock,
  timers: systemTimers,
});
// Let stdout drain (it may be a pipe) before exiting with the command's code.
process.exitCode = code;
