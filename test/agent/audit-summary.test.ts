import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AUDIT_FILE, openAgentAudit } from "../../agent/audit-log.ts";
import { summarizeAudit } from "../../agent/audit-summary.ts";
import { createGuardedProxy } from "../../agent/guarded-proxy.ts";
import { loadConfig } from "../../lib/config/load.ts";
import { ChainLog, verifyChainLog } from "../../lib/fs/chain-log.ts";
import { createLogger } from "../../lib/log/logger.ts";
import { Registry } from "../../lib/metrics/registry.ts";
import { fakeTime } from "../../lib/timers.ts";

/**
 * The audit summarizer (issue 15): repeats of a repeatable kind are counted and written as
 * `audit.repeated` at most once per interval per key, never dropped (the counts add up), with
 * bounded memory; every other record is written each time. On fake time, with a real chain
 * log, and at the end through the agent's audit log with the real proxy and 20,000 real
 * connections.
 */

const T0 = Date.UTC(2026, 0, 1);
const dirs: string[] = [];
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

type Rec = Record<string, unknown> & { type: string };

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "agentd-summary-"));
  dirs.push(d);
  return d;
}

function readLog(path: string): Rec[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Rec);
}

function setup(over: { maxKeys?: number } = {}) {
  const path = join(tempDir(), "audit.jsonl");
  const chain = ChainLog.open(path).log;
  const time = fakeTime(T0);
  const s = summarizeAudit(chain, { clock: time.clock, timers: time.timers, ...over });
  cleanups.push(() => chain.close());
  return { path, chain, time, s, records: () => readLog(path) };
}

/** The records of `type` written in full, plus the counts of their summaries. */
function total(records: Rec[], type: string): number {
  const full = records.filter((r) => r.type === type).length;
  const summed = records
    .filter((r) => r.type === "audit.repeated" && r.of === type)
    .reduce((n, r) => n + (r.count as number), 0);
  return full + summed;
}

const refused = (ip: string) => ({ type: "stratum.connection_refused", reason: "network", ip });

