import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { translatorUpstream, writeTranslatorConfig } from "../../supervisor/translator-config.ts";

/**
 * The translator's configuration comes from the consent only: its first sv2+tcp upstream with
 * an authority key, written in SRI's translator format — checked by the simulated translator,
 * which validates it as the real one does (sim/services/translator.ts --print-config).
 */

const AUTHORITY = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("the translator's configuration", () => {
  it("uses only an sv2+tcp upstream of the consent with its authority key", () => {
    expect(
      translatorUpstream([{ url: "stratum+tcp://pool.example:3333", user: "o.a" }]),
    ).toBeNull();
    expect(translatorUpstream([{ url: "sv2+tcp://pool.example:34254", user: "o.a" }])).toBeNull();
    expect(
      translatorUpstream([
        { url: "stratum+tcp://v1.example:3333", user: "o.v1" },
        { url: "sv2+tcp://pool.example:34254", user: "o.sv2", authority_pubkey: AUTHORITY },
      ]),
    ).toEqual({ host: "pool.example", port: 34254, authorityPubkey: AUTHORITY, user: "o.sv2" });
  });

  it("writes a file SRI's translator accepts, pointing at that upstream", () => {
    const dir = mkdtempSync(join(tmpdir(), "agentd-tproxy-"));
    dirs.push(dir);
    const path = join(dir, "config", "translator.toml");
    const u = translatorUpstream([
      { url: "sv2+tcp://10.1.2.3:34254", user: "owner1.farm", authority_pubkey: AUTHORITY },
    ]);
    if (u === null) throw new Error("no upstream");
    writeTranslatorConfig(path, u, { monitoringPort: 9100 });
    const r = spawnSync(
      process.execPath,
      [
        "--disable-warning=ExperimentalWarning",
        resolve(import.meta.dirname, "../../sim/services/translator.ts"),
        "-c",
        path,
        "--print-config",
      ],
      { encoding: "utf8" },
    );
    const out = JSON.parse(r.stdout) as {
      valid: boolean;
      errors: string[];
      config: Record<string, unknown>;
    };
    expect(out.errors).toEqual([]);
    expect(out.valid).toBe(true);
    expect(out.config.upstreams).toEqual([
      {
        address: "10.1.2.3",
        port: 34254,
        authority_pubkey: AUTHORITY,
        user_identity: "owner1.farm",
      },
    ]);
    expect(out.config.monitoring_address).toBe("127.0.0.1:9100");
  });
});
