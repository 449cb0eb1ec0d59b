import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { fakeTime, systemTimers } from "../../lib/timers.ts";
import { probe } from "../../supervisor/health.ts";

/**
 * The health probes against the simulated services (sim/services: the real protocols) run as
 * host processes: bitcoind's JSON-RPC with its cookie (sync, height), lnd's REST over TLS with
 * the macaroon (active channels), cln's JSON-RPC over its unix socket (channels), a monitoring
 * endpoint, a TCP port; and each one's unhealthy answer, a missing secret, nothing listening.
 */

const SIM = resolve(import.meta.dirname, "../../sim/services");
const children: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const TREASURY = `02${"ab".repeat(32)}`;

/** Runs a simulator, resolves with its ready line. */
function sim(name: string, args: string[]): Promise<Record<string, unknown>> {
  const c = spawn(
    process.execPath,
    ["--disable-warning=ExperimentalWarning", join(SIM, `${name}.ts`), ...args],
    {
      stdio: ["ignore", "pipe", "ignore"],
    },
  );
  children.push(c);
  return new Promise((res, rej) => {
    const lines = createInterface({ input: c.stdout as NodeJS.ReadableStream });
    lines.on("line", (l) => {
      const j = JSON.parse(l) as Record<string, unknown>;
      if (j.ready === true) res(j);
    });
    c.once("exit", (code) => rej(new Error(`${name} exited ${code}`)));
  });
}

const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "agentd-probe-"));
  dirs.push(d);
  return d;
};

describe("health probes", () => {
  it("bitcoind: JSON-RPC with the cookie; synced and height; unhealthy and a bad cookie are not healthy", async () => {
    const d = tmp();
    const r = await sim("bitcoind", [
      "--datadir",
      d,
      "--chain",
      "regtest",
      "--rpcport",
      "0",
      "--height",
      "321",
    ]);
    const port = Number(r.rpcport ?? r.port);
    const p = { type: "bitcoind-rpc" as const, port, cookieFile: join(d, "regtest", ".cookie") };
    expect(await probe(p, systemTimers)).toEqual({ healthy: true, synced: true, height: 321 });
    writeFileSync(join(d, "sim-unhealthy"), "");
    expect((await probe(p, systemTimers)).healthy).toBe(false);
    rmSync(join(d, "sim-unhealthy"));
    const wrong = join(d, "wrong-cookie");
    writeFileSync(wrong, "__cookie__:00");
    expect(await probe({ ...p, cookieFile: wrong }, systemTimers)).toMatchObject({
      healthy: false,
      error: "HTTP 401",
    });
    expect(await probe({ ...p, cookieFile: join(d, "absent") }, systemTimers)).toMatchObject({
      healthy: false,
    });
  });

  it("lnd: REST over TLS with the macaroon, the active channels' peers", async () => {
    const d = tmp();
    const r = await sim("lnd", [
      "--lnddir",
      d,
      "--network",
      "regtest",
      "--restlisten",
      "127.0.0.1:0",
      "--treasury-pubkey",
      TREASURY,
    ]);
    const p = {
      type: "lnd-rest" as const,
      port: Number(r.restport),
      macaroonFile: String(r.macaroon),
      tls: true,
    };
    const ok = await probe(p, systemTimers);
    expect(ok.healthy).toBe(true);
    expect(ok.channelPeers).toContain(TREASURY);
    const other = join(d, "other.macaroon");
    writeFileSync(other, Buffer.alloc(32, 7));
    expect((await probe({ ...p, macaroonFile: other }, systemTimers)).healthy).toBe(false);
  });

  it("cln: JSON-RPC over the unix socket, the normal channels' peers", async () => {
    const d = tmp();
    const r = await sim("cln", [
      "--lightning-dir",
      d,
      "--network",
      "regtest",
      "--treasury-pubkey",
      TREASURY,
    ]);
    const ok = await probe({ type: "cln-rpc", socket: String(r.rpc) }, systemTimers);
    expect(ok.healthy).toBe(true);
    expect(ok.channelPeers).toContain(TREASURY);
    expect(
      (await probe({ type: "cln-rpc", socket: join(d, "nothing") }, systemTimers)).healthy,
    ).toBe(false);
  });

  it("template provider: its TCP port and its monitoring endpoint; nothing listening is not healthy", async () => {
    const r = await sim("template-provider", ["--port", "0", "--monitor-port", "0"]);
    expect(await probe({ type: "tcp", port: Number(r.port) }, systemTimers)).toEqual({
      healthy: true,
    });
    expect(
      await probe({ type: "http", port: Number(r.monitorPort), path: "/health" }, systemTimers),
    ).toEqual({
      healthy: true,
    });
    expect(
      await probe({ type: "http", port: Number(r.monitorPort), path: "/nope" }, systemTimers),
    ).toMatchObject({
      healthy: false,
      error: "HTTP 404",
    });
    for (const c of children.splice(0)) c.kill("SIGKILL");
    await new Promise((res) => setTimeout(res, 200));
    expect((await probe({ type: "tcp", port: Number(r.port) }, systemTimers)).healthy).toBe(false);
  });

  it("a service that accepts and never answers is unhealthy when the deadline passes on the injected timers", async () => {
    const d = mkdtempSync(join(tmpdir(), "agentd-health-"));
    dirs.push(d);
    const socket = join(d, "rpc");
    const held: Socket[] = [];
    const accepted: (() => void)[] = [];
    const server = createServer((c) => {
      held.push(c);
      for (const f of accepted.splice(0)) f();
    });
    await new Promise<void>((r) => server.listen(socket, r));
    try {
      const time = fakeTime(0);
      let result: unknown = null;
      const pending = probe({ type: "cln-rpc", socket }, time.timers).then((x) => {
        result = x;
      });
      await new Promise<void>((r) => accepted.push(r));
      await time.advance(1_999);
      expect(result).toBeNull(); // not before its deadline
      await time.advance(1);
      await pending;
      expect(result).toEqual({ healthy: false, error: "timeout" });
    } finally {
      for (const c of held) c.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});
