import { AgentdError, fail } from "../lib/errors.ts";
import type { CliIo } from "./io.ts";

/** Prints a command's result: the JSON document with `--json`, else the text lines. */
export function printResult(io: CliIo, json: boolean, doc: unknown, text: string): void {
  io.stdout(json ? `${JSON.stringify(doc)}\n` : text.endsWith("\n") ? text : `${text}\n`);
}

/**
 * Reports a failure and returns the exit code. One line on stderr always
 * (`agentd: CODE: message`); with `--json` also `{"error": …}` on stdout for scripts.
 */
export function reportError(io: CliIo, json: boolean, err: unknown): number {
  const e =
    err instanceof AgentdError
      ? err
      : fail("AGENTD_E_INTERNAL", err instanceof Error ? err.message : String(err), {}, err);
  io.stderr(`agentd: ${e.code}: ${e.message}\n`);
  if (json) io.stdout(`${JSON.stringify({ error: e.toJSON() })}\n`);
  if (e.code === "AGENTD_E_INTERNAL" && err instanceof Error && err.stack) {
    io.stderr(`${err.stack}\n`);
  }
  return e.exitCode;
}
