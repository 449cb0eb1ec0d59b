import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  buildNodeImage,
  DEFAULT_IMAGE,
  dockerClient,
  lastImageBuild,
  type PodmanEndpoint,
  podmanAvailable,
  testPodman,
} from "./podman.ts";

/**
 * The Podman service the supervisor's tests run against (podman.ts), driven through dockerode
 * exactly as the supervisor will drive Docker. Also pins the ways Podman's
 * Docker API differs from Docker's (listed at the top of podman.ts), so an upgrade that changes
 * one shows up here.
 */

interface DockerEvent {
  Type: string;
  Action: string;
  status?: string;
  id?: string;
  from?: string;
  time: number;
  timeNano: number;
  Actor: { ID: string; Attributes: Record<string, string> };
}

interface EventWatch {
  readonly events: DockerEvent[];
  waitFor(pred: (e: DockerEvent) => boolean, timeoutMs?: number): Promise<DockerEvent>;
  close(): void;
}

async function watchEvents(docker: Docker, filters: Record<string, string[]>): Promise<EventWatch> {
  const stream = (await docker.getEvents({ filters })) as NodeJS.ReadableStream & {
    destroy(): void;
  };
  const events: DockerEvent[] = [];
  const waiters: (() => void)[] = [];
  let partial = "";
  stream.on("data", (chunk: Buffer) => {
    partial += chunk.toString("utf8");
    const lines = partial.split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) if (line.trim() !== "") events.push(JSON.parse(line) as DockerEvent);
    for (const w of waiters.splice(0)) w();
  });
  stream.on("error", () => undefined);
  return {
    events,
    async waitFor(pred, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = events.find(pred);
        if (found !== undefined) return found;
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new Error(`no such event; got ${events.map((e) => e.Action).join(" ")}`);
        }
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, left);
        });
      }
    },
    close: () => stream.destroy(),
  };
}

