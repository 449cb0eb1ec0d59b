import { PassThrough } from "node:stream";
import type Dockerode from "dockerode";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../lib/log/logger.ts";
import { fakeTime, type Timers } from "../../lib/timers.ts";
import { defaultSpecs } from "../../supervisor/defaults.ts";
import { dockerDriver } from "../../supervisor/docker-driver.ts";
import {
  type DockerCall,
  retryTransient,
  transientDockerError,
} from "../../supervisor/docker-transient.ts";
import type { Desired } from "../../supervisor/plan.ts";
import { Reconciler, type SupervisorEvent } from "../../supervisor/reconciler.ts";
import { LABELS, type ServiceKind } from "../../supervisor/spec.ts";

/**
 * The Docker Engine API's transient answers during a container's death: which answers are
 * transient (one classification), the bounded retry on injected timers, and the reconciler on
 * the Docker driver over a fake dockerode that answers an inspect with Podman's 500
 * `read /proc/PID/cgroup: no such process` — once (recovered: the service runs, no failure
 * counted) or every time (a failure, as before). A pure unit test: the real API is exercised by
 * docker-driver.test.ts and the benchmark.
 */

/** An error as docker-modem makes it from an answer. */
function apiError(statusCode: number, message: string): Error {
  return Object.assign(
    new Error(
      `(HTTP code ${statusCode}) ${statusCode === 500 ? "server error" : "conflict"} - ${message} `,
    ),
    { statusCode, json: { message } },
  );
}

const DYING = "read /proc/4242/cgroup: no such process";

/** Timers that say when one is armed with a given delay: the test waits on that, not on time. */
function watchedTimers(inner: Timers) {
  const waiting: { ms: number; resolve: () => void }[] = [];
  const timers: Timers = {
    ...inner,
    setTimeout(fn, ms) {
      const h = inner.setTimeout(fn, ms);
      for (const w of waiting.filter((x) => x.ms === ms)) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve();
      }
      return h;
    },
  };
  const armed = (ms: number) => new Promise<void>((resolve) => waiting.push({ ms, resolve }));
  return { timers, armed };
}

describe("transient Docker Engine API answers", () => {
  const cases: [string, unknown, DockerCall, boolean][] = [
    ["Podman reading a dead process's cgroup", apiError(500, DYING), "inspect", true],
    [
      "a dead process's /proc file",
      apiError(500, "open /proc/4242/stat: no such file or directory"),
      "start",
      true,
    ],
    [
      "a removal already under way",
      apiError(409, "removal of container abc is already in progress"),
      "remove",
      true,
    ],
    ["a container gone while listing", apiError(404, "no such container"), "list", true],
    ["a container gone while listing (500)", apiError(500, "abc: no such container"), "list", true],
    ["one container gone: an answer", apiError(404, "no such container"), "inspect", false],
    [
      "a missing bind source: persistent",
      apiError(500, "statfs /srv/nothing: no such file or directory"),
      "create",
      false,
    ],
    ["a name in use", apiError(409, 'the container name "x" is already in use'), "create", false],
    ["any other 500", apiError(500, "something broke"), "start", false],
    [
      "no answer at all (an outage)",
      Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }),
      "list",
      false,
    ],
    ["not an error", "500", "list", false],
  ];
  for (const [what, err, call, transient] of cases) {
    it(`${what}: ${transient ? "transient" : "not transient"}`, () => {
      expect(transientDockerError(err, call) !== null).toBe(transient);
    });
  }

  it("retries a transient answer after a doubling backoff on the timers given, a bounded number of times", async () => {
    const time = fakeTime(0);
    const { timers, armed } = watchedTimers(time.timers);
    let calls = 0;
    const retries: number[] = [];
    const backoffs = [armed(50), armed(100), armed(200)];
    const result = retryTransient(
      "inspect",
      async () => {
        calls++;
        throw apiError(500, DYING);
      },
      { timers, onRetry: ({ attempt }) => retries.push(attempt) },
    ).catch((err: unknown) => err);
    const waited: number[] = [];
    for (const b of backoffs) {
      await b;
      waited.push(await time.runNext());
    }
    expect(await result).toMatchObject({ statusCode: 500 });
    expect(waited).toEqual([50, 100, 200]);
    expect(retries).toEqual([1, 2, 3]);
    expect(calls).toBe(4);
    expect(time.pending()).toBe(0);
  });

  it("throws anything else at once, untried again", async () => {
    const time = fakeTime(0);
    let calls = 0;
    await expect(
      retryTransient(
        "start",
        async () => {
          calls++;
          throw apiError(500, "something broke");
        },
        { timers: time.timers },
      ),
    ).rejects.toThrow(/something broke/);
    expect(calls).toBe(1);
    expect(time.pending()).toBe(0);
  });
});

