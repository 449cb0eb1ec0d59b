import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../../lib/clock.ts";
import { readStateFile, writeStateFile } from "../../lib/fs/state-file.ts";
import { createLogger } from "../../lib/log/logger.ts";
import { backgroundTimers } from "../../lib/timers.ts";
import type { DriverEvent } from "../../supervisor/driver.ts";
import type { Desired } from "../../supervisor/plan.ts";
import {
  executableImageId,
  type ProcessDriver,
  type ProcessDriverOptions,
  processDriver,
  readProcStat,
} from "../../supervisor/process-driver.ts";
import { Reconciler, type SupervisorEvent } from "../../supervisor/reconciler.ts";
import { type ServiceKind, type ServiceSpec, specHash } from "../../supervisor/spec.ts";

/**
 * The process driver with real child processes (test/fixtures/process-service.ts): lifecycle
 * and output, the image id as the executable's SHA-256, exit codes, restarts and crash loops
 * driven by the real Reconciler, adoption after an agent restart (a real agent process that
 * exits), and a recorded pid that now belongs to another process, which is never signalled.
 */

const NODE = process.execPath;
const FIXTURE = fileURLToPath(new URL("../fixtures/process-service.ts", import.meta.url));
const DRIVER = new URL("../../supervisor/process-driver.ts", import.meta.url).href;
const TIMERS = new URL("../../lib/timers.ts", import.meta.url).href;
const ZERO_ID = `sha256:${"0".repeat(64)}`;
let NODE_ID = "";

beforeAll(async () => {
  NODE_ID = await executableImageId(NODE);
});

// ---- cleanup: every process started is killed with its group, only if it is still ours -------

const started: { pid: number; starttime: number }[] = [];
const drivers: ProcessDriver[] = [];
const reconcilers: Reconciler[] = [];
const dirs: string[] = [];

function remember(pid: number | null): void {
  if (pid === null) return;
  const st = readProcStat(pid);
  if (st !== null && !started.some((s) => s.pid === pid && s.starttime === st.starttime)) {
    started.push({ pid, starttime: st.starttime });
  }
}

afterEach(async () => {
  for (const r of reconcilers.splice(0)) await r.close();
  for (const e of drivers.splice(0)) e.close();
  for (const { pid, starttime } of started.splice(0)) {
    const st = readProcStat(pid);
    if (st !== null && st.starttime !== starttime) continue; // not ours any more
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "agentd-proc-"));
  dirs.push(d);
  return d;
}

/** A driver whose started processes are remembered for cleanup, and its events. */
function driverOn(o: Partial<ProcessDriverOptions> & { stateDir: string }) {
  const driver = processDriver({ worker: "w1", pollMs: 100, timers: backgroundTimers, ...o });
  drivers.push(driver);
  const events: (DriverEvent & { at: number })[] = [];
  driver.events(
    (e) => {
      events.push({ ...e, at: performance.now() });
      if (e.action === "start") remember(driver.pid(e.id));
    },
    () => {},
  );
  return { driver, events };
}

function spec(dir: string, over: Partial<ServiceSpec> = {}): ServiceSpec {
  return {
    kind: "translator",
    image: null,
    command: [NODE, FIXTURE],
    env: { GREETING: "hi" },
    volumes: [{ source: join(dir, "work"), target: "/data", readOnly: false }],
    ports: [],
    user: null,
    memoryBytes: null,
    cpus: null,
    readOnlyRoot: false,
    health: { type: "none" },
    dependsOn: [],
    restart: { minMs: 50, maxMs: 200, crashloopFailures: 3, crashloopWindowMs: 10_000 },
    stopTimeoutS: 2,
    ...over,
  };
}

function reconcilerOn(driver: ProcessDriver) {
  const events: (SupervisorEvent & { at: number })[] = [];
  const r = new Reconciler({
    driver,
    clock: systemClock,
    timers: backgroundTimers,
    logger: createLogger({ level: "silent" }),
    probe: async () => true,
    random: () => 0, // the backoff is then exactly restart.minMs
    resyncMs: 60_000,
    healthMs: 60_000,
    onEvent: (e) => events.push({ ...e, at: performance.now() }),
  });
  reconcilers.push(r);
  return { r, events };
}

