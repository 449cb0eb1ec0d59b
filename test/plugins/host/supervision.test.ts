/**
 * A driver host that crashes, hangs, floods or lies on its channel is killed and restarted
 * with backoff; the requests it had in flight reject AGENTD_E_DRIVER_HOST_UNAVAILABLE and the
 * next one is served. Real host processes (test/fixtures/driver-host/registry.ts) on fake
 * time: deadlines and backoff are reached by moving time, process events are awaited.
 */
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { MAX_REPLY_BYTES } from "../../../plugins/host/limits.ts";
import { ensureDriverUser } from "../../support/driver-user.ts";
import { rejection, testHost } from "./support.ts";

beforeAll(() => {
  ensureDriverUser();
});

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

async function started(options: Parameters<typeof testHost>[0] = {}) {
  const t = testHost(options);
  stops.push(() => t.host.stop());
  await t.host.start();
  const { pid } = await t.next("ready");
  return { ...t, pid };
}

/** Moves time past the scheduled restart and waits for the new host's hello. */
async function restarted(t: Awaited<ReturnType<typeof started>>, expectedDelayMs: number) {
  const scheduled = await t.next("restart-scheduled");
  expect(scheduled.delayMs).toBe(expectedDelayMs);
  await t.time.advance(scheduled.delayMs);
  return t.next("ready");
}

describe("a crashing host", () => {
  it("process.exit: in-flight rejected with the code, restarted with doubling backoff, next served", async () => {
    const t = await started();
    const e = await rejection(t.miner("exit").read());
    expect(e.code).toBe("AGENTD_E_DRIVER_HOST_UNAVAILABLE");
    expect(e.context?.reason).toBe("crashed");
    const exited = await t.next("exited");
    expect(exited).toMatchObject({ reason: "crashed", code: 3 });
    const ready = await restarted(t, 1000);
    expect(ready.pid).not.toBe(t.pid);
    expect((await t.miner("ok").read()).hashrateGhs).toBe(13_500);

    // An uncaught exception in a driver: the next failure in a row waits twice as long.
    expect((await rejection(t.miner("throw").read())).code).toBe(
      "AGENTD_E_DRIVER_HOST_UNAVAILABLE",
    );
    expect(await t.next("exited")).toMatchObject({ reason: "crashed", code: 1 });
    await restarted(t, 2000);
    expect((await t.miner("ok").read()).uptimeS).toBe(100);
    expect(t.host.stats()).toMatchObject({ starts: 3, exits: { crashed: 2 } });
  });

  it("a host that served longer than stableAfterMs starts the backoff over", async () => {
    const t = await started({ timing: { stableAfterMs: 30_000, pingIntervalMs: 1e9 } });
    await rejection(t.miner("exit").read());
    await restarted(t, 1000);
    await t.time.advance(30_000);
    await rejection(t.miner("exit").read());
    await restarted(t, 1000);
  });

  it("requests while it restarts reject at once with the code", async () => {
    const t = await started();
    await rejection(t.miner("exit").read());
    await t.next("restart-scheduled");
    const e = await rejection(t.miner("ok").read());
    expect(e.code).toBe("AGENTD_E_DRIVER_HOST_UNAVAILABLE");
    expect(e.context?.reason).toBe("restarting");
  });
});

describe("a hanging host", () => {
  it("a stuck event loop: the unanswered ping gets it killed and restarted", async () => {
    const t = await started({ timing: { pingIntervalMs: 5000, pingTimeoutMs: 5000 } });
    const pending = rejection(t.miner("hang-loop").read());
    // The read's own deadline is a minute away; the ping finds the hang first.
    await t.time.advance(10_000);
    expect(await t.next("exited")).toMatchObject({ reason: "hung", signal: "SIGKILL" });
    expect((await pending).code).toBe("AGENTD_E_DRIVER_HOST_UNAVAILABLE");
    await restarted(t, 1000);
    expect((await t.miner("ok").read()).mode).toBe("normal");
  });

  it("a request never answered: killed at its deadline plus the margin", async () => {
    // No pings here: only the request's deadline (6 × 1 s of I/O + 5 s margin).
    const t = await started({ timing: { pingIntervalMs: 1e9 } });
    const pending = rejection(t.miner("hang-promise").read());
    const other = await t.miner("ok").read(); // the host itself still answers
    expect(other.hashrateGhs).toBe(13_500);
    await t.time.advance(10_999);
    expect(t.events.some((e) => e.type === "exited")).toBe(false);
    await t.time.advance(1);
    expect(await t.next("exited")).toMatchObject({ reason: "hung" });
    const e = await pending;
    expect(e.code).toBe("AGENTD_E_DRIVER_HOST_UNAVAILABLE");
    expect(e.message).toContain("hung");
    await restarted(t, 1000);
  });
});

