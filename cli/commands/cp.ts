import type { Command } from "commander";
import type { CliIo } from "../io.ts";
import type { Run } from "../program.ts";
import { registerCpAdmin } from "./cp-admin.ts";
import { registerCpAudit } from "./cp-audit.ts";
import { registerCpInit } from "./cp-init.ts";
import { registerCpServe } from "./cp-serve.ts";

/**
 * `agentd cp …`: the reference control plane, shipped in the same binary (control-plane/).
 * `init` and `serve` work on a control plane directory; every other verb talks HTTPS to a
 * running control plane with an API key (cp-remote.ts).
 */
export function registerCp(program: Command, io: CliIo, run: Run): void {
  const cp = program
    .command("cp")
    .description("the reference control plane: init, serve, and its administrative verbs");
  registerCpInit(cp, io, run);
  registerCpServe(cp, io, run);
  registerCpAdmin(cp, io, run);
  registerCpAudit(cp, io, run);
}