async function rpc(port: number, cookie: string, method: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}/`, {
    method: "POST",
    headers: { authorization: `Basic ${Buffer.from(cookie).toString("base64")}` },
    body: JSON.stringify({ jsonrpc: "1.0", id: 1, method, params: [] }),
    signal: AbortSignal.timeout(2000),
  });
}

/** Polls until the bitcoind in the container answers RPC with the cookie it wrote. */
async function waitForRpc(port: number, datadir: string, timeoutMs = 15_000): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const cookie = readFileSync(join(datadir, ".cookie"), "utf8");
      const res = await rpc(port, cookie, "getblockchaininfo");
      if (res.status === 200) return ((await res.json()) as { result: unknown }).result;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`bitcoind in the container never answered: ${String(last)}`);
}

const availability = podmanAvailable(inject("agentdPodman"));
const title = availability.available
  ? "the test Podman service (its Docker API through dockerode)"
  : `the test Podman service — skipped: ${availability.reason}`;

describe.skipIf(!availability.available)(title, () => {
  let podman: PodmanEndpoint;
  let docker: Docker;
  let imageId: string;
  const run = randomBytes(6).toString("hex");
  const label = `agentd.test.podman=${run}`;
  const dirs: string[] = [];
  const dataDir = () => {
    const d = mkdtempSync(join(tmpdir(), "agentd-podman-"));
    chmodSync(d, 0o777); // the containers run as nobody
    dirs.push(d);
    return d;
  };

  beforeAll(async () => {
    podman = await testPodman();
    docker = dockerClient(podman);
    const t0 = performance.now();
    imageId = await buildNodeImage(podman);
    const ms = Math.round(performance.now() - t0);
    console.info(
      `podman: service up in ${podman.startMs} ms (${podman.driver}); image ${imageId.slice(0, 19)} ` +
        (lastImageBuild === null
          ? `reused in ${ms} ms`
          : `built in ${ms} ms (tar ${lastImageBuild.tarMs} ms, podman import ${lastImageBuild.importMs} ms)`),
    );
  }, 180_000);

  afterAll(async () => {
    if (docker !== undefined) {
      const mine = await docker.listContainers({ all: true, filters: { label: [label] } });
      await Promise.all(mine.map((c) => docker.getContainer(c.Id).remove({ force: true })));
    }
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("builds the simulator image once per run; inspect by id answers with the same id", async () => {
    expect(imageId).toMatch(/^sha256:[0-9a-f]{64}$/);
    const t0 = performance.now();
    expect(await buildNodeImage(podman)).toBe(imageId);
    expect(performance.now() - t0).toBeLessThan(50); // cached in the process
    const byId = await docker.getImage(imageId).inspect();
    expect(byId.Id).toBe(imageId);
    expect(byId.RepoTags).toContain(DEFAULT_IMAGE);
    expect(byId.Config.Entrypoint).toEqual(["/usr/local/bin/node"]);
    // the bare hex and a 12-digit prefix work too, and so does the name without localhost/
    expect((await docker.getImage(imageId.slice(7)).inspect()).Id).toBe(imageId);
    expect((await docker.getImage(imageId.slice(7, 19)).inspect()).Id).toBe(imageId);
    expect((await docker.getImage("agentd-sim-node:test").inspect()).Id).toBe(imageId);
    await expect(docker.getImage(`sha256:${"0".repeat(64)}`).inspect()).rejects.toMatchObject({
      statusCode: 404,
    });
  });

  it("runs a simulated bitcoind: published port, SIGTERM exits 0 fast, events, label listing, SIGKILL 137", async () => {
    const events = await watchEvents(docker, { label: [label], type: ["container"] });
    try {
      const datadir = dataDir();
      const container = await docker.createContainer({
        Image: imageId,
        name: `agentd-podman-btc-${run}`,
        Cmd: ["/sim/services/bitcoind.ts", "--datadir", "/data", "--rpcbind", "0.0.0.0"],
        Labels: { "agentd.test.podman": run, "agentd.service": "bitcoind" },
        User: "65534:65534",
        ExposedPorts: { "8332/tcp": {} },
        HostConfig: {
          PortBindings: { "8332/tcp": [{ HostIp: "127.0.0.1", HostPort: "" }] },
          Binds: [`${datadir}:/data`],
          RestartPolicy: { Name: "no" },
          ReadonlyRootfs: true,
          Memory: 256 * 1024 * 1024,
          NanoCpus: 500_000_000,
        },
      });
      const created = await container.inspect();
      expect(created.HostConfig.RestartPolicy).toEqual({ Name: "no", MaximumRetryCount: 0 });
      expect(created.HostConfig.ReadonlyRootfs).toBe(true);
      expect(created.HostConfig.Memory).toBe(256 * 1024 * 1024);
      expect(created.HostConfig.NanoCpus).toBe(500_000_000);
      expect(created.Config.User).toBe("65534:65534");

      const t0 = performance.now();
      await container.start();
      const startedMs = performance.now() - t0;
      await events.waitFor((e) => e.Action === "start" && e.Actor.ID === container.id);
      const info = await container.inspect();
      expect(info.State.Running).toBe(true);
      const port = Number(info.NetworkSettings.Ports["8332/tcp"]?.[0]?.HostPort);
      expect(port).toBeGreaterThan(0);
      const chain = (await waitForRpc(port, datadir)) as { chain: string; blocks: number };
      const readyMs = performance.now() - t0;
      expect(chain.chain).toBe("main");
      console.info(
        `podman: container start ${Math.round(startedMs)} ms, start→RPC ready ${Math.round(readyMs)} ms`,
      );
      // without the cookie: refused
      expect((await rpc(port, "__cookie__:wrong", "uptime")).status).toBe(401);

      const listed = await docker.listContainers({ all: true, filters: { label: [label] } });
      expect(listed.map((c) => c.Id)).toEqual([container.id]);
      expect(listed[0]?.State).toBe("running");
      expect(listed[0]?.Labels["agentd.service"]).toBe("bitcoind");
      expect(listed[0]?.Ports).toEqual([
        { IP: "127.0.0.1", PrivatePort: 8332, PublicPort: port, Type: "tcp" },
      ]);

      // SIGTERM (docker stop): bitcoind closes and exits 0, well before the 10 s grace period
      const t1 = performance.now();
      await container.stop({ t: 10 });
      const stopMs = performance.now() - t1;
      expect(stopMs).toBeLessThan(2000);
      const stopped = await container.inspect();
      expect(stopped.State.Status).toBe("exited");
      expect(stopped.State.ExitCode).toBe(0);
      const die0 = await events.waitFor((e) => e.Action === "die" && e.Actor.ID === container.id);
      expect(die0.Actor.Attributes.exitCode).toBe("0");
      expect(die0.status).toBe("die");
      expect(die0.Type).toBe("container");
      expect(existsSync(join(datadir, ".cookie"))).toBe(false); // removed on a clean stop

      // start again, then SIGKILL: exit code 137 in the die event and in the state
      await container.start();
      await waitForRpc(port, datadir);
      await container.kill({ signal: "SIGKILL" });
      const die137 = await events.waitFor(
        (e) => e.Action === "die" && e.Actor.ID === container.id && e !== die0,
      );
      expect(die137.Actor.Attributes.exitCode).toBe("137");
      expect((await container.inspect()).State.ExitCode).toBe(137);
      const actions = events.events.filter((e) => e.Actor.ID === container.id).map((e) => e.Action);
      expect(actions.filter((a) => a === "start")).toHaveLength(2);
      expect(actions).toContain("create");
    } finally {
      events.close();
    }
  }, 60_000);

  it("pins where Podman's Docker API differs from Docker's (see podman.ts)", async () => {
    const base = {
      Image: imageId,
      Labels: { "agentd.test.podman": run },
    };
    // State.Health exists without a healthcheck (Docker omits it), with Status "".
    const plain = await docker.createContainer({ ...base, Cmd: ["-e", "0"] });
    expect((await plain.inspect()).State.Health).toEqual({
      Status: "",
      FailingStreak: 0,
      Log: null,
    });
    // A name already in use: HTTP 500 (Docker: 409).
    const named = await docker.createContainer({
      ...base,
      name: `agentd-podman-n-${run}`,
      Cmd: ["-e", "0"],
    });
    await expect(
      docker.createContainer({ ...base, name: `agentd-podman-n-${run}`, Cmd: ["-e", "0"] }),
    ).rejects.toMatchObject({ statusCode: 500 });
    // Created by image id, Config.Image shows the image's name (Docker keeps what was given).
    expect((await named.inspect()).Config.Image).toBe(DEFAULT_IMAGE);
    // HostPort "" is chosen at create time and written back into HostConfig.PortBindings.
    const bound = await docker.createContainer({
      ...base,
      Cmd: ["-e", "0"],
      ExposedPorts: { "9999/tcp": {} },
      HostConfig: { PortBindings: { "9999/tcp": [{ HostIp: "127.0.0.1", HostPort: "" }] } },
    });
    const chosen = (await bound.inspect()).HostConfig.PortBindings["9999/tcp"]?.[0]?.HostPort;
    expect(Number(chosen)).toBeGreaterThan(0);

    // A read-only root fs still has writable tmpfs /tmp, /run, /var/tmp (Docker: read-only).
    const ro = await docker.createContainer({
      ...base,
      Cmd: [
        "-e",
        "const fs=require('fs');for(const d of ['/tmp','/run','/var/tmp','/data']){try{fs.writeFileSync(d+'/x','1');console.log(d,'rw')}catch(e){console.log(d,e.code)}}",
      ],
      HostConfig: { ReadonlyRootfs: true },
    });
    await ro.start();
    await ro.wait();
    const out = (await ro.logs({ stdout: true, stderr: true })).toString("latin1");
    expect(out).toMatch(/\/tmp rw/);
    expect(out).toMatch(/\/run rw/);
    expect(out).toMatch(/\/var\/tmp rw/);
    expect(out).toMatch(/\/data EROFS/);

    // The `event` filter wants Podman's internal names ("died"), though events say "die";
    // the die event has exitCode, and docker stop emits no "kill"/"stop" event.
    const byDie = await watchEvents(docker, { label: [label], event: ["die"] });
    const byDied = await watchEvents(docker, { label: [label], event: ["died"] });
    try {
      const exits = await docker.createContainer({ ...base, Cmd: ["-e", "process.exit(3)"] });
      await exits.start();
      expect((await exits.wait()).StatusCode).toBe(3);
      const died = await byDied.waitFor((e) => e.Actor.ID === exits.id);
      expect(died.Action).toBe("die");
      expect(died.Actor.Attributes.exitCode).toBe("3");
      await new Promise((r) => setTimeout(r, 300));
      expect(byDie.events).toEqual([]);
    } finally {
      byDie.close();
      byDied.close();
    }

    // RestartPolicy on-failure is carried out by Podman itself (its cleanup process).
    const flaky = await docker.createContainer({
      ...base,
      Cmd: ["-e", "process.exit(2)"],
      HostConfig: { RestartPolicy: { Name: "on-failure", MaximumRetryCount: 1 } },
    });
    await flaky.start();
    const deadline = Date.now() + 10_000;
    let restarts = 0;
    while (Date.now() < deadline) {
      const i = await flaky.inspect();
      restarts = i.RestartCount;
      if (restarts >= 1 && !i.State.Running && !i.State.Restarting) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(restarts).toBe(1);

    // The service says it is Podman: version().Components[0].Name, API 1.41.
    const version = await docker.version();
    expect(version.Components?.[0]?.Name).toBe("Podman Engine");
    expect(version.ApiVersion).toBe("1.41");
  }, 60_000);
});
