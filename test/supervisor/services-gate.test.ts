import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../lib/log/logger.ts";
import { defaultSpecs } from "../../supervisor/defaults.ts";
import type { Desired } from "../../supervisor/plan.ts";
import type { Reconciler } from "../../supervisor/reconciler.ts";
import { supervisorGate, translatorPointedElsewhere } from "../../supervisor/services-gate.ts";
import type { ServiceKind } from "../../supervisor/spec.ts";

/**
 * The services gate: what the reconciler is asked to run, from the decision's `services` part
 * (the reconciler here only records its targets: a pure test of the gate's choices).
 */

const IMG = (c: string) => `sha256:${c.repeat(64)}`;
const AUTH = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup() {
  const dataDir = mkdtempSync(join(tmpdir(), "agentd-gate-"));
  dirs.push(dataDir);
  const targets: Map<ServiceKind, Desired>[] = [];
  const reconciler = {
    setTarget: async (t: Map<ServiceKind, Desired>) => void targets.push(t),
  } as unknown as Reconciler;
  const specs = defaultSpecs(dataDir);
  return { dataDir, targets, specs, reconciler };
}

describe("the services gate", () => {
  it("asks for exactly the allowed kinds, each with the allowed image; nothing when nothing is allowed", () => {
    const { targets, specs, reconciler, dataDir } = setup();
    const g = supervisorGate({
      reconciler,
      specs,
      dataDir,
      logger: createLogger({ level: "silent" }),
    });
    g.apply({ allowed: { bitcoind: IMG("a"), lnd: IMG("b") }, reasons: [], upstreams: [] });
    expect([...(targets.at(-1) ?? new Map()).entries()].map(([k, d]) => [k, d.image])).toEqual([
      ["bitcoind", IMG("a")],
      ["lnd", IMG("b")],
    ]);
    g.apply({ allowed: {}, reasons: ["consent.revoked"], upstreams: [] });
    expect(targets.at(-1)?.size).toBe(0);
  });

  it("refuses a kind whose services file pins another image, and a translator without a usable upstream", () => {
    const { targets, specs, reconciler, dataDir } = setup();
    const pinned = { ...specs, bitcoind: { ...specs.bitcoind, image: IMG("c") } };
    const g = supervisorGate({
      reconciler,
      specs: pinned,
      dataDir,
      logger: createLogger({ level: "silent" }),
    });
    g.apply({
      allowed: { bitcoind: IMG("a"), translator: IMG("t") },
      reasons: [],
      upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "o.r" }],
    });
    expect(targets.at(-1)?.size).toBe(0);
    expect(Object.keys(g.refused()).sort()).toEqual(["bitcoind", "translator"]);
    expect(g.refused().translator).toMatch(/no sv2\+tcp upstream/);
  });

  it("writes the translator's configuration from the consent, and a new upstream is a new spec", () => {
    const { targets, specs, reconciler, dataDir } = setup();
    const g = supervisorGate({
      reconciler,
      specs,
      dataDir,
      logger: createLogger({ level: "silent" }),
    });
    const up = (host: string) => [
      { url: `sv2+tcp://${host}:34254`, user: "o.farm", authority_pubkey: AUTH },
    ];
    g.apply({ allowed: { translator: IMG("t") }, reasons: [], upstreams: up("pool-a.example") });
    const file = join(dataDir, "translator", "config", "translator.toml");
    expect(readFileSync(file, "utf8")).toContain('address = "pool-a.example"');
    const first = targets.at(-1)?.get("translator");
    g.apply({ allowed: { translator: IMG("t") }, reasons: [], upstreams: up("pool-b.example") });
    expect(readFileSync(file, "utf8")).toContain('address = "pool-b.example"');
    const second = targets.at(-1)?.get("translator");
    expect(second?.spec.env.AGENTD_UPSTREAM).toBe("pool-b.example:34254");
    expect(second?.spec).not.toEqual(first?.spec);
  });

  it("refuses a translator whose command reads another configuration", () => {
    const { specs, dataDir } = setup();
    const t = specs.translator;
    expect(translatorPointedElsewhere(t, dataDir)).toBeNull();
    expect(
      translatorPointedElsewhere(
        { ...t, command: ["translator_sv2", "-c", "/tmp/mine.toml"] },
        dataDir,
      ),
    ).toMatch(/must read the configuration agentd writes/);
    expect(
      translatorPointedElsewhere(
        { ...t, command: ["translator_sv2", "-c", "/config/translator.toml", "--config", "/x"] },
        dataDir,
      ),
    ).not.toBeNull();
    // the right file name, but another directory mounted at /config
    expect(
      translatorPointedElsewhere(
        { ...t, volumes: [{ source: "/srv/evil", target: "/config", readOnly: true }] },
        dataDir,
      ),
    ).not.toBeNull();
    const hostFile = join(dataDir, "translator", "config", "translator.toml");
    expect(
      translatorPointedElsewhere(
        { ...t, command: ["translator_sv2", "-c", hostFile], volumes: [] },
        dataDir,
      ),
    ).toBeNull();
  });
});
