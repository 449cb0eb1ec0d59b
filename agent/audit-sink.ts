import { statfsSync } from "node:fs";
import { dirname } from "node:path";
import { isAgentdError } from "../lib/errors.ts";
import type { ChainHead, ChainLog } from "../lib/fs/chain-log.ts";
import { backgroundTimers, type TimerHandle, type Timers } from "../lib/timers.ts";

/**
 * The agent's audit log as every part writes to it, watched for failure. Nothing may happen
 * that cannot be recorded (issue 6): when an append fails (disk full, I/O error) the sink
 * says so at once through `onUnwritable` — the daemon then holds mining stopped — and
 * rethrows, so the caller's change does not happen either (a state transition is audited
 * before it takes effect). From then on a probe reopens the log every `probeMs` (a failed
 * write may have left the file unusable; opening repairs a torn tail) and appends an
 * `audit.writable` record saying how many records were lost; when that succeeds,
 * `onWritable` lifts the hold. While unwritable, appends fail fast without touching the disk.
 */

export interface AuditAppender {
  append(body: Readonly<Record<string, unknown>>): ChainHead;
}

export interface AuditSink extends AuditAppender {
  head(): ChainHead | null;
  /** False from the first failed append until a probe has written again. */
  readonly writable: boolean;
  /** The log file (for the local API's tail and the doctor). */
  readonly path: string;
  close(): void;
}

export interface AuditSinkOptions {
  /** The log file (its directory's free space is what the probe looks at). */
  readonly path: string;
  /** Opens (or reopens) the chain log; a torn tail is repaired by opening. */
  readonly open: () => ChainLog;
  readonly onUnwritable: (err: unknown) => void;
  readonly onWritable: (lost: number) => void;
  readonly probeMs?: number;
  /**
   * The probe writes again only with at least this much free space (default 1 MiB): a full
   * disk still takes a small record into the last page of the file, and lifting the hold for
   * that would only flap.
   */
  readonly minFreeBytes?: number;
  /** The probe's timer (default: Node's, unref'd). */
  readonly timers?: Timers;
}

export function openAuditSink(o: AuditSinkOptions): AuditSink {
  const timers = o.timers ?? backgroundTimers;
  const probeMs = o.probeMs ?? 2_000;
  const minFree = o.minFreeBytes ?? 1024 * 1024;
  let log: ChainLog | null = o.open();
  let failedAt: unknown = null;
  let lost = 0;
  let probe: TimerHandle | null = null;
  let closed = false;

  const unwritable = (err: unknown) => {
    lost++;
    if (failedAt !== null) return;
    failedAt = err;
    o.onUnwritable(err);
    armProbe();
  };
  const armProbe = () => {
    if (closed || probe !== null) return;
    probe = timers.setTimeout(() => {
      probe = null;
      tryRecover();
    }, probeMs);
  };
  const tryRecover = () => {
    if (closed || failedAt === null) return;
    if (freeBytes() < minFree) {
      armProbe();
      return;
    }
    try {
      log?.close();
    } catch {
      // Closing a log whose disk failed may fail too; reopening is what matters.
    }
    log = null;
    try {
      log = o.open();
      log.append({ type: "audit.writable", lost_records: lost });
    } catch {
      armProbe();
      return;
    }
    const n = lost;
    failedAt = null;
    lost = 0;
    o.onWritable(n);
  };

  const freeBytes = () => {
    try {
      const st = statfsSync(dirname(o.path));
      return st.bavail * st.bsize;
    } catch {
      return 0;
    }
  };

  return {
    get writable() {
      return failedAt === null;
    },
    path: o.path,
    head: () => log?.head() ?? null,
    append(body) {
      if (failedAt !== null || log === null) {
        lost++;
        throw failedAt ?? new Error("the audit log is not open");
      }
      try {
        return log.append(body);
      } catch (err) {
        // Only the disk failing makes the log unwritable; a malformed body is the caller's bug.
        if (!isAgentdError(err) || err.code !== "AGENTD_E_INTERNAL") unwritable(err);
        throw err;
      }
    },
    close() {
      closed = true;
      if (probe !== null) timers.clearTimeout(probe);
      probe = null;
      log?.close();
    },
  };
}
