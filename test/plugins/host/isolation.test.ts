/**
 * The hostile driver (test/fixtures/driver-host/registry.ts, miner "attack") run by the real
 * launcher in a real host: every attempt on the agent must fail, and for the reason the
 * design gives — the OS user (EACCES, EPERM) and Node's permission model (ERR_ACCESS_DENIED).
 * A second run without the permission model shows what the OS user alone stops.
 */
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { LocalApiHandlers } from "../../../agent/local-api.ts";
import { startLocalApi } from "../../../agent/local-api.ts";
import { createLogger } from "../../../lib/log/logger.ts";
import type { OsUser } from "../../../plugins/host/os-user.ts";
import type { Targets } from "../../fixtures/driver-host/registry.ts";
import { ensureDriverUser } from "../../support/driver-user.ts";
import { FIXTURE_REGISTRY, testHost } from "./support.ts";

let user: OsUser;
let root: string;
let targets: Targets;
const connections = { engine: 0, open: 0 };
const servers: Server[] = [];
let api: { close(): Promise<void> };

beforeAll(async () => {
  user = ensureDriverUser();
  // The machine as the agent lays it out: a 0700 state dir holding the 0600 machine key, and
  // sockets in a directory anyone may enter, each protected by its own mode (so that the
  // socket's mode, not the directory, is what refuses the driver).
  root = mkdtempSync(join(tmpdir(), "agentd-isolation-"));
  chmodSync(root, 0o755);
  const state = join(root, "state");
  mkdirSync(state, { mode: 0o700 });
  writeFileSync(join(state, "machine.key"), "MACHINE-KEY-SECRET", { mode: 0o600 });
  const run = join(root, "run");
  mkdirSync(run, { mode: 0o755 });
  api = await startLocalApi({
    socket: join(run, "api.sock"),
    handlers: {} as LocalApiHandlers, // nothing may get far enough to call one
    logger: createLogger({ level: "silent" }),
  });
  const listen = async (path: string, mode: number, count: () => void) => {
    const server = createServer((s) => {
      count();
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(path, r));
    chmodSync(path, mode);
    servers.push(server);
  };
  // The container engine's socket, as podman's system service makes it: root's, 0660.
  await listen(join(run, "engine.sock"), 0o660, () => connections.engine++);
  await listen(join(run, "open.sock"), 0o666, () => connections.open++);
  targets = {
    key: join(state, "machine.key"),
    apiSocket: join(run, "api.sock"),
    engineSocket: join(run, "engine.sock"),
    openSocket: join(run, "open.sock"),
    runnerPid: process.ppid,
    writeTo: join(run, "written-by-driver"),
  };
});

afterAll(async () => {
  await api.close();
  for (const s of servers) await new Promise((r) => s.close(r));
  rmSync(root, { recursive: true, force: true });
});

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

/** The attack's outcomes, as `name → result`. */
async function attackWith(options: Parameters<typeof testHost>[0]) {
  const t = testHost(options);
  stops.push(() => t.host.stop());
  await t.host.start();
  const reading = await t.miner("attack", JSON.stringify(targets)).read();
  const outcomes = Object.fromEntries(reading.errors.map((e) => e.split("=") as [string, string]));
  return { t, outcomes };
}

describe("the hostile driver, in a host as the drivers' user with the permission model", () => {
  it("runs as that user, in /, with no environment and no fs writes", async () => {
    const t = testHost();
    stops.push(() => t.host.stop());
    await t.host.start();
    const id = await t.miner("whoami").detect();
    expect(id.model).toBe(`uid=${user.uid} gid=${user.gid} env=0 cwd=/ fsWrite=false`);
  });

  it("fails at every attempt on the agent, and the agent is unaffected", async () => {
    const before = { ...connections };
    const { t, outcomes } = await attackWith({});
    expect(outcomes).toEqual({
      readKey: "ERR_ACCESS_DENIED",
      readAgentEnviron: "ERR_ACCESS_DENIED",
      apiSocket: "EACCES",
      engineSocket: "EACCES",
      // The control: the driver can connect where anyone may, so EACCES above is the mode's.
      openSocket: "connected",
      signalAgent: "EPERM",
      signalRunner: "EPERM",
      spawnShell: "ERR_ACCESS_DENIED",
      worker: "ERR_ACCESS_DENIED",
      writeFile: "ERR_ACCESS_DENIED",
      ppid: String(process.pid), // it did aim at the agent: the host's parent is this process
    });
    expect(connections.engine).toBe(before.engine);
    expect(connections.open).toBe(before.open + 1);
    expect(existsSync(targets.writeTo)).toBe(false);
    expect(readFileSync(targets.key, "utf8")).toBe("MACHINE-KEY-SECRET");
    // The host is still serving, and this process (the agent) is alive to ask.
    expect((await t.miner("ok").read()).hashrateGhs).toBe(13_500);
    expect(t.events.filter((e) => e.type === "exited")).toEqual([]);
  });
});

describe("the hostile driver, with the OS user alone (the permission model off)", () => {
  it("still cannot read the key, reach the sockets, signal the agent or write; it can spawn", async () => {
    const { outcomes } = await attackWith({
      testOnly: { registryModule: FIXTURE_REGISTRY, permissionModel: false },
    });
    expect(outcomes).toMatchObject({
      readKey: "EACCES",
      readAgentEnviron: "EACCES",
      apiSocket: "EACCES",
      engineSocket: "EACCES",
      openSocket: "connected",
      signalAgent: "EPERM",
      signalRunner: "EPERM",
      writeFile: "EACCES",
      // What only the seat belt stops: a shell and a worker run (as the unprivileged user).
      spawnShell: "succeeded",
      worker: "succeeded",
    });
    expect(existsSync(targets.writeTo)).toBe(false);
  });
});
