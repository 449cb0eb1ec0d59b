import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { AgentdConfig } from "../../lib/config/schema.ts";
import { createLogger } from "../../lib/log/logger.ts";
import { fakeTime } from "../../lib/timers.ts";
import { createSupervisor, type SupervisorDeps } from "../../supervisor/create-supervisor.ts";
import type { ServiceDriver } from "../../supervisor/driver.ts";
import type { SupervisorEvent } from "../../supervisor/reconciler.ts";

/**
 * Choosing the driver from the configuration (create-supervisor.ts): off is no supervisor, an
 * injected driver is used whatever the configuration says, the process driver keeps its
 * records under the state directory and is closed with the supervisor, the Docker driver is
 * on docker.host, and a bad services file or docker.host is refused before anything starts.
 * Fake time throughout: a timer left behind by close would show in `pending()`.
 */

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(over: {
  driver?: AgentdConfig["supervisor"]["driver"];
  servicesFile?: string;
  dockerHost?: string;
  inject?: ServiceDriver;
}) {
  const dir = mkdtempSync(join(tmpdir(), "agentd-create-sup-"));
  dirs.push(dir);
  const time = fakeTime(1_000_000);
  const events: SupervisorEvent[] = [];
  const config = {
    supervisor: {
      driver: over.driver ?? "off",
      services_file: over.servicesFile ?? "",
      data_dir: join(dir, "data"),
    },
    docker: { host: over.dockerHost ?? "" },
  } as Pick<AgentdConfig, "supervisor" | "docker">;
  const deps: SupervisorDeps = {
    workerId: "w1",
    stateDir: join(dir, "state"),
    clock: time.clock,
    timers: time.timers,
    logger: createLogger({ level: "silent" }),
    onEvent: (e) => events.push(e),
    ...(over.inject === undefined ? {} : { driver: over.inject }),
  };
  return { dir, time, events, create: () => createSupervisor(config, deps) };
}

function countingDriver() {
  const calls: string[] = [];
  const driver: ServiceDriver = {
    name: "memory",
    list: async () => {
      calls.push("list");
      return [];
    },
    hasImage: async () => true,
    create: async () => "x",
    start: async () => {},
    stop: async () => {},
    remove: async () => {},
    logs: async () => [],
    events: () => ({ close: () => {} }),
    ping: async () => {},
  };
  return { driver, calls };
}

describe("createSupervisor", () => {
  it("supervisor.driver off: no supervisor", () => {
    expect(setup({ driver: "off" }).create()).toBeNull();
  });

  it("an injected driver is used even when the configuration says off", async () => {
    const { driver, calls } = countingDriver();
    const { create, time } = setup({ driver: "off", inject: driver });
    const sup = create();
    expect(sup?.driverName).toBe("memory");
    await sup?.reconciler.kick("test");
    expect(calls).toContain("list");
    await sup?.close();
    expect(time.pending()).toBe(0);
  });

  it("process: records under <stateDir>/services, the driver closed with the supervisor", async () => {
    const { create, time, dir } = setup({ driver: "process" });
    const sup = create();
    expect(sup?.driverName).toBe("processes");
    await sup?.reconciler.kick("test"); // a list: the driver loads its state directory
    expect(existsSync(join(dir, "state", "services"))).toBe(true);
    expect(sup?.status().driver).toEqual({ name: "processes", up: true });
    await sup?.close();
    expect(time.pending()).toBe(0); // the process driver's poll too
  });

  it("docker: on docker.host; an API that does not answer is retried, not fatal", async () => {
    const { create, time, dir, events } = setup({
      driver: "docker",
      dockerHost: "unix:///nonexistent/docker.sock",
    });
    const sup = create();
    expect(sup?.driverName).toBe("unix:///nonexistent/docker.sock");
    await sup?.reconciler.kick("test");
    expect(sup?.reconciler.driverUp).toBe(false);
    expect(events.map((e) => e.type)).toContain("driver.unreachable");
    expect(existsSync(join(dir, "state", "services"))).toBe(false);
    await sup?.close();
    expect(time.pending()).toBe(0);
  });

  it("refuses a services file it cannot read and a docker.host it cannot use", () => {
    const { create: missing } = setup({ driver: "docker", servicesFile: "/nonexistent.toml" });
    expect(missing).toThrow(expect.objectContaining({ code: "AGENTD_E_CONFIG_UNREADABLE" }));
    const { create: badHost } = setup({ driver: "docker", dockerHost: "http://example" });
    expect(badHost).toThrow(expect.objectContaining({ code: "AGENTD_E_CONFIG_TYPE" }));
  });
});
