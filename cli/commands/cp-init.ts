import type { Command } from "commander";
import type { CliIo } from "../io.ts";
import type { Run } from "../program.ts";

const HELP = `
Creates a control plane directory: DIR/keys (the root key, one key per use and the key set it
signs, the CA and the server certificate for the --host names and addresses), the database
(default sqlite:DIR/cp.db, created 0600; or --database postgres://…) migrated, and DIR/cp.json
recording which database to serve. Prints one JSON line with the first admin API key — shown
this once, only its hash is stored — and the CA's SHA-256 and root key thumbprint that
enrollment tokens pin. Refuses a DIR that exists, and a database that has an admin already.
`;

export function registerCpInit(cp: Command, io: CliIo, run: Run): void {
  cp.command("init")
    .description("create a control plane: keys, CA, database, the first admin API key")
    .addHelpText("after", HELP)
    .requiredOption("--dir <dir>", "the new control plane directory")
    .option(
      "--host <name>",
      "a host name or address of the server certificate (repeatable; default 127.0.0.1, ::1, localhost)",
      (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
    )
    .option("--database <url>", "sqlite:FILE or postgres://… (default sqlite:DIR/cp.db)")
    .action((opts: { dir: string; host?: string[]; database?: string }) =>
      run(true, async () => {
        // Loaded here: the other `agentd cp` verbs start without the keys' and store's code.
        const { initControlPlaneDir } = await import("../../control-plane/init-dir.ts");
        const result = await initControlPlaneDir({
          dir: opts.dir,
          ...(opts.host === undefined ? {} : { hosts: opts.host }),
          ...(opts.database === undefined ? {} : { database: opts.database }),
          clock: io.clock,
        });
        io.stdout(`${JSON.stringify(result)}\n`);
        return 0;
      }),
    );
}
