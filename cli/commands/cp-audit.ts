import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { writeFileAtomic } from "../../lib/fs/atomic.ts";
import { ioError } from "../../lib/fs/trust.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";
import { type RemoteOpts, withClient, withRemoteOptions } from "./cp-remote.ts";

/**
 * The control plane's audit log, outside the control plane: `export` downloads every event
 * (auditor or admin key) as JSON lines, exactly as hashed; `verify` recomputes the chain —
 * from seq 1, each `prev_hash` the previous `hash`, each `hash` the SHA-256 of the RFC 8785
 * form of the event without it (control-plane/store/audit-hash.ts) — so an auditor needs to
 * trust neither the server nor the file's custodian, only the head hash they noted earlier.
 */

export function registerCpAudit(cp: Command, io: CliIo, run: Run): void {
  const audit = cp.command("audit").description("the control plane's hash-chained audit log");
  withRemoteOptions(
    audit
      .command("export")
      .description("every audit event, as JSON lines (stdout, or --out F)")
      .option("--out <file>", "write the events to this file (atomically) instead of stdout"),
  ).action((opts: RemoteOpts & { out?: string }, cmd: Command) =>
    run(opts.json, () =>
      withClient(io, cmd, opts, async (c) => {
        const lines: string[] = [];
        for await (const e of c.auditExport()) lines.push(`${JSON.stringify(e)}\n`);
        if (opts.out === undefined) {
          // Lines as they are: the output is the export, whatever --json says.
          io.stdout(lines.join(""));
          return 0;
        }
        writeFileAtomic(opts.out, lines.join(""), { mode: 0o644 });
        const { verifyAuditLines } = await import("./cp-audit-verify.ts");
        const verdict = verifyAuditLines(lines.join(""));
        const head = verdict.valid ? verdict.head : null;
        printResult(
          io,
          opts.json,
          { out: opts.out, count: lines.length, head },
          `${lines.length} events written to ${opts.out}${head === null ? "" : `, head ${head.seq} ${head.hash}`}`,
        );
        return 0;
      }),
    ),
  );

  withRemoteOptions(
    audit
      .command("verify")
      .argument("[file]", "an export (agentd cp audit export); without it, the live log is fetched")
      .description("recompute the audit chain: exit 0 if intact, 3 if edited, reordered or cut"),
  ).action((file: string | undefined, opts: RemoteOpts, cmd: Command) =>
    run(opts.json, async () => {
      const text =
        file === undefined
          ? await withClient(io, cmd, opts, async (c) => {
              const out: string[] = [];
              for await (const e of c.auditExport()) out.push(`${JSON.stringify(e)}\n`);
              return out.join("");
            })
          : readText(file);
      const { verifyAuditLines } = await import("./cp-audit-verify.ts");
      const verdict = verifyAuditLines(text);
      if (verdict.valid) {
        printResult(
          io,
          opts.json,
          verdict,
          `ok: ${verdict.count} events, head ${verdict.head === null ? "none" : `${verdict.head.seq} ${verdict.head.hash}`}`,
        );
        return 0;
      }
      io.stderr(`agentd: ${verdict.code}: ${verdict.message}\n`);
      if (opts.json) io.stdout(`${JSON.stringify(verdict)}\n`);
      return 3;
    }),
  );
}

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw ioError(file, "read", err);
  }
}