// ---- the reconciler on the Docker driver over a fake dockerode ------------------------------

const IMG = `sha256:${"a".repeat(64)}`;
const WORKER = "w1";

/** Just what docker-driver.ts calls, in memory; `inspectFails` answers image inspects with the 500. */
function fakeDocker(o: { inspectFails: () => boolean }) {
  const containers = new Map<
    string,
    { Id: string; Labels: Record<string, string>; State: string; Created: number }
  >();
  const calls: string[] = [];
  let seq = 0;
  const docker = {
    async listContainers() {
      calls.push("list");
      return [...containers.values()].map((c) => ({ ...c, ImageID: IMG }));
    },
    getImage: (image: string) => ({
      async inspect() {
        calls.push("inspect");
        if (o.inspectFails()) throw apiError(500, DYING);
        return { Id: image };
      },
    }),
    async createContainer(opts: { Labels: Record<string, string> }) {
      calls.push("create");
      const id = `c${++seq}`;
      containers.set(id, { Id: id, Labels: opts.Labels, State: "created", Created: seq });
      return { id };
    },
    getContainer: (id: string) => ({
      async start() {
        calls.push("start");
        const c = containers.get(id);
        if (c !== undefined) c.State = "running";
      },
      async stop() {
        calls.push("stop");
        const c = containers.get(id);
        if (c !== undefined) c.State = "exited";
      },
      async remove() {
        calls.push("remove");
        containers.delete(id);
      },
    }),
    // an event stream that stays open and quiet
    getEvents: async () => new PassThrough(),
    async ping() {},
  };
  return { docker: docker as unknown as Dockerode, calls, containers };
}

function setup(inspectFails: () => boolean) {
  const time = fakeTime(1_000_000);
  const { timers, armed } = watchedTimers(time.timers);
  const fake = fakeDocker({ inspectFails });
  const events: SupervisorEvent[] = [];
  const r = new Reconciler({
    driver: dockerDriver(fake.docker, { worker: WORKER, timers }),
    clock: time.clock,
    timers,
    logger: createLogger({ level: "silent" }),
    probe: async () => true,
    random: () => 0.5,
    onEvent: (e) => events.push(e),
  });
  const specs = defaultSpecs("/srv");
  const target = new Map<ServiceKind, Desired>([
    ["bitcoind", { spec: specs.bitcoind, image: IMG }],
  ]);
  const bitcoind = () => r.status().find((s) => s.kind === "bitcoind");
  return { r, time, armed, fake, events, target, bitcoind };
}

describe("the reconciler on the Docker driver, through a transient answer", () => {
  it("an inspect answered with Podman's 500 once: retried, the service runs, no failure counted", async () => {
    let failures = 1;
    const { r, time, armed, fake, events, target, bitcoind } = setup(() => failures-- > 0);
    r.start();
    const retried = armed(50);
    const applied = r.setTarget(target);
    await retried; // the 500 was answered and the retry is waiting on its backoff
    await time.advance(50);
    await applied;
    await time.advance(5_000); // a health round
    expect(bitcoind()).toMatchObject({ state: "running", restarts: 0, hold: null });
    expect(fake.calls.filter((c) => c === "inspect")).toHaveLength(2);
    expect(fake.calls.filter((c) => c === "create")).toHaveLength(1);
    expect([...fake.containers.values()].map((c) => [c.Labels[LABELS.kind], c.State])).toEqual([
      ["bitcoind", "running"],
    ]);
    expect(events.map((e) => e.type)).toEqual(["service.started"]);
    await r.close();
  });

  it("a 500 that persists is a failure: the step fails after the retries, and is tried again later", async () => {
    let failing = true;
    const { r, time, armed, fake, events, target, bitcoind } = setup(() => failing);
    r.start();
    const backoffs = [armed(50), armed(100), armed(200)];
    const applied = r.setTarget(target);
    for (const [i, ms] of [50, 100, 200].entries()) {
      await backoffs[i];
      await time.advance(ms);
    }
    await applied;
    // four tries, then the step failed: counted, backed off, nothing created
    expect(fake.calls.filter((c) => c === "inspect")).toHaveLength(4);
    expect(fake.calls).not.toContain("create");
    expect(events).toContainEqual({
      type: "service.restart_scheduled",
      kind: "bitcoind",
      inMs: 1_000,
      failures: 1,
    });
    expect(events.some((e) => e.type === "service.image_missing")).toBe(false);
    expect(bitcoind()?.state).toBe("absent");
    // the API answers again: the next try after the backoff runs it
    failing = false;
    await time.advance(5_000); // the backoff, then a health round
    await r.kick("test");
    expect(bitcoind()?.state).toBe("running");
    expect(fake.calls.filter((c) => c === "create")).toHaveLength(1);
    await r.close();
  });
});