describe("the audit summarizer", () => {
  it("writes the first, counts repeats, summarizes once per interval per key, flushes on close", async () => {
    const { s, time, records, path } = setup();
    for (let i = 0; i < 500; i++) s.append({ ...refused("10.0.0.9"), at: `t${i}` });
    s.append(refused("10.0.0.8"));
    expect(records().map((r) => r.type)).toEqual([
      "stratum.connection_refused",
      "stratum.connection_refused",
    ]);
    expect(s.pending()).toEqual({ keys: 2, counted: 499 });
    await time.advance(59_999);
    expect(records()).toHaveLength(2); // not before the interval
    await time.advance(1);
    const after = records();
    expect(after).toHaveLength(3);
    expect(after[2]).toMatchObject({
      type: "audit.repeated",
      of: "stratum.connection_refused",
      key: { reason: "network", ip: "10.0.0.9" },
      count: 499,
      first_at: new Date(T0).toISOString(),
      last_at: new Date(T0).toISOString(),
      interval_s: 60,
    });
    // More within the next interval: one summary, on close (before it is due).
    await time.advance(1_000);
    for (let i = 0; i < 7; i++) s.append(refused("10.0.0.9"));
    expect(time.pending()).toBe(1);
    s.close();
    expect(time.pending()).toBe(0);
    const all = records();
    expect(all).toHaveLength(4);
    expect(all[3]).toMatchObject({ count: 7, first_at: new Date(T0 + 61_000).toISOString() });
    expect(total(all, "stratum.connection_refused")).toBe(508);
    expect(verifyChainLog(path).ok).toBe(true);
  });

  it("writes a key in full again after an interval without repeats, and arms no timer for it", async () => {
    const { s, time, records } = setup();
    s.append(refused("10.0.0.9"));
    expect(time.pending()).toBe(0); // nothing counted: nothing to wake for
    await time.advance(60_000);
    s.append(refused("10.0.0.9"));
    expect(records().map((r) => r.type)).toEqual([
      "stratum.connection_refused",
      "stratum.connection_refused",
    ]);
  });

  it("never merges records outside the repeatable kinds", () => {
    const { s, records } = setup();
    const kinds = [
      { type: "state.transition", from: "READY", to: "MINING" },
      { type: "policy.decision", allow: false, reasons: ["x"] },
      { type: "command.executed", command: "mining.pause" },
      { type: "stratum.block_candidate", worker: "rig1", job: "j" },
      { type: "mining.paused", by: "local API" },
    ];
    for (let i = 0; i < 3; i++) for (const k of kinds) s.append(k);
    expect(records()).toHaveLength(15);
    expect(s.pending()).toEqual({ keys: 0, counted: 0 });
  });

  it("writes a changed run at once, after the count of the run it ends", () => {
    const { s, records } = setup();
    const accepted = (url: string, exp: number) => ({
      type: "assignment.accepted",
      upstream: { url, user: "owner1" },
      exp,
      why: "renewal",
    });
    for (let i = 0; i < 4; i++) s.append(accepted("stratum+tcp://a:3333", 100 + i));
    s.append(accepted("stratum+tcp://b:3333", 200));
    s.append(accepted("stratum+tcp://a:3333", 300));
    const r = records();
    expect(r.map((x) => (x.type === "audit.repeated" ? `x${x.count}` : x.exp))).toEqual([
      100,
      "x3",
      200,
      300,
    ]);
    expect(r[1]).toMatchObject({ of: "assignment.accepted", key: { stale: null } });
  });

  it("tracks at most maxKeys keys: the rest is counted as overflow and summarized", async () => {
    const { s, time, records } = setup({ maxKeys: 4 });
    for (let i = 0; i < 1000; i++) s.append(refused(`10.0.${i % 250}.1`));
    expect(s.pending().keys).toBe(5); // four keys and one overflow
    expect(records()).toHaveLength(4);
    await time.advance(60_000);
    const r = records();
    expect(r.filter((x) => x.overflow === true)).toEqual([
      expect.objectContaining({ of: "stratum.connection_refused", key: null, count: 984 }),
    ]);
    expect(total(r, "stratum.connection_refused")).toBe(1000);
    // A run kind never becomes overflow: a change is written whatever the cap.
    s.append({ type: "assignment.refused", reason: "AGENTD_E_JWS_EXPIRED" });
    expect(records().at(-1)).toMatchObject({ type: "assignment.refused" });
  });

  it("passes records through while the log cannot be written, and keeps a count it could not write", async () => {
    const time = fakeTime(T0);
    let writable = true;
    const written: Record<string, unknown>[] = [];
    const log = {
      get writable() {
        return writable;
      },
      head: () => ({ seq: written.length, hash: "h" }),
      append: (b: Readonly<Record<string, unknown>>) => {
        if (!writable) throw new Error("ENOSPC");
        written.push(b);
        return { seq: written.length, hash: "h" };
      },
    };
    const s = summarizeAudit(log, { clock: time.clock, timers: time.timers });
    s.append(refused("10.0.0.9"));
    s.append(refused("10.0.0.9"));
    writable = false;
    expect(() => s.append(refused("10.0.0.9"))).toThrow("ENOSPC");
    await time.advance(60_000);
    expect(s.pending().counted).toBe(1); // kept for when the log is back
    writable = true;
    await time.advance(60_000);
    expect(written.at(-1)).toMatchObject({ type: "audit.repeated", count: 1 });
    s.close();
  });

  it("20,000 refused connections on real sockets: a few records whose counts add up, and the chain verifies", async () => {
    const dir = tempDir();
    const time = fakeTime(T0);
    const audit = openAgentAudit({
      stateDir: dir,
      log: createLogger({ level: "silent" }),
      clock: time.clock,
      timers: time.timers,
    });
    let auditOpen = true;
    cleanups.push(() => auditOpen && audit.close());
    const proxy = createGuardedProxy({
      host: "127.0.0.1",
      port: 0,
      config: loadConfig({ env: {}, defaultPath: "/nonexistent/agentd.toml" }).config,
      clock: time.clock,
      timers: time.timers,
      logger: createLogger({ level: "silent" }),
      registry: new Registry(),
      audit,
      agentVersion: "0.1.0",
      engine: () => null,
    });
    cleanups.push(() => proxy.close());
    const { port } = await proxy.listen();
    proxy.apply({
      allow: false,
      reasons: ["consent.expired"],
      upstreams: [],
      networks: ["10.0.0.0/8"], // not 127.0.0.1
      maxWatts: null,
      maxTempC: null,
      jobClasses: null,
    });
    const N = 20_000;
    const ROUNDS = 10; // 20 s of fake time after each
    const CONCURRENCY = 16;
    const once = () =>
      new Promise<void>((resolve) => {
        const s = connect(port, "127.0.0.1");
        s.on("error", () => {});
        s.on("close", () => resolve()); // the proxy destroyed it: the refusal was audited
      });
    for (let round = 0; round < ROUNDS; round++) {
      let left = N / ROUNDS;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (left > 0) {
            left--;
            await once();
          }
        }),
      );
      await time.advance(20_000);
    }
    audit.close();
    auditOpen = false;
    const path = join(dir, AUDIT_FILE);
    const records = readLog(path);
    // One in full, then at most one summary per 60 s of the 200 s, and the last on close.
    expect(records.length).toBeLessThanOrEqual(1 + Math.ceil(200 / 60) + 1);
    expect(records[0]).toMatchObject({
      type: "stratum.connection_refused",
      reason: "network",
      ip: "127.0.0.1",
    });
    expect(total(records, "stratum.connection_refused")).toBe(N);
    expect(verifyChainLog(path).ok).toBe(true);
  }, 120_000);
});