const target = (s: ServiceSpec, image = NODE_ID) =>
  new Map<ServiceKind, Desired>([[s.kind, { spec: s, image }]]);

async function waitFor<T>(
  what: string,
  f: () => T | Promise<T>,
  ms = 5_000,
): Promise<Exclude<T, null | undefined | false>> {
  const until = performance.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== null && v !== false)
      return v as Exclude<T, null | undefined | false>;
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const gone = (pid: number) => {
  const st = readProcStat(pid);
  return st === null || st.state === "Z";
};

const lineWith = async (e: ProcessDriver, id: string, prefix: string) =>
  (await e.logs(id, 500)).find((l) => l.startsWith(prefix));

describe("the process driver", () => {
  it("creates, starts, lists, logs, stops, starts again and removes a process", async () => {
    const dir = tempDir();
    const { driver, events } = driverOn({ stateDir: join(dir, "state") });
    expect(driver.name).toBe("processes");
    await driver.ping();
    const s = spec(dir);
    const id = await driver.create({
      kind: "translator",
      spec: s,
      image: NODE_ID,
      hash: "h1",
      secretEnv: { SECRET: "s3cr3t" },
    });
    expect(await driver.list()).toEqual([
      {
        id,
        kind: "translator",
        image: NODE_ID,
        hash: "h1",
        running: false,
        createdAt: expect.any(Number),
      },
    ]);
    await driver.start(id);
    const pid = driver.pid(id) as number;
    expect(pid).toBeGreaterThan(0);
    expect((await driver.list())[0]?.running).toBe(true);
    expect(events.map((e) => e.action)).toEqual(["start"]);

    // its own process group and session; argv as given; only the spec's environment
    expect(readProcStat(pid)?.pgrp).toBe(pid);
    expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, 2)).toEqual([
      NODE,
      FIXTURE,
    ]);
    const environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").filter(Boolean);
    expect(environ.map((kv) => kv.split("=")[0]).sort()).toEqual(["GREETING", "PATH", "SECRET"]);

    const port = Number(
      (await waitFor("listening", () => lineWith(driver, id, "listening"))).split(" ")[1],
    );
    const hello = await new Promise<string>((resolve, reject) => {
      const c = connect(port, "127.0.0.1");
      let got = "";
      c.on("data", (d) => {
        got += d.toString();
      });
      c.on("end", () => resolve(got));
      c.on("error", reject);
    });
    expect(hello).toBe("hello\n");
    const logs = await driver.logs(id, 10);
    expect(logs).toContain(`ready pid=${pid} cwd=${join(dir, "work")} greeting=hi secret=s3cr3t`);
    expect(logs).toContain("a line on stderr");
    expect(await driver.logs(id, 1)).toHaveLength(1);
    // the secret is in memory only, never in the state file
    const stateText = readFileSync(join(dir, "state", "processes.json"), "utf8");
    expect(stateText).not.toContain("s3cr3t");
    expect(stateText).toContain('"secretKeys":["SECRET"]');
    expect(statSync(join(dir, "state", "processes.json")).mode & 0o777).toBe(0o600);

    // SIGTERM: the fixture exits 0
    await driver.stop(id, 2);
    expect(gone(pid)).toBe(true);
    expect(events.map((e) => [e.action, e.exitCode])).toEqual([
      ["start", null],
      ["die", 0],
      ["stop", null],
    ]);
    expect((await driver.list())[0]?.running).toBe(false);
    expect(await driver.logs(id, 1)).toEqual(["term"]);
    await driver.stop(id, 2); // stopping a stopped one: nothing to do

    // started again: the same record, a new process; the earlier output is kept
    await driver.start(id);
    const pid2 = driver.pid(id) as number;
    expect(pid2).not.toBe(pid);
    await driver.start(id); // already running: nothing to do
    expect(driver.pid(id)).toBe(pid2);
    await waitFor("second ready", async () =>
      (await driver.logs(id, 500)).some((l) => l.startsWith(`ready pid=${pid2}`)),
    );
    expect(await driver.logs(id, 500)).toContain("term");

    // removal kills (as Docker's forced removal) and forgets
    await driver.remove(id);
    expect(gone(pid2)).toBe(true);
    expect(await driver.list()).toEqual([]);
    expect(events.at(-1)?.action).toBe("destroy");
    expect(events.filter((e) => e.action === "die").map((e) => e.exitCode)).toEqual([0, 137]);
    await driver.remove(id); // already gone: as Docker's 404, no error
    await expect(driver.logs(id, 5)).rejects.toThrow(/no service process/);
  });

  it("stop sends SIGTERM, then SIGKILL after the timeout, to the whole process group", async () => {
    const dir = tempDir();
    const { driver, events } = driverOn({ stateDir: join(dir, "state") });
    const s = spec(dir, { command: [NODE, FIXTURE, "--ignore-term", "--grandchild"] });
    const id = await driver.create({ kind: "translator", spec: s, image: NODE_ID, hash: "h" });
    await driver.start(id);
    const grandchild = Number(
      (await waitFor("grandchild", () => lineWith(driver, id, "grandchild"))).split(" ")[1],
    );
    await waitFor("listening", () => lineWith(driver, id, "listening"));
    expect(gone(grandchild)).toBe(false);
    const t0 = performance.now();
    await driver.stop(id, 0.3);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    expect(await driver.logs(id, 500)).toContain("ignoring term");
    // killed by SIGKILL: 128 + 9, as Docker reports it; the grandchild went with the group
    expect(events.find((e) => e.action === "die")?.exitCode).toBe(137);
    await waitFor("grandchild gone", () => gone(grandchild), 2_000);
  });

  it("an image id is the SHA-256 of the executable; a mismatch or a replaced file is refused", async () => {
    const dir = tempDir();
    const bin = join(dir, "bin");
    mkdirSync(bin);
    const svc = join(bin, "svc");
    copyFileSync("/bin/sleep", svc);
    const SVC_ID = await executableImageId(svc);
    const sha = execFileSync("sha256sum", [NODE], { encoding: "utf8" }).split(" ")[0];
    expect(NODE_ID).toBe(`sha256:${sha}`);
    expect(SVC_ID).not.toBe(NODE_ID);

    const nodeSpec = spec(dir);
    // a bare name, looked up on the spec's PATH
    const svcSpec = spec(dir, { command: ["svc", "30"], env: { PATH: bin } });
    const specs = [nodeSpec, svcSpec];
    const { driver } = driverOn({ stateDir: join(dir, "state"), specs: () => specs });
    expect(await driver.hasImage(NODE_ID)).toBe(true);
    expect(await driver.hasImage(SVC_ID)).toBe(true);
    expect(await driver.hasImage(ZERO_ID)).toBe(false);
    expect(await driver.hasImage("sha256:nothex")).toBe(false);
    // a driver that runs nothing has no images, even if node is on its PATH
    const { driver: bare } = driverOn({ stateDir: join(dir, "state2") });
    expect(await bare.hasImage(NODE_ID)).toBe(false);

    await expect(
      driver.create({ kind: "translator", spec: nodeSpec, image: ZERO_ID, hash: "h" }),
    ).rejects.toThrow(/not the allowed image/);
    await expect(
      driver.create({ kind: "translator", spec: nodeSpec, image: SVC_ID, hash: "h" }),
    ).rejects.toThrow(/not the allowed image/);
    await expect(
      driver.create({
        kind: "translator",
        spec: spec(dir, { command: ["no-such-program-here"] }),
        image: NODE_ID,
        hash: "h",
      }),
    ).rejects.toThrow(/not an executable file/);
    expect(await driver.list()).toEqual([]);

    const id = await driver.create({ kind: "lnd", spec: svcSpec, image: SVC_ID, hash: "h" });
    await driver.start(id);
    const pid = driver.pid(id) as number;
    expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0]).toBe("svc"); // argv0
    await driver.stop(id, 1);
    // the file is replaced on disk (an upgrade): not the allowed executable any more
    copyFileSync("/bin/true", svc);
    expect(await executableImageId(svc)).not.toBe(SVC_ID); // the cache saw the change
    await expect(driver.start(id)).rejects.toThrow(/not the allowed image/);
    expect(driver.pid(id)).toBeNull();
    expect(await driver.hasImage(SVC_ID)).toBe(false);
  });

  it("a killed process is restarted by the Reconciler after its backoff; quick crashes are a crash loop", async () => {
    const dir = tempDir();
    const s = spec(dir);
    const { driver, events } = driverOn({ stateDir: join(dir, "state"), specs: () => [s] });
    const { r, events: sup } = reconcilerOn(driver);
    r.start();
    await r.setTarget(target(s));
    const [a] = await driver.list();
    const id = a?.id as string;
    expect(a?.running).toBe(true);

    const latencies: { die: number; started: number; listening: number }[] = [];
    let pid = driver.pid(id) as number;
    for (let i = 1; i <= 2; i++) {
      await waitFor("listening", () => lineWith(driver, id, `ready pid=${pid}`));
      const t0 = performance.now();
      process.kill(pid, "SIGKILL");
      const restarted = await waitFor("restarted", () => {
        const p = driver.pid(id);
        return p !== null && p !== pid ? p : null;
      });
      const started = (events.filter((e) => e.action === "start").at(-1)?.at ?? 0) - t0;
      const die = (events.filter((e) => e.action === "die").at(-1)?.at ?? 0) - t0;
      await waitFor("listening again", async () => {
        const logs = await driver.logs(id, 500);
        const at = logs.findIndex((l) => l.startsWith(`ready pid=${restarted}`));
        return at >= 0 && logs.slice(at).some((l) => l.startsWith("listening"));
      });
      latencies.push({ die, started, listening: performance.now() - t0 });
      pid = restarted;
    }
    console.log("death → restarted by the Reconciler (ms):", JSON.stringify(latencies));
    for (const l of latencies) expect(l.started).toBeLessThan(1_000);
    expect(events.filter((e) => e.action === "die").map((e) => e.exitCode)).toEqual([137, 137]);
    expect(sup.filter((e) => e.type === "service.exited")).toMatchObject([
      { exitCode: 137 },
      { exitCode: 137 },
    ]);
    expect(sup.filter((e) => e.type === "service.restart_scheduled")).toMatchObject([
      { inMs: 50, failures: 1 },
      { inMs: 50, failures: 2 }, // full jitter at random 0: never under the minimum
    ]);
    // the same record was started again, never a second one created
    expect((await driver.list()).map((x) => x.id)).toEqual([id]);

    // the third failure within the window: a crash loop, no more restarts
    await waitFor("listening", () => lineWith(driver, id, `ready pid=${pid}`));
    process.kill(pid, "SIGKILL");
    await waitFor("crash loop", () => sup.some((e) => e.type === "service.crashloop"));
    await new Promise((res) => setTimeout(res, 500));
    expect(driver.pid(id)).toBeNull();
    expect(events.filter((e) => e.action === "start")).toHaveLength(3);
    expect(r.status().find((x) => x.kind === "translator")).toMatchObject({
      state: "stopped",
      hold: "crashloop",
      restarts: 2,
      lastExitCode: 137,
    });
  });

  it("a service that crashes on its own ends in a crash loop with its exit code", async () => {
    const dir = tempDir();
    const s = spec(dir, { command: [NODE, FIXTURE, "--crash-after=30"] });
    const { driver, events } = driverOn({ stateDir: join(dir, "state"), specs: () => [s] });
    const { r, events: sup } = reconcilerOn(driver);
    r.start();
    await r.setTarget(target(s));
    await waitFor("crash loop", () => sup.some((e) => e.type === "service.crashloop"), 8_000);
    await new Promise((res) => setTimeout(res, 300));
    expect(events.filter((e) => e.action === "start")).toHaveLength(3);
    expect(events.filter((e) => e.action === "die").map((e) => e.exitCode)).toEqual([3, 3, 3]);
    expect((await driver.list()).map((x) => x.running)).toEqual([false]);
  });

  it("after an agent restart, a still-running service is adopted: same id, no duplicate; its end is noticed", async () => {
    const dir = tempDir();
    const stateDir = join(dir, "state");
    const s = spec(dir, { command: [NODE, FIXTURE, "--tick=20"] });
    const hash = specHash(s, NODE_ID);
    // The first agent: a real process that creates and starts the service, then exits.
    const script = `
      const { processDriver } = await import(${JSON.stringify(DRIVER)});
      const { backgroundTimers } = await import(${JSON.stringify(TIMERS)});
      const [stateDir, spec, image, hash] = process.argv.slice(1);
      const e = processDriver({ stateDir, worker: "w1", timers: backgroundTimers });
      const id = await e.create({ kind: "translator", spec: JSON.parse(spec), image, hash });
      await e.start(id);
      console.log(JSON.stringify({ id, pid: e.pid(id) }));
      process.exit(0);
    `;
    const out = execFileSync(
      NODE,
      ["--input-type=module", "-e", script, stateDir, JSON.stringify(s), NODE_ID, hash],
      { encoding: "utf8", timeout: 10_000 },
    );
    const first = JSON.parse(out) as { id: string; pid: number };
    remember(first.pid);
    expect(gone(first.pid)).toBe(false);

    // The second agent on the same state directory.
    const { driver, events } = driverOn({ stateDir, specs: () => [s] });
    const { r, events: sup } = reconcilerOn(driver);
    r.start();
    await r.setTarget(target(s));
    expect(await driver.list()).toMatchObject([{ id: first.id, hash, running: true }]);
    expect(driver.pid(first.id)).toBe(first.pid);
    expect(events).toEqual([]); // nothing created or started: no duplicate
    expect(sup.filter((e) => e.type === "service.started")).toEqual([]);
    // it kept running and writing after its agent exited (output to a file, not a pipe)
    const ticks = async () =>
      Number(
        (await driver.logs(first.id, 500))
          .filter((l) => l.startsWith("tick"))
          .at(-1)
          ?.split(" ")[1] ?? 0,
      );
    const before = await ticks();
    await waitFor("more ticks", async () => (await ticks()) > before + 3);
    expect(await driver.logs(first.id, 500)).toContain(
      `ready pid=${first.pid} cwd=${join(dir, "work")} greeting=hi secret=`,
    );

    // Not our child: its end is noticed by polling /proc (exit code unknown), and restarted.
    process.kill(first.pid, "SIGKILL");
    const die = await waitFor("die", () => events.find((e) => e.action === "die"));
    expect(die).toMatchObject({ id: first.id, exitCode: null });
    const pid2 = await waitFor("restarted", () => {
      const p = driver.pid(first.id);
      return p !== null && p !== first.pid ? p : null;
    });
    expect(readProcStat(pid2)?.pgrp).toBe(pid2);
    expect((await driver.list()).map((x) => [x.id, x.running])).toEqual([[first.id, true]]);
    // and this one is the new agent's child: its exit code is known again
    await waitFor("listening", () => lineWith(driver, first.id, `ready pid=${pid2}`));
    await waitFor("its handler", async () =>
      (await driver.logs(first.id, 500)).at(-1)?.startsWith("tick"),
    );
    await driver.stop(first.id, 2);
    expect(events.filter((e) => e.action === "die").map((e) => e.exitCode)).toEqual([null, 0]);
  });

  it("a recorded pid that now belongs to another process is never signalled", async () => {
    const dir = tempDir();
    const stateDir = join(dir, "state");
    const { driver: first } = driverOn({ stateDir });
    const id = await first.create({
      kind: "translator",
      spec: spec(dir),
      image: NODE_ID,
      hash: "h",
    });
    await first.start(id);
    const pid = first.pid(id) as number;
    await waitFor("listening", () => lineWith(first, id, "listening"));
    first.close(); // the agent goes away
    // The pid is now "another process": its start time is not the one recorded.
    const file = readStateFile(join(stateDir, "processes.json"), { format: 1 });
    const data = file?.data as { records: { starttime: number }[] };
    for (const rec of data.records) rec.starttime += 1;
    writeStateFile(join(stateDir, "processes.json"), 1, data);

    const { driver, events } = driverOn({ stateDir });
    expect(await driver.list()).toMatchObject([{ id, running: false }]);
    expect(driver.pid(id)).toBeNull();
    await driver.stop(id, 1);
    await driver.remove(id);
    expect(await driver.list()).toEqual([]);
    expect(events.map((e) => e.action)).toEqual(["destroy"]);
    // untouched: still running, never asked to stop
    await new Promise((res) => setTimeout(res, 200));
    expect(gone(pid)).toBe(false);
    const mine = readFileSync(join(stateDir, "processes.json"), "utf8");
    expect(mine).not.toContain(id);
  });

  it("keeps the last logLines lines and a small output file", async () => {
    const dir = tempDir();
    const stateDir = join(dir, "state");
    const { driver } = driverOn({ stateDir, logLines: 5, logFileBytes: 200, pollMs: 20 });
    const s = spec(dir, { command: [NODE, FIXTURE, "--tick=2"] });
    const id = await driver.create({ kind: "translator", spec: s, image: NODE_ID, hash: "h" });
    await driver.start(id);
    await waitFor(
      "ticks",
      async () => Number((await driver.logs(id, 100)).at(-1)?.split(" ")[1]) >= 150,
    );
    const logs = await driver.logs(id, 100);
    expect(logs).toHaveLength(5);
    const n = logs.map((l) => Number(l.split(" ")[1]));
    expect(n.slice(1).map((x, i) => x - (n[i] as number))).toEqual([1, 1, 1, 1]);
    expect(statSync(join(stateDir, "logs", `${id}.log`)).size).toBeLessThan(2_000);
  });

  it.skipIf(process.getuid?.() !== 0)("runs as spec.user (as root)", async () => {
    const dir = tempDir();
    const s = spec(dir, { command: ["/usr/bin/id"], user: "65534:65534", volumes: [] });
    const image = await executableImageId("/usr/bin/id");
    const { driver, events } = driverOn({ stateDir: join(dir, "state") });
    const id = await driver.create({ kind: "translator", spec: s, image, hash: "h" });
    await driver.start(id);
    await waitFor("exit", () => events.some((e) => e.action === "die"));
    expect((await driver.logs(id, 5)).join("\n")).toMatch(/^uid=65534\(\w+\) gid=65534/);
  });

  it("refuses another user when agentd is not root", async () => {
    const dir = tempDir();
    const { driver } = driverOn({ stateDir: join(dir, "state"), uid: 1000, gid: 1000 });
    const s = spec(dir, { user: "65534:65534" });
    await expect(
      driver.create({ kind: "translator", spec: s, image: NODE_ID, hash: "h" }),
    ).rejects.toThrow(/needs agentd to run as root/);
    await expect(
      driver.create({
        kind: "translator",
        spec: spec(dir, { user: "65534" }),
        image: NODE_ID,
        hash: "h",
      }),
    ).rejects.toThrow(/needs its gid/);
    // its own uid:gid needs no privilege
    await driver.create({
      kind: "translator",
      spec: spec(dir, { user: "1000:1000" }),
      image: NODE_ID,
      hash: "h",
    });
  });
});
