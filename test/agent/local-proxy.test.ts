import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type LocalProxy, startLocalProxy } from "../../agent/local-proxy.ts";
import { systemClock } from "../../lib/clock.ts";
import { loadConfig } from "../../lib/config/load.ts";
import { generateEd25519KeyPair } from "../../lib/crypto/ed25519.ts";
import { createLogger } from "../../lib/log/logger.ts";

/**
 * Local mode's metrics: the agent's one metrics server, loopback check included. (The proxy
 * under the policy guard is exercised end to end by test/cli/stratum-proxy.test.ts.)
 */

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function options(metricsListen: string, port = 0) {
  const stateDir = mkdtempSync(join(tmpdir(), "agentd-local-"));
  cleanups.push(() => rmSync(stateDir, { recursive: true, force: true }));
  const config = loadConfig({
    env: {},
    defaultPath: join(stateDir, "absent.toml"),
    flags: [{ key: "metrics.listen", value: metricsListen, flag: "--set" }],
  }).config;
  return {
    host: "127.0.0.1",
    port,
    bundlePath: join(stateDir, "no-bundle.json"),
    owner: generateEd25519KeyPair().publicKey,
    publication: generateEd25519KeyPair().publicKey,
    worker: "w".repeat(43),
    stateDir,
    config,
    clock: systemClock,
    logger: createLogger({ level: "silent" }),
    agentVersion: "0.0.0-test",
  };
}

/** A port nothing listens on right now. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const refused = (port: number) =>
  new Promise<string>((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve("connected");
    });
    s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
  });

describe("local mode's metrics", () => {
  it("serves /metrics on a loopback metrics.listen", async () => {
    const local: LocalProxy = await startLocalProxy(options("127.0.0.1:0"));
    cleanups.push(() => local.close());
    const m = local.metrics;
    expect(m?.host).toBe("127.0.0.1");
    const r = await fetch(`http://127.0.0.1:${m?.port}/metrics`);
    expect(r.status).toBe(200);
    expect(await r.text()).toContain("agentd_");
    expect((await fetch(`http://127.0.0.1:${m?.port}/other`)).status).toBe(404);
  });

  it("refuses a metrics.listen off loopback, and stops the proxy it had started", async () => {
    const port = await freePort();
    await expect(startLocalProxy(options("0.0.0.0:0", port))).rejects.toMatchObject({
      code: "AGENTD_E_CONFIG_RANGE",
    });
    expect(await refused(port)).toBe("ECONNREFUSED");
  });
});
