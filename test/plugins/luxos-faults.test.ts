/**
 * LuxOS faults: each is that miner's own clear error, bounded, and no other miner notices.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LuxosDriver } from "../../plugins/luxos/luxos.ts";
import { detectFamily } from "../../plugins/registry.ts";
import { ReplayApi } from "../../sim/asic/replay.ts";
import { context, drive, rejection, type SteppedTime, steppedTime } from "./antminer-sim.ts";
import { LUXOS_CAPTURES, useLuxosSims } from "./luxos-sim.ts";

let time: SteppedTime;
beforeEach(() => {
  time = steppedTime();
});
const start = useLuxosSims(() => time);

describe("LuxOS faults", () => {
  it("a write answered OK but not applied is NOT_CONFIRMED, for curtail and for pools", async () => {
    const { sim, endpoint } = await start("ignore-writes");
    const d = new LuxosDriver(endpoint, context(time));
    const sleepErr = await rejection(drive(time, () => d.sleep()));
    expect(sleepErr.code).toBe("AGENTD_E_MINER_NOT_CONFIRMED");
    expect(sim.curtailed).toBe(false);
    const poolErr = await rejection(
      drive(time, () =>
        d.setPools([{ url: "stratum+tcp://p.example:3333", user: "u", password: "x" }]),
      ),
    );
    expect(poolErr.code).toBe("AGENTD_E_MINER_NOT_CONFIRMED");
    const profileErr = await rejection(drive(time, () => d.setPowerTarget(1000)));
    expect(profileErr.code).toBe("AGENTD_E_MINER_REFUSED"); // ATM still on: profileset refused
  });

  it("malformed JSON is REPLY_INVALID; a 10 MB reply is cut off at the bound; a healthy miner beside them reads", async () => {
    const bad = await start("malformed");
    const huge = await start("huge");
    const good = await start();
    const ctx = context(time);
    const [e1, e2, ok] = await Promise.all([
      rejection(new LuxosDriver(bad.endpoint, ctx).read()),
      rejection(new LuxosDriver(huge.endpoint, ctx).read()),
      new LuxosDriver(good.endpoint, ctx).read(),
    ]);
    expect(e1.code).toBe("AGENTD_E_MINER_REPLY_INVALID");
    expect(e2.code).toBe("AGENTD_E_MINER_REPLY_TOO_LARGE");
    expect(e2.message).toContain(`${ctx.limits.maxReplyBytes} bytes`);
    expect(ok.boards).toHaveLength(3);
  });
});

describe("LuxOS captures (asic-rs test data, served byte for byte)", () => {
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });
  const file = (n: string) => readFileSync(join(LUXOS_CAPTURES, `4028-${n}.json`));

  it("detects and reads the real S19k Pro's replies; no psuget: power is the estimate", async () => {
    const api = new ReplayApi({
      replies: new Map(
        ["version", "summary", "stats", "pools", "power", "profiles", "config"].map((n) => [
          n,
          file(n),
        ]),
      ),
    });
    await api.listen();
    closers.push(() => api.close());
    const endpoint = { host: "127.0.0.1", apiPort: api.address.port };
    expect(await detectFamily(endpoint, context(time))).toBe("luxos");
    const d = new LuxosDriver(endpoint, context(time));
    const id = await d.detect();
    expect(id).toMatchObject({ mac: "62:f7:5e:b7:10:46", serial: "JYZZB0UBDJABF06RB" });
    const r = await d.read();
    expect(r.hashrateGhs).toBe(59756.06);
    expect(r.power).toEqual({ watts: 1051, provenance: "estimated", source: "firmware" });
    expect(r.pools.map((p) => p.active)).toContain(true);
    expect(r.uptimeS).toBe(3453);
    expect(r.mode).toBe("normal");
    expect(api.requests).toContain("psuget");
  });
});
