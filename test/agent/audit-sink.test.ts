import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openAuditSink } from "../../agent/audit-sink.ts";
import { ChainLog, verifyChainLog } from "../../lib/fs/chain-log.ts";
import { canMountTmpfs, mountTmpfs, type Tmpfs } from "../support/tmpfs.ts";

/**
 * The audit sink on a real file system that fills up (tmpfs, ENOSPC from the kernel): the
 * failure is reported once, appends fail fast while it lasts, the probe writes again once
 * there is space, and the chain verifies throughout.
 */

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function manualTimers() {
  const pending: (() => void)[] = [];
  return {
    timers: {
      setTimeout: (fn: () => void) => {
        pending.push(fn);
        return fn;
      },
      clearTimeout: (h: unknown) => {
        const i = pending.indexOf(h as () => void);
        if (i >= 0) pending.splice(i, 1);
      },
      setInterval: () => {
        throw new Error("the sink uses no intervals");
      },
      clearInterval: () => {},
    },
    fire: () => {
      for (const fn of pending.splice(0)) fn();
    },
    get pending() {
      return pending.length;
    },
  };
}

const root = canMountTmpfs();

describe("the audit sink", () => {
  it.skipIf(!root)("reports a full disk once, fails fast, and recovers by probing", () => {
    const fs: Tmpfs = mountTmpfs(256);
    cleanups.push(() => fs.unmount());
    const path = join(fs.dir, "audit.jsonl");
    const events: string[] = [];
    const t = manualTimers();
    const sink = openAuditSink({
      path,
      minFreeBytes: 16 * 1024,
      open: () => ChainLog.open(path).log,
      onUnwritable: (err) =>
        events.push(`unwritable ${(err as { context?: { errno?: string } }).context?.errno}`),
      onWritable: (lost) => events.push(`writable lost=${lost}`),
      timers: t.timers,
    });
    cleanups.push(() => sink.close());
    sink.append({ type: "before" });
    fs.fill();
    // records big enough that one cannot fit in what the filler left
    const big = { type: "during", pad: "x".repeat(8192) };
    expect(() => sink.append(big)).toThrow();
    expect(sink.writable).toBe(false);
    expect(events).toEqual(["unwritable ENOSPC"]);
    // fail fast, without another report
    expect(() => sink.append({ type: "during" })).toThrow();
    expect(events).toHaveLength(1);
    // a probe while still full: still unwritable, probing goes on
    t.fire();
    expect(sink.writable).toBe(false);
    expect(t.pending).toBe(1);
    fs.free();
    t.fire();
    expect(sink.writable).toBe(true);
    expect(events).toEqual(["unwritable ENOSPC", "writable lost=2"]);
    sink.append({ type: "after" });
    sink.close();
    const v = verifyChainLog(path);
    expect(v.ok).toBe(true);
    expect(v.records).toBe(3); // before, audit.writable, after: nothing half-written
  });

  it("a malformed record is the caller's bug, not an unwritable log", () => {
    const dir = mkdtempSync(join(tmpdir(), "agentd-sink-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const events: string[] = [];
    const sink = openAuditSink({
      path: join(dir, "audit.jsonl"),
      open: () => ChainLog.open(join(dir, "audit.jsonl")).log,
      onUnwritable: () => events.push("unwritable"),
      onWritable: () => events.push("writable"),
    });
    cleanups.push(() => sink.close());
    expect(() => sink.append({ seq: 5 })).toThrow(/must not set "seq"/);
    expect(sink.writable).toBe(true);
    expect(events).toEqual([]);
    expect(sink.append({ type: "fine" }).seq).toBe(1);
  });
});
