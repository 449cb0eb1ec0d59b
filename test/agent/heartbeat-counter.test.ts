import { spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { COUNTER_FILE, openHeartbeatCounter } from "../../agent/heartbeat-counter.ts";
import { fixedClock } from "../../lib/clock.ts";
import { AgentdError } from "../../lib/errors.ts";
import { REPO_ROOT } from "../support/cli.ts";

const T = 1_790_000_000;
const EPOCH = 2 ** 20;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "agentd-counter-"));
  dirs.push(d);
  return d;
}

describe("heartbeat counter", () => {
  it("counts 1, 2, 3 within an epoch chosen from the clock and written before use", () => {
    const path = join(tempDir(), COUNTER_FILE);
    const c = openHeartbeatCounter(path, fixedClock(T * 1000));
    // durable before the first counter
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ format: 1, data: { epoch: T } });
    expect(c.last()).toBe(0);
    expect([c.next(), c.next(), c.next()]).toEqual([T * EPOCH + 1, T * EPOCH + 2, T * EPOCH + 3]);
    expect([c.last(), c.epoch()]).toEqual([T * EPOCH + 3, T]);
  });

  it("starts above everything before after a restart, even with the clock behind", () => {
    const path = join(tempDir(), COUNTER_FILE);
    const clock = fixedClock(T * 1000);
    const first = openHeartbeatCounter(path, clock);
    const used = [first.next(), first.next()];
    clock.set((T - 3600) * 1000); // the clock went back an hour
    const second = openHeartbeatCounter(path, clock);
    expect(second.epoch()).toBe(T + 1);
    expect(second.next()).toBeGreaterThan(Math.max(...used));
  });

  it("after a restore from an older backup, starts above what the backup missed", () => {
    const dir = tempDir();
    const path = join(dir, COUNTER_FILE);
    const clock = fixedClock(T * 1000);
    openHeartbeatCounter(path, clock).next();
    copyFileSync(path, join(dir, "backup"));
    clock.set((T + 600) * 1000);
    const later = openHeartbeatCounter(path, clock);
    const sent = [later.next(), later.next()];
    // the state directory is restored from the backup, ten minutes later
    copyFileSync(join(dir, "backup"), path);
    clock.set((T + 1200) * 1000);
    const restored = openHeartbeatCounter(path, clock);
    expect(restored.next()).toBeGreaterThan(Math.max(...sent));
  });

  it("moves past a counter the control plane reports, durably", () => {
    const path = join(tempDir(), COUNTER_FILE);
    const clock = fixedClock(T * 1000);
    const c = openHeartbeatCounter(path, clock);
    c.next();
    const theirs = (T + 50) * EPOCH + 7; // a replay answer: the last counter it stored
    c.advancePast(theirs);
    const next = c.next();
    expect(next).toBeGreaterThan(theirs);
    expect(c.epoch()).toBe(T + 51);
    // an older counter changes nothing
    c.advancePast(T * EPOCH + 1);
    expect(c.next()).toBe(next + 1);
    // and the new epoch survives a restart
    expect(openHeartbeatCounter(path, clock).next()).toBeGreaterThan(next + 1);
  });

  it("refuses a corrupt or newer counter file instead of starting from zero", () => {
    const path = join(tempDir(), COUNTER_FILE);
    const clock = fixedClock(T * 1000);
    for (const [text, code] of [
      ['{"format":1,"data":{"epoch":-1}}\n', "AGENTD_E_FILE_CORRUPT"],
      ['{"format":1,"data":{}}\n', "AGENTD_E_FILE_CORRUPT"],
      ['{"format":2,"data":{"epoch":5}}\n', "AGENTD_E_FILE_FORMAT_NEWER"],
      ["not json", "AGENTD_E_FILE_CORRUPT"],
    ] as const) {
      writeFileSync(path, text, { mode: 0o600 });
      let err: unknown;
      try {
        openHeartbeatCounter(path, clock);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(AgentdError);
      expect((err as AgentdError).code).toBe(code);
    }
  });

  it("never hands out a counter twice across SIGKILLs at random moments", async () => {
    const dir = tempDir();
    const node = resolve(REPO_ROOT, "node_modules/.bin/node");
    const fixture = resolve(REPO_ROOT, "test/fixtures/counter-writer.ts");
    const all: number[] = [];
    const runs = 12;
    for (let run = 0; run < runs; run++) {
      const out = await new Promise<string>((done, failed) => {
        const child = spawn(node, [fixture, dir], { stdio: ["ignore", "pipe", "pipe"] });
        let text = "";
        child.stdout.setEncoding("utf8");
        child.stdout.on("data", (d: string) => {
          text += d;
          // killed once it has handed out some counters, at a moment of its choosing
          if (text.length > 2000 && child.exitCode === null) child.kill("SIGKILL");
        });
        child.on("error", failed);
        child.on("exit", (_code, signal) => {
          if (signal !== "SIGKILL") failed(new Error(`exited without SIGKILL: ${signal}`));
          else done(text);
        });
      });
      // a line cut by the kill is dropped: it was never sent whole
      const lines = out.split("\n").slice(0, -1);
      const counters = lines.map(Number);
      expect(counters.every((n) => Number.isSafeInteger(n))).toBe(true);
      all.push(...counters);
    }
    // strictly increasing across every run: nothing reused, nothing out of order
    for (let i = 1; i < all.length; i++) expect(all[i]).toBeGreaterThan(all[i - 1] as number);
    expect(all.length).toBeGreaterThan(runs * 50);
  }, 60_000);
});
