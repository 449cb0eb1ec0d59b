import { join } from "node:path";
import type { Clock } from "../lib/clock.ts";
import { ChainLog } from "../lib/fs/chain-log.ts";
import type { Logger } from "../lib/log/logger.ts";
import type { Timers } from "../lib/timers.ts";
import { type AuditSink, openAuditSink } from "./audit-sink.ts";
import { summarizeAudit } from "./audit-summary.ts";

/** The agent's hash-chained audit log in the state directory. */
export const AUDIT_FILE = "audit.jsonl";

/**
 * The audit log of `agentd run`: the watched sink (audit-sink.ts) on AUDIT_FILE behind the
 * summarizer of repeats (audit-summary.ts: what a LAN host or a routine repeats is counted, not
 * written each time; `close` writes the counts still pending), a torn tail cut on opening
 * recorded in the chain itself, and writability changes handed to whoever subscribes (the data
 * path holds mining while the log cannot be written). A failure before anyone subscribed — at
 * start — fails the start itself: the append throws.
 */
export interface AgentAudit extends AuditSink {
  /** Called with false when appends start failing, with true (and the records lost) after. */
  onWritableChange(listener: (writable: boolean, lost: number) => void): void;
}

export function openAgentAudit(o: {
  readonly stateDir: string;
  readonly log: Logger;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly probeMs?: number;
  readonly minFreeBytes?: number;
}): AgentAudit {
  const path = join(o.stateDir, AUDIT_FILE);
  const listeners: ((writable: boolean, lost: number) => void)[] = [];
  // A torn tail repaired on opening (a power loss mid-write) is recorded once the log is
  // open, so that the chain itself says where it was cut.
  let repaired: number | null = null;
  const sink = openAuditSink({
    path,
    timers: o.timers,
    open: () => {
      const { log: chain, recovery } = ChainLog.open(path);
      if (recovery.recovered) repaired = recovery.tornBytes;
      return chain;
    },
    onUnwritable: (err) => {
      o.log.error({ err }, "the audit log cannot be written: mining is held until it can");
      for (const l of listeners) l(false, 0);
    },
    onWritable: (lost) => {
      o.log.warn({ lost }, "the audit log can be written again");
      for (const l of listeners) l(true, lost);
    },
    ...(o.probeMs === undefined ? {} : { probeMs: o.probeMs }),
    ...(o.minFreeBytes === undefined ? {} : { minFreeBytes: o.minFreeBytes }),
  });
  if (repaired !== null) {
    o.log.warn({ torn_bytes: repaired }, "the audit log's torn tail was cut on opening");
    try {
      sink.append({ type: "audit.tail_repaired", torn_bytes: repaired });
    } catch (err) {
      sink.close();
      throw err;
    }
  }
  const summary = summarizeAudit(sink, { clock: o.clock, timers: o.timers });
  return {
    get writable() {
      return sink.writable;
    },
    path: sink.path,
    head: () => sink.head(),
    append: (body) => summary.append(body),
    close: () => {
      try {
        summary.close();
      } finally {
        sink.close();
      }
    },
    onWritableChange: (l) => {
      listeners.push(l);
    },
  };
}
