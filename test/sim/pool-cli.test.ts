import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { AGENTD_BIN, agentd } from "../support/cli.ts";
import { DIFF1, parseNotify, solve, TestClient } from "./pool-helpers.ts";

interface Running {
  readonly child: ChildProcessWithoutNullStreams;
  readonly lines: string[];
  /** Resolves with the n-th stdout line (from 1). */
  line(n: number): Promise<string>;
  readonly exited: Promise<number | null>;
}

const children: ChildProcessWithoutNullStreams[] = [];
const clients: TestClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
});

function startCli(args: string[]): Running {
  const child = spawn(
    AGENTD_BIN,
    ["sim", "pool", "--listen", "127.0.0.1:0", "--job-interval", "0", ...args],
    {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root" },
    },
  );
  children.push(child);
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout }).on("line", (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) w();
  });
  child.stderr.resume();
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const line = async (n: number): Promise<string> => {
    while (lines.length < n) {
      await Promise.race([new Promise<void>((r) => waiters.push(r)), exited]);
      if (child.exitCode !== null && lines.length < n) throw new Error(`exited before line ${n}`);
    }
    return lines[n - 1] as string;
  };
  return { child, lines, line, exited };
}

async function connectMiner(port: number, user = "alice") {
  const c = await TestClient.connect(port);
  clients.push(c);
  const sub = await c.request("mining.subscribe", ["cli-test/1"]);
  const [, extranonce1, size] = sub.result as [unknown, string, number];
  const auth = await c.request("mining.authorize", [user, "x"]);
  return { c, extranonce1, size, auth };
}

describe("agentd sim pool (the CLI)", () => {
  it("prints the ready line first, one line per accepted share, and exits 0 on SIGTERM", async () => {
    const pool = startCli(["--difficulty", String(2 ** -20), "--control-stdin"]);
    const ready = JSON.parse(await pool.line(1)) as { ready: boolean; host: string; port: number };
    expect(ready).toEqual({ ready: true, host: "127.0.0.1", port: expect.any(Number) });
    expect(ready.port).toBeGreaterThan(0);

    const { c, extranonce1, size } = await connectMiner(ready.port);
    const diff = await c.notification("mining.set_difficulty");
    expect(diff.params).toEqual([2 ** -20]);
    const job = parseNotify(await c.notification("mining.notify"));
    const submitted: string[] = [];
    const params: string[][] = [];
    for (const n of [1, 2]) {
      const e2 = n.toString(16).padStart(size * 2, "0");
      const sol = solve(job, extranonce1, e2, DIFF1 << 20n);
      params.push(["alice", job.jobId, e2, job.ntime, sol.nonceHex]);
      expect((await c.request("mining.submit", params.at(-1) ?? [])).result).toBe(true);
      submitted.push(sol.hash);
    }
    // a refused share (a duplicate) prints nothing
    const dup = await c.request("mining.submit", params[0] ?? []);
    expect(dup.error).toEqual([22, "Duplicate share", null]);

    for (const [i, hash] of submitted.entries()) {
      const doc = JSON.parse(await pool.line(2 + i)) as { share: Record<string, unknown> };
      expect(doc.share).toMatchObject({
        user: "alice",
        job: job.jobId,
        hash,
        difficulty: 2 ** -20,
        block: false,
        extranonce1,
      });
    }
    pool.child.stdin.write('{"op":"stats"}\n');
    const control = JSON.parse(await pool.line(4)) as {
      control: { ok: boolean; stats: { accepted: number } };
    };
    expect(control.control).toMatchObject({ ok: true, stats: { accepted: 2 } });

    pool.child.kill("SIGTERM");
    expect(await pool.exited).toBe(0);
    await c.closed;
    expect(pool.lines).toHaveLength(4);
  });

  it("applies its flags: fault, version mask, extranonce2 size, allowed users", async () => {
    const pool = startCli([
      "--fault",
      "reject:20",
      "--version-mask",
      "00ffe000",
      "--extranonce2-size",
      "4",
      "--allow-user",
      "alice",
      "--difficulty",
      String(2 ** -20),
    ]);
    const { port } = JSON.parse(await pool.line(1)) as { port: number };
    const c = await TestClient.connect(port);
    clients.push(c);
    const conf = await c.request("mining.configure", [
      ["version-rolling"],
      { "version-rolling.mask": "ffffffff" },
    ]);
    expect(conf.result).toEqual({ "version-rolling": true, "version-rolling.mask": "00ffe000" });
    const sub = await c.request("mining.subscribe", []);
    expect((sub.result as unknown[])[2]).toBe(4);
    expect((await c.request("mining.authorize", ["bob", "x"])).result).toBe(false);
    expect((await c.request("mining.authorize", ["alice", "x"])).result).toBe(true);
    const job = parseNotify(await c.notification("mining.notify"));
    const r = await c.request("mining.submit", [
      "alice",
      job.jobId,
      "00000000",
      job.ntime,
      "00000000",
    ]);
    expect(r.error).toEqual([20, "Rejected", null]);
    pool.child.kill("SIGINT");
    expect(await pool.exited).toBe(0);
  });

  it("refuses bad flags with a usage error (exit 2)", () => {
    for (const args of [
      ["--listen", "nowhere"],
      ["--fault", "explode"],
      ["--difficulty", "0"],
      ["--version-mask", "xyz"],
      ["--extranonce2-size", "40"],
    ]) {
      const r = agentd(["sim", "pool", ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/AGENTD_E_USAGE/);
      expect(r.stdout).toBe("");
    }
  });
});
