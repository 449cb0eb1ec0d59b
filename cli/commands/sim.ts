import type { Command } from "commander";

/**
 * The `agentd sim` group (simulated pool, ASICs, node services), shared by the verbs that
 * register under it: whichever registers first creates it, the others reuse it.
 */
export function simCommand(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === "sim") ??
    program
      .command("sim")
      .description(
        "simulators for tests and CI: a Stratum pool, ASICs, a power meter (no hardware needed)",
      )
  );
}
