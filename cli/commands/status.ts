import type { Command } from "commander";
import { localApiRequest } from "../../agent/local-api.ts";
import { fail } from "../../lib/errors.ts";
import { globalsOf, loadCliConfig } from "../config-context.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";

/** `agentd status`: what the running agent says about itself, through its local API. */
export function registerStatus(program: Command, io: CliIo, run: Run): void {
  program
    .command("status")
    .description("the running agent's worker id, state, decision and policy (local API)")
    .option("--json", "machine-readable output", false)
    .action((opts: { json: boolean }, cmd: Command) =>
      run(opts.json, async () => {
        const { config } = loadCliConfig(io, globalsOf(cmd));
        const r = await localApiRequest(config.api.socket, "GET", "/v1/status");
        if (r.status !== 200) {
          throw fail("AGENTD_E_HTTP", `the local API answered ${r.status}`, { status: r.status });
        }
        const s = r.json as {
          worker_id: string;
          state: string;
          reason: string;
          decision: { mining: boolean; reasons: string[] };
          policy: { version: number | null };
        };
        printResult(
          io,
          opts.json,
          r.json,
          [
            `worker   ${s.worker_id}`,
            `state    ${s.state}${s.reason === "" ? "" : ` (${s.reason})`}`,
            `mining   ${s.decision.mining ? "allowed" : `denied: ${s.decision.reasons.join(", ")}`}`,
            `policy   ${s.policy.version === null ? "none" : `version ${s.policy.version}`}`,
          ].join("\n"),
        );
        return 0;
      }),
    );
}
