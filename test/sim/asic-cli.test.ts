import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../lib/clock.ts";
import { systemTimers } from "../../lib/timers.ts";
import { BraiinsOsDriver } from "../../plugins/braiins/driver.ts";
import { DEFAULT_LIMITS } from "../../plugins/driver.ts";
import { SimCluster } from "../../sim/asic/cluster.ts";
import { AGENTD_BIN, agentd } from "../support/cli.ts";
import { apiJson } from "./asic-api-client.ts";
import { paramsOf } from "./asic-fake-pool.ts";
import { isSubmit, JOB_A, useHarness } from "./asic-harness.ts";

const h = useHarness();
const children: ChildProcess[] = [];
const clusters: SimCluster[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
  await Promise.all(clusters.splice(0).map((c) => c.stop()));
});

/** Spawns the real binary; resolves its stdout lines as they come. */
function spawnAgentd(args: string[]) {
  const child = spawn(AGENTD_BIN, args, {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) w();
  });
  const line = async (n: number) => {
    while (lines.length <= n) {
      if (child.exitCode !== null) throw new Error(`agentd exited ${child.exitCode}`);
      await new Promise<void>((r) => waiters.push(r));
    }
    return lines[n] as string;
  };
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  return { child, line, lines, exited };
}

describe("agentd sim asic", () => {
  it("prints the ready line first, serves each miner's API, mines, exits 0 on SIGTERM", async () => {
    const pool = await h.pool();
    const run = spawnAgentd([
      "sim",
      "asic",
      "--count",
      "2",
      "--profile",
      "s9",
      "--pool",
      pool.url,
      "--user",
      "acct",
      "--api-listen",
      "127.0.0.1:0",
      "--events",
    ]);
    const ready = JSON.parse(await run.line(0));
    expect(ready).toMatchObject({ ready: true });
    expect(ready.miners).toHaveLength(2);
    expect(ready.miners[0]).toMatchObject({ id: "s9-0", profile: "s9", worker: "acct.s9-0" });
    for (const m of ready.miners) {
      expect(m.api.host).toBe("127.0.0.1");
      const v = await apiJson(m.api.port, "version");
      expect((v.VERSION as { Type: string }[])[0]?.Type).toBe("Antminer S9");
    }
    const c0 = await pool.conn(0);
    const c1 = await pool.conn(1);
    const users = [c0, c1].map(
      async (c) => paramsOf(await c.waitFor((m) => m.method === "mining.authorize"))[0],
    );
    expect((await Promise.all(users)).sort()).toEqual(["acct.s9-0", "acct.s9-1"]);
    c0.setDifficulty(2 ** -20);
    c0.notify(JOB_A);
    await c0.waitFor(isSubmit);
    // --events: one JSON line per event after the ready line.
    const deadline = Date.now() + 10_000;
    while (!run.lines.some((l) => l.includes('"event":"submitted"')) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const submitted = run.lines.map((l) => JSON.parse(l)).find((e) => e.event === "submitted");
    expect(submitted).toMatchObject({
      miner: expect.stringMatching(/^s9-[01]$/),
      jobId: JOB_A.jobId,
    });

    run.child.kill("SIGTERM");
    expect(await run.exited).toBe(0);
    await c0.waitClosed();
  });

  it("an Antminer's ready line carries its web UI and its identity", async () => {
    const pool = await h.pool();
    const run = spawnAgentd(["sim", "asic", "--profile", "s19", "--pool", pool.url]);
    const ready = JSON.parse(await run.line(0));
    const m = ready.miners[0];
    expect(m.web).toMatchObject({ host: "127.0.0.1" });
    expect(m.web.port).toBeGreaterThan(0);
    expect(m.web.port).not.toBe(m.api.port);
    expect(m.mac).toMatch(/^02(:[0-9a-f]{2}){5}$/);
    run.child.kill("SIGINT");
    expect(await run.exited).toBe(0);
  });

  it("bosminer's ready line carries its gRPC API, which the braiins-os driver logs in to", async () => {
    const pool = await h.pool();
    const run = spawnAgentd(["sim", "asic", "--profile", "bosminer", "--pool", pool.url]);
    const ready = JSON.parse(await run.line(0));
    const m = ready.miners[0];
    expect(m.web).toBeNull();
    expect(m.grpc).toMatchObject({ host: "127.0.0.1" });
    expect(m.grpc.port).toBeGreaterThan(0);
    const d = new BraiinsOsDriver(
      { host: "127.0.0.1", apiPort: m.api.port, grpcPort: m.grpc.port },
      { clock: systemClock, timers: systemTimers, limits: DEFAULT_LIMITS, credentials: null },
    );
    const id = await d.detect();
    expect(id).toMatchObject({ family: "braiins-os", mac: m.mac, serial: m.serial });
    run.child.kill("SIGINT");
    expect(await run.exited).toBe(0);
  });

  it("bitaxe has no cgminer API (api null) but its AxeOS HTTP API (web)", async () => {
    const pool = await h.pool();
    const run = spawnAgentd(["sim", "asic", "--profile", "bitaxe", "--pool", pool.url]);
    const ready = JSON.parse(await run.line(0));
    expect(ready.miners).toEqual([
      {
        id: "bitaxe-0",
        profile: "bitaxe",
        worker: "sim.bitaxe-0",
        api: null,
        web: { host: "127.0.0.1", port: expect.any(Number) },
        mac: expect.stringMatching(/^02(:[0-9a-f]{2}){5}$/),
        serial: expect.stringMatching(/^SIM/),
      },
    ]);
    run.child.kill("SIGINT");
    expect(await run.exited).toBe(0);
  });

  it("refuses a missing profile or pool with a usage error (exit 2)", () => {
    const noProfile = agentd(["sim", "asic", "--pool", "127.0.0.1:3333"]);
    expect(noProfile.code).toBe(2);
    expect(noProfile.stderr).toMatch(/AGENTD_E_USAGE: --profile/);
    const noPool = agentd(["sim", "asic", "--profile", "s9"]);
    expect(noPool.code).toBe(2);
    const badFault = agentd([
      "sim",
      "asic",
      "--profile",
      "s9",
      "--pool",
      "127.0.0.1:1",
      "--fault",
      "melt",
    ]);
    expect(badFault.code).toBe(2);
    expect(badFault.stdout).toBe("");
  });
});

describe("SimCluster (the in-process API)", () => {
  it("runs N miners on one scheduler: every one of them submits valid work", async () => {
    const pool = await h.pool();
    const cluster = await SimCluster.start({ count: 4, profile: "s19", pools: [pool.url] });
    clusters.push(cluster);
    const conns = await Promise.all([0, 1, 2, 3].map((i) => pool.conn(i)));
    for (const c of conns) {
      await c.waitFor((m) => m.method === "mining.authorize");
      c.setDifficulty(2 ** -18);
      c.notify(JOB_A);
    }
    // Round-robin: a miner cannot starve the others.
    for (const c of conns) await c.waitForCount(isSubmit, 2);
    const ready = cluster.ready();
    expect(ready.miners.map((m) => m.id)).toEqual(["s19-0", "s19-1", "s19-2", "s19-3"]);
    expect(new Set(ready.miners.map((m) => m.api?.port)).size).toBe(4);
  });
});
