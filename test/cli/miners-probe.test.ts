import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { SimCluster } from "../../sim/asic/cluster.ts";
import { agentdAsync as agentd } from "../support/cli.ts";
import { ensureDriverUser } from "../support/driver-user.ts";

/**
 * `agentd miners probe` as an owner runs it: the real binary, the real driver host under the
 * drivers' user, a simulated S19 with its 4028 API and web UI on real sockets.
 */

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});
beforeAll(() => {
  ensureDriverUser();
});

async function s19() {
  const cluster = await SimCluster.start({
    count: 1,
    profile: "s19",
    pools: ["stratum+tcp://127.0.0.1:1"],
    pass: "pool-secret-x1",
    apiHost: "127.0.0.1",
    start: false,
  });
  cleanup.push(() => cluster.stop());
  const m = cluster.miners[0];
  if (m?.api == null || m.web == null) throw new Error("no API or web UI");
  return { miner: m.miner, api: m.api.address.port, web: m.web.address.port };
}

describe("agentd miners probe", () => {
  it("detects and reads an S19 read-only through the driver host, and captures its replies with secrets redacted", async () => {
    const s = await s19();
    const dir = mkdtempSync(join(tmpdir(), "agentd-capture-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const r = await agentd([
      "miners",
      "probe",
      `127.0.0.1:${s.api}`,
      "--web-port",
      String(s.web),
      "--capture",
      dir,
      "--json",
    ]);
    expect(r.stderr).not.toContain("pool-secret-x1");
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as {
      identity: { family: string; mac: string; serial: string; verifiedOnHardware: boolean };
      reading: { boards: unknown[]; pools: { url: string }[]; power: unknown };
      capture: { files: number; redacted: number };
    };
    expect(doc.identity).toMatchObject({
      family: "antminer-s19",
      mac: s.miner.mac,
      serial: s.miner.serial,
      verifiedOnHardware: false,
    });
    expect(doc.reading.boards).toHaveLength(3);
    expect(doc.reading.pools[0]?.url).toContain("127.0.0.1:1");
    expect(doc.reading.power).toBeNull();

    const manifest = JSON.parse(readFileSync(join(dir, "capture.json"), "utf8")) as {
      replies: {
        request: { name: string };
        file: string | null;
        bytes: number | null;
        error: string | null;
      }[];
    };
    const byName = new Map(manifest.replies.map((e) => [e.request.name, e]));
    for (const name of [
      "version",
      "summary",
      "stats-new_api",
      "pools",
      "get_system_info",
      "get_miner_conf",
    ]) {
      expect(byName.get(name)?.file, name).not.toBeNull();
    }
    expect(doc.capture.files).toBe(readdirSync(dir).filter((f) => f.endsWith(".raw")).length);
    const conf = readFileSync(join(dir, "web-get_miner_conf.raw"), "utf8");
    expect(conf).toContain('"REDACTED"');
    expect(conf).not.toContain("pool-secret-x1");
    expect(doc.capture.redacted).toBeGreaterThan(0);
    // the 4028 reply as the firmware sent it: its NUL included
    const summary = readFileSync(join(dir, "4028-summary.raw"));
    expect(summary.at(-1)).toBe(0);
    expect(byName.get("summary")?.bytes).toBe(summary.length);
  });

  it("says the family is not verified on hardware in its human form", async () => {
    const s = await s19();
    const r = await agentd([
      "miners",
      "probe",
      "127.0.0.1",
      "--api-port",
      String(s.api),
      "--web-port",
      String(s.web),
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^miner\s+Antminer S19 \(antminer-s19\)/m);
    expect(r.stdout).toContain("not verified on hardware");
    expect(r.stdout).toContain("not reported (a meter must measure it)");
  });

  it("without the drivers' user: drivers do not run (exit 3, the code), the capture is written all the same", async () => {
    const s = await s19();
    const dir = mkdtempSync(join(tmpdir(), "agentd-capture-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const r = await agentd([
      "--set",
      "drivers.user=agentd-no-such-user",
      "miners",
      "probe",
      `127.0.0.1:${s.api}`,
      "--web-port",
      String(s.web),
      "--capture",
      dir,
      "--json",
    ]);
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: "AGENTD_E_DRIVER_USER_MISSING" } });
    expect(readdirSync(dir)).toContain("capture.json");
    expect(r.stderr).toContain(`written to ${dir}`);
  });
});
