import { beforeEach, describe, expect, it } from "vitest";
import { BitaxeDriver } from "../../plugins/bitaxe/bitaxe.ts";
import {
  context,
  drive,
  LIMITS as HOST_LIMITS,
  rejection,
  type SteppedTime,
  steppedTime,
} from "./antminer-sim.ts";
import { useSimBitaxes } from "./bitaxe-sim.ts";

/** Each fault of the simulated AxeOS API: a clear per-miner error, memory bounded. */

let time: SteppedTime;
beforeEach(() => {
  time = steppedTime();
});
const simBitaxe = useSimBitaxes(() => time);

describe("Bitaxe (ESP-Miner) faults", () => {
  it("a write acknowledged but not applied: setPools and sleep are not confirmed", async () => {
    const b = await simBitaxe();
    const d = new BitaxeDriver(b.endpoint, context(time));
    b.axeos.setFault("write-ignored");
    const pools = rejection(
      drive(time, () => d.setPools([{ url: b.pool.url, user: "new.user", password: "x" }])),
    );
    const err = await pools;
    expect(err.code).toBe("AGENTD_E_MINER_NOT_CONFIRMED");
    expect(err.context).toMatchObject({ action: "setPools" });
    // The restart did happen (the reads span it): only the pools are not what was asked.
    expect(b.axeos.requests).toContain("POST /api/system/restart");
    const sleep = await rejection(drive(time, () => d.sleep()));
    expect(sleep.code).toBe("AGENTD_E_MINER_NOT_CONFIRMED");
    expect(b.miner.mode).toBe("normal");
  });

  it("a slow restart: confirmed while it comes back within the deadline, not after", async () => {
    const slowOk = await simBitaxe({ rebootMs: HOST_LIMITS.confirmDeadlineMs / 2 });
    const ok = await drive(time, () => new BitaxeDriver(slowOk.endpoint, context(time)).reboot());
    // Every read while it was down failed and was retried.
    expect(ok.reads).toBeGreaterThan(
      HOST_LIMITS.confirmDeadlineMs / 2 / HOST_LIMITS.confirmIntervalMs,
    );
  });

  it("a restart longer than the deadline: not confirmed, the last read unreachable", async () => {
    const b = await simBitaxe({ rebootMs: HOST_LIMITS.confirmDeadlineMs * 2 });
    const err = await rejection(
      drive(time, () => new BitaxeDriver(b.endpoint, context(time)).reboot()),
    );
    expect(err.code).toBe("AGENTD_E_MINER_NOT_CONFIRMED");
    expect(err.context).toMatchObject({ last_error: "AGENTD_E_MINER_UNREACHABLE" });
  });

  it("malformed JSON (NaN, a trailing comma) is AGENTD_E_MINER_REPLY_INVALID, not repaired", async () => {
    const b = await simBitaxe();
    b.axeos.setFault("malformed");
    const err = await rejection(new BitaxeDriver(b.endpoint, context(time)).read());
    expect(err.code).toBe("AGENTD_E_MINER_REPLY_INVALID");
    expect(err.message).toContain("/api/system/info");
  });

  it("a 10 MiB reply is cut off at the bound, unread", async () => {
    const b = await simBitaxe();
    b.axeos.setFault("huge");
    const err = await rejection(new BitaxeDriver(b.endpoint, context(time)).read());
    expect(err.code).toBe("AGENTD_E_MINER_REPLY_TOO_LARGE");
    expect(err.context).toMatchObject({ limit: HOST_LIMITS.maxReplyBytes });
    // The bound is the HTTP client's, whose memory test/plugins/http-client.test.ts measures;
    // the miner is still there for the next read.
    b.axeos.setFault(null);
    expect((await new BitaxeDriver(b.endpoint, context(time)).read()).hashrateGhs).toBeGreaterThan(
      0,
    );
  });

  it("a version without pause: sleep is unsupported and nothing is sent", async () => {
    const b = await simBitaxe({ version: "v2.13.2" });
    const d = new BitaxeDriver(b.endpoint, context(time));
    const err = await rejection(d.sleep());
    expect(err.code).toBe("AGENTD_E_MINER_UNSUPPORTED");
    expect(err.message).toContain("v2.13.2");
    expect((await rejection(d.wake())).code).toBe("AGENTD_E_MINER_UNSUPPORTED");
    expect(b.axeos.requests.some((r) => r.startsWith("POST"))).toBe(false);
    // Its info has no miningPaused: the mode reads as normal, not unknown.
    expect((await d.read()).mode).toBe("normal");
  });

  it("a client outside the private ranges is refused (401), said as such", async () => {
    const b = await simBitaxe({ privateOnly: true });
    const err = await rejection(new BitaxeDriver(b.endpoint, context(time)).read());
    expect(err.code).toBe("AGENTD_E_MINER_AUTH");
    expect(err.message).toMatch(/192\.168\/16/);
  });

  it("an unreachable Bitaxe is AGENTD_E_MINER_UNREACHABLE", async () => {
    const err = await rejection(
      new BitaxeDriver({ host: "127.0.0.1", webPort: 1 }, context(time)).read(),
    );
    expect(err.code).toBe("AGENTD_E_MINER_UNREACHABLE");
  });
});
