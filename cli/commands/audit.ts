import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { fail } from "../../lib/errors.ts";
import { readChainTail, verifyChainLog } from "../../lib/fs/chain-log.ts";
import { globalsOf, loadCliConfig } from "../config-context.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";

/**
 * `agentd audit verify|tail`: the agent's own hash-chained audit log (STATE_DIR/audit.jsonl),
 * read from the files, so it works with the agent stopped too. `agentd log verify FILE` does
 * the same for any chain log.
 */

const auditFile = (io: CliIo, cmd: Command, stateDir: string | undefined) => {
  const dedicated =
    stateDir === undefined
      ? []
      : [{ key: "paths.state_dir", value: resolve(stateDir), flag: "--state-dir" }];
  return join(loadCliConfig(io, globalsOf(cmd), dedicated).config.paths.state_dir, "audit.jsonl");
};

export function registerAudit(program: Command, io: CliIo, run: Run): void {
  const audit = program.command("audit").description("the agent's hash-chained audit log");
  audit
    .command("verify")
    .description("verify the audit log: exit 0 if intact, 3 if edited, reordered, cut or torn")
    .option("--state-dir <dir>", "state directory (config paths.state_dir)")
    .option("--json", "machine-readable output", false)
    .action((opts: { json: boolean; stateDir?: string }, cmd: Command) =>
      run(opts.json, () => {
        const file = auditFile(io, cmd, opts.stateDir);
        if (!existsSync(file)) throw fail("AGENTD_E_IO", `${file}: no audit log`, { path: file });
        const result = verifyChainLog(file);
        if (result.ok) {
          printResult(
            io,
            opts.json,
            { valid: true, records: result.records, head: result.head },
            `ok: ${result.records} records, head ${result.head === null ? "none" : `${result.head.seq} ${result.head.hash}`}`,
          );
          return 0;
        }
        io.stderr(`agentd: ${result.error.code}: ${result.error.message}\n`);
        if (opts.json) {
          io.stdout(
            `${JSON.stringify({ valid: false, records: result.records, error: result.error })}\n`,
          );
        }
        return 3;
      }),
    );
  audit
    .command("tail")
    .description("the last records of the audit log, oldest first (one JSON object a line)")
    .option("-n, --lines <n>", "how many records", "20")
    .option("--state-dir <dir>", "state directory (config paths.state_dir)")
    .option("--json", "one JSON array instead of a line per record", false)
    .action((opts: { lines: string; json: boolean; stateDir?: string }, cmd: Command) =>
      run(opts.json, () => {
        const n = Number(opts.lines);
        if (!Number.isInteger(n) || n < 1 || n > 100_000) {
          throw fail("AGENTD_E_USAGE", "--lines: an integer 1..100000");
        }
        const file = auditFile(io, cmd, opts.stateDir);
        if (!existsSync(file)) throw fail("AGENTD_E_IO", `${file}: no audit log`, { path: file });
        const records = readChainTail(file, n);
        if (opts.json) io.stdout(`${JSON.stringify(records.map((r) => JSON.parse(r)))}\n`);
        else for (const r of records) io.stdout(`${r}\n`);
        return 0;
      }),
    );
}
