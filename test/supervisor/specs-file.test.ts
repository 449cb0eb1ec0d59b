import { describe, expect, it } from "vitest";
import { parseServices } from "../../supervisor/specs-file.ts";

/** The services file: overrides over the built-in defaults, refused precisely when wrong. */

const parse = (doc: Record<string, unknown>) => parseServices(doc, "/srv/agentd", "services.toml");
const refusal = (doc: Record<string, unknown>) => {
  try {
    parse(doc);
  } catch (err) {
    const e = err as { code: string; message: string };
    return `${e.code}: ${e.message}`;
  }
  throw new Error("accepted");
};

describe("the services file", () => {
  it("gives every kind its defaults: usual ports, probes, dependencies, frozen", () => {
    const s = parse({});
    expect(s.bitcoind.health).toEqual({
      type: "bitcoind-rpc",
      port: 8332,
      cookieFile: "/srv/agentd/bitcoind/.cookie",
    });
    expect(s.lnd.dependsOn).toEqual(["bitcoind"]);
    expect(s.cln.health).toMatchObject({ type: "cln-rpc" });
    expect(s.translator.command).toContain("/config/translator.toml");
    expect(Object.isFrozen(s)).toBe(true);
  });

  it("overrides per key, the rest kept", () => {
    const s = parse({
      bitcoind: {
        command: ["node", "/sim/bitcoind.ts"],
        memory_mb: 512,
        cpus: 0.5,
        restart: { min_ms: 100, crashloop_failures: 3 },
        ports: [{ host: 18332, container: 8332 }],
        health: { type: "bitcoind-rpc", port: 18332, cookie_file: "/tmp/c" },
      },
    });
    expect(s.bitcoind).toMatchObject({
      command: ["node", "/sim/bitcoind.ts"],
      memoryBytes: 512 * 1024 * 1024,
      cpus: 0.5,
      restart: { minMs: 100, maxMs: 60_000, crashloopFailures: 3 },
      ports: [{ hostIp: "127.0.0.1", host: 18332, container: 8332 }],
      volumes: [{ source: "/srv/agentd/bitcoind", target: "/data", readOnly: false }],
    });
  });

  it("refuses what it does not know or cannot use, naming the key", () => {
    expect(refusal({ bitcoin: {} })).toMatch(
      /^AGENTD_E_CONFIG_UNKNOWN_KEY: services.toml: bitcoin: unknown key/,
    );
    expect(refusal({ bitcoind: { comand: ["x"] } })).toMatch(/bitcoind.comand: unknown key/);
    expect(refusal({ bitcoind: { image: "latest" } })).toMatch(
      /^AGENTD_E_CONFIG_TYPE: .*bitcoind.image: expected an image id/,
    );
    expect(refusal({ lnd: { depends_on: ["bitcoin"] } })).toMatch(
      /lnd.depends_on: expected a service kind/,
    );
    expect(refusal({ lnd: { depends_on: ["lnd"] } })).toMatch(/lnd.depends_on/);
    expect(refusal({ bitcoind: { memory_mb: 1 } })).toMatch(/^AGENTD_E_CONFIG_RANGE: .*memory_mb/);
    expect(refusal({ bitcoind: { volumes: [{ source: "/a", target: "rel" }] } })).toMatch(
      /volumes\[0\].target: expected an absolute path/,
    );
    expect(refusal({ bitcoind: { health: { type: "tcp", port: 1, path: "/" } } })).toMatch(
      /health.path: unknown key/,
    );
    expect(refusal({ bitcoind: { restart: { min_ms: 5000, max_ms: 1000 } } })).toMatch(/max_ms/);
  });
});
