import { existsSync } from "node:fs";
import { basename, dirname, relative, resolve } from "node:path";

/**
 * The commands the devnet's ready line suggests (`try`), with the real paths filled in, so an
 * operator can copy them as they are. Every verb that reads the running agent is given
 * `--state-dir`, and finds the agent's local API socket through it.
 */

/**
 * How the operator runs this same CLI: `./bin/agentd` from a checkout's root (what the README
 * says), the checkout's bin/agentd by its absolute path from anywhere else, and otherwise the
 * binary's own name (an installed `agentd`). `argv1` is the script node runs: cli/main.ts in
 * a checkout, the executable itself for a single-executable build.
 */
export function agentdInvocation(
  argv1: string | undefined = process.argv[1],
  cwd: string = process.cwd(),
): string {
  if (argv1 === undefined) return "agentd";
  const name = basename(argv1);
  if (name === "main.ts" || name === "main.js") {
    const bin = resolve(dirname(argv1), "..", "bin", "agentd");
    if (existsSync(bin)) {
      return relative(cwd, bin) === "bin/agentd" ? "./bin/agentd" : shellWord(bin);
    }
    // A build without the launcher: node runs the script itself.
    return `${shellWord(process.execPath)} ${shellWord(resolve(argv1))}`;
  }
  return shellWord(name);
}

export function tryCommands(o: {
  readonly agentd: string;
  readonly stateDir: string;
  readonly ownerKey: string;
  readonly workerId: string;
  /** Whether services are supervised (`services ls` is worth suggesting). */
  readonly services: boolean;
}): string[] {
  const sd = `--state-dir ${shellWord(o.stateDir)}`;
  const verb = (v: string) => `${o.agentd} ${v} ${sd}`;
  return [
    verb("status"),
    verb("miners"),
    ...(o.services ? [verb("services ls")] : []),
    verb("eligibility"),
    verb("logs"),
    verb("doctor"),
    // The owner stops everything (mining and services), with the key only the owner holds.
    `${o.agentd} consent revoke --owner-key ${shellWord(o.ownerKey)} --worker ${shellWord(o.workerId)} --through-seq 1 --apply ${sd}`,
  ];
}

/** One word for a POSIX shell: as it is when that is safe, else single-quoted. */
export function shellWord(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}