describe("a flooding host", () => {
  it.each(["flood-line", "flood-endless"])(
    "%s: killed at the message bound, memory bounded",
    async (kind) => {
      const t = await started();
      const e = await rejection(t.miner(kind).read());
      expect(e.code).toBe("AGENTD_E_DRIVER_HOST_UNAVAILABLE");
      expect(e.context?.reason).toBe("flooding");
      expect(await t.next("exited")).toMatchObject({ reason: "flooding", signal: "SIGKILL" });
      // Never more than one message's bound held, however much it wrote.
      expect(t.host.stats().peakBufferedBytes).toBeLessThanOrEqual(MAX_REPLY_BYTES);
      expect(t.host.stats().peakBufferedBytes).toBeGreaterThan(MAX_REPLY_BYTES / 2);
      await restarted(t, 1000);
      expect((await t.miner("ok").read()).hashrateGhs).toBe(13_500);
    },
  );

  it("endless invalid lines: killed as flooding after the bound on invalid messages", async () => {
    const t = await started();
    const e = await rejection(t.miner("flood-lines").read());
    expect(e.context?.reason).toBe("flooding");
    const dropped = t.logs.filter((l) => l.msg === "driver host message dropped");
    expect(dropped.length).toBe(21);
  });

  it("stderr noise: lines cut and rate-limited in the agent's log, the host keeps serving", async () => {
    const t = await started();
    expect((await t.miner("stderr-flood").read()).hashrateGhs).toBe(13_500);
    await t.waitLog((l) => String(l.msg).startsWith("driver host stderr: too many lines"));
    const forwarded = t.logs.filter((l) => l.msg === "driver host stderr");
    expect(forwarded.length).toBe(50);
    for (const l of forwarded) expect(String(l.host_stderr).length).toBeLessThanOrEqual(2049);
  });
});

describe("invalid messages from the host", () => {
  it("garbage and a reply to no request: dropped and logged with the code; the read still served", async () => {
    const t = await started();
    expect((await t.miner("garbage").read()).hashrateGhs).toBe(13_500);
    const dropped = t.logs.filter((l) => l.msg === "driver host message dropped");
    expect(dropped.map((l) => l.code)).toEqual([
      "AGENTD_E_DRIVER_MESSAGE_INVALID",
      "AGENTD_E_DRIVER_MESSAGE_INVALID",
    ]);
    expect(dropped[1]).toMatchObject({ id: 999_999 });
    expect(t.events.some((e) => e.type === "exited")).toBe(false);
  });

  it("a result that fails its schema: that request rejects with the code and where", async () => {
    const t = await started();
    const e = await rejection(t.miner("invalid-result").read());
    expect(e.code).toBe("AGENTD_E_DRIVER_MESSAGE_INVALID");
    expect(e.context).toMatchObject({ pointer: "/hashrateGhs", keyword: "type" });
    expect(e.message).not.toContain("lots");
    expect((await t.miner("ok").read()).hashrateGhs).toBe(13_500);
  });

  it("a driver's own error crosses with its code; credentials never reach a log", async () => {
    const t = await started();
    const secret = "s3cret-Miner-Passw0rd";
    const e = await rejection(t.miner("auth", secret).read());
    expect(e.code).toBe("AGENTD_E_MINER_AUTH");
    expect((await rejection(t.miner("ok", secret).sleep())).code).toBe(
      "AGENTD_E_MINER_UNSUPPORTED",
    );
    await t.miner("garbage", secret).read();
    await t.host.stop();
    expect(t.raw.join("").length).toBeGreaterThan(0);
    expect(t.raw.join("")).not.toContain(secret);
  });
});

describe("who the drivers run as", () => {
  it("no such user: drivers do not run, and every call says why", async () => {
    const t = testHost({ user: "agentd-no-such-user" });
    const e = await rejection(t.host.start());
    expect(e.code).toBe("AGENTD_E_DRIVER_USER_MISSING");
    expect(e.message).toContain("agentd-no-such-user");
    expect((await rejection(t.miner("ok").read())).code).toBe("AGENTD_E_DRIVER_USER_MISSING");
    expect(t.events.filter((ev) => ev.type === "started")).toEqual([]);
    expect(t.logs.some((l) => l.level === "error" && l.msg === "drivers do not run")).toBe(true);
  });

  it("code the drivers' user cannot read: refused, naming the directory", async () => {
    const dir = mkdtempSync(join(tmpdir(), "agentd-unreadable-"));
    chmodSync(dir, 0o700);
    try {
      const t = testHost({ codeRoot: dir });
      const e = await rejection(t.host.start());
      expect(e.code).toBe("AGENTD_E_DRIVER_HOST_UNAVAILABLE");
      expect(e.context?.reason).toBe("code-unreadable");
      expect(e.message).toContain(dir);
      expect(t.events.filter((ev) => ev.type === "started")).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("runAsInvokingUser: runs as this process's user, and warns", async () => {
    const t = await started({ runAsInvokingUser: true });
    const id = await t.miner("whoami").detect();
    expect(id.model).toContain(`uid=${process.getuid?.()} `);
    expect(id.model).toContain("env=0 cwd=/ fsWrite=false");
    const warn = t.logs.find((l) => l.level === "warn" && String(l.msg).includes("invoking user"));
    expect(warn).toBeDefined();
  });
});

describe("a clean stop", () => {
  it("happens once: the host exits by itself, later calls reject with the code", async () => {
    const t = await started();
    const a = t.host.stop();
    const b = t.host.stop();
    expect(a).toBe(b);
    await a;
    expect(await t.next("exited")).toMatchObject({ reason: "stopped", code: 0, signal: null });
    expect(t.events.filter((e) => e.type === "stopped").length).toBe(1);
    expect(t.events.some((e) => e.type === "restart-scheduled")).toBe(false);
    const e = await rejection(t.miner("ok").read());
    expect(e.code).toBe("AGENTD_E_DRIVER_HOST_UNAVAILABLE");
    expect(e.context?.reason).toBe("stopped");
  });

  it("a host that does not exit is killed after the grace", async () => {
    const t = await started();
    const inFlight = rejection(t.miner("hang-loop").read());
    const stopping = t.host.stop();
    await t.time.advance(2000);
    await stopping;
    expect(await t.next("exited")).toMatchObject({ reason: "stopped", signal: "SIGKILL" });
    expect((await inFlight).code).toBe("AGENTD_E_DRIVER_HOST_UNAVAILABLE");
  });
});
