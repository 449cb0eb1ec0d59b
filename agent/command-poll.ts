import type { WorkerCommandsResponse } from "../control-plane/protocol/schemas/api-worker.ts";
import { decodeJwsUnverified } from "../lib/crypto/jws.ts";
import { eventPages } from "./event-pages.ts";

/**
 * Push's fallback for commands: every page of the worker's events (the control plane answers
 * at most 100 a time, oldest first), the commands among them this agent has not handled nor
 * fetched before. `seen` remembers what was fetched once — also commands refused before
 * verification, which the executor's ledger cannot hold — so they are not fetched and refused
 * again at every heartbeat (the agent keeps it across restarts: polled-commands.ts).
 */
export async function newCommandsByPolling(o: {
  readonly poll: (after: number) => Promise<WorkerCommandsResponse>;
  readonly handled: (cmdId: string) => boolean;
  /** What was fetched before, by the id the document claims and the document itself. */
  readonly seen: {
    has(cmdId: string, jws: string): boolean;
    add(cmdId: string, jws: string): void;
  };
  readonly maxPages?: number;
}): Promise<string[]> {
  const fresh: string[] = [];
  for await (const e of eventPages(o.poll, o.maxPages)) {
    if (e.kind !== "command") continue;
    const id = commandIdOf(e.jws);
    if (id === null || o.handled(id) || o.seen.has(id, e.jws)) continue;
    o.seen.add(id, e.jws);
    fresh.push(e.jws);
  }
  return fresh;
}

/** A command's id, read before verification only to skip ones already handled. */
export function commandIdOf(jws: string): string | null {
  try {
    const id = (decodeJwsUnverified(jws).payload as { cmd_id?: unknown }).cmd_id;
    return typeof id === "string" ? id : null;
  } catch {
    return null;
  }
}
