import type { Command } from "commander";
import { fail } from "../../lib/errors.ts";
import { verifyChainLog } from "../../lib/fs/chain-log.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";

export function registerLog(program: Command, io: CliIo, run: Run): void {
  const log = program.command("log").description("hash-chained logs (audit logs)");
  log
    .command("verify")
    .argument("<file>", "the log's active file (rotated segments beside it are included)")
    .description("verify a hash-chained log: exit 0 if intact, 3 if edited, reordered, cut or torn")
    .option(
      "--head <hash>",
      "the head hash the log must end with (detects records cut off the end)",
    )
    .option("--seq <n>", "the head's sequence number (with --head)")
    .option("--json", "machine-readable output", false)
    .action((file: string, opts: { head?: string; seq?: string; json: boolean }) =>
      run(opts.json, () => {
        if (opts.seq !== undefined && opts.head === undefined) {
          throw fail("AGENTD_E_USAGE", "--seq needs --head");
        }
        if (opts.seq !== undefined && !/^\d+$/.test(opts.seq)) {
          throw fail(
            "AGENTD_E_USAGE",
            `--seq: expected a non-negative integer, found ${JSON.stringify(opts.seq)}`,
          );
        }
        const expectHead =
          opts.head === undefined
            ? undefined
            : { hash: opts.head, ...(opts.seq === undefined ? {} : { seq: Number(opts.seq) }) };
        const result = verifyChainLog(file, expectHead === undefined ? {} : { expectHead });
        if (result.ok) {
          printResult(
            io,
            opts.json,
            { valid: true, records: result.records, head: result.head },
            `ok: ${result.records} records, head ${result.head === null ? "none" : `${result.head.seq} ${result.head.hash}`}`,
          );
          return 0;
        }
        const { error } = result;
        io.stderr(`agentd: ${error.code}: ${error.message}\n`);
        if (opts.json) {
          io.stdout(`${JSON.stringify({ valid: false, records: result.records, error })}\n`);
        }
        return 3;
      }),
    );
}
