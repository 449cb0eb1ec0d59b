import { afterEach, describe, expect, it } from "vitest";
import { AgentdError } from "../../lib/errors.ts";
import { fakeTime } from "../../lib/timers.ts";
import {
  type Credentials,
  DEFAULT_LIMITS,
  type DriverContext,
  type ShellyMeterSpec,
} from "../../plugins/driver.ts";
import { readMeter } from "../../plugins/meter/http-json.ts";
import { shellyStatusUrl } from "../../plugins/meter/shelly.ts";
import { parseMeterSpec } from "../../plugins/meter/spec.ts";
import type { Fault } from "../../sim/meter/faults.ts";
import { SimMeter, type SimMeterOptions } from "../../sim/meter/server.ts";

/** The `shelly-gen2` meter kind against the simulated Shelly Gen2+ (real sockets). */

const meters: SimMeter[] = [];
afterEach(async () => {
  await Promise.all(meters.splice(0).map((m) => m.close()));
});

async function shelly(o: SimMeterOptions = {}): Promise<SimMeter> {
  const m = await SimMeter.start({ shape: "shelly", ...o });
  meters.push(m);
  return m;
}

function ctx(credentials: Credentials | null = null, maxReplyBytes = 64 * 1024): DriverContext {
  const t = fakeTime(Date.UTC(2026, 0, 1));
  return {
    clock: t.clock,
    timers: t.timers,
    limits: { ...DEFAULT_LIMITS, maxReplyBytes, requestTimeoutMs: 5_000 },
    credentials,
  };
}

function spec(m: SimMeter, over: Partial<ShellyMeterSpec> = {}): ShellyMeterSpec {
  return {
    kind: "shelly-gen2",
    id: "plug-1",
    url: `http://127.0.0.1:${m.port}`,
    feeds: ["axe-1"],
    ...over,
  };
}

async function rejection(p: Promise<unknown>): Promise<AgentdError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof AgentdError) return e;
    throw e;
  }
  throw new Error("expected a rejection");
}

describe("a Shelly Gen2+ plug as a meter (kind shelly-gen2)", () => {
  it("reads measured apower from Switch.GetStatus of its channel: the value served, new each read", async () => {
    const m = await shelly({ watts: 1234 });
    const s = spec(m);
    expect(shellyStatusUrl(s)).toBe(`http://127.0.0.1:${m.port}/rpc/Switch.GetStatus?id=0`);
    const r1 = await readMeter(s, ctx());
    expect(r1).toMatchObject({ id: "plug-1", provenance: "measured", feeds: ["axe-1"] });
    expect(r1.watts).toBe(m.last()?.watts[0]);
    const r2 = await readMeter(s, ctx());
    expect(r2.watts).toBe(m.last()?.watts[0]);
    expect(r2.watts).not.toBe(r1.watts);
  });

  it("an off relay reads 0 W: a measurement, not a failure", async () => {
    const m = await shelly({ fault: "relay-off" });
    const r = await readMeter(spec(m), ctx());
    expect(r.watts).toBe(0);
    expect(r.provenance).toBe("measured");
  });

  it("authentication: SHA-256 digest answered from the credentials; without them AGENTD_E_MINER_AUTH", async () => {
    const creds = { username: "admin", password: "plug-secret" };
    const m = await shelly({ auth: { scheme: "digest", algorithm: "SHA-256", ...creds } });
    expect((await readMeter(spec(m), ctx(creds))).watts).toBe(m.last()?.watts[0]);
    const none = await rejection(readMeter(spec(m), ctx()));
    expect(none.code).toBe("AGENTD_E_MINER_AUTH");
    expect(none.message).toContain("plug-1");
    const wrong = await rejection(readMeter(spec(m), ctx({ ...creds, password: "nope" })));
    expect(wrong.code).toBe("AGENTD_E_MINER_AUTH");
    expect(JSON.stringify(wrong.context)).not.toContain("plug-secret");
  });

  it("never answers a Basic challenge: Shelly Gen2 speaks digest, Basic is a downgrade", async () => {
    const creds = { username: "admin", password: "plug-secret" };
    const m = await shelly({ auth: { scheme: "basic", ...creds } });
    expect((await rejection(readMeter(spec(m), ctx(creds)))).code).toBe("AGENTD_E_MINER_AUTH");
  });

  const readErrors: [string, Fault, RegExp][] = [
    ["malformed JSON", "malformed", /not strict JSON/],
    ["NaN watts", "nan", /not strict JSON/],
    ["no apower (a switch without metering)", "missing", /no power metering/],
    ["negative watts", "negative", /negative/],
    ["HTTP 503", "status-503", /HTTP 503/],
  ];
  for (const [name, fault, message] of readErrors) {
    it(`${name}: AGENTD_E_METER_READ naming the meter`, async () => {
      const m = await shelly({ fault });
      const err = await rejection(readMeter(spec(m), ctx()));
      expect(err.code).toBe("AGENTD_E_METER_READ");
      expect(err.message).toMatch(message);
      expect(err.message).toContain("plug-1");
    });
  }

  it("a channel the device does not have: its RPC error, AGENTD_E_METER_READ", async () => {
    const m = await shelly();
    const err = await rejection(readMeter(spec(m, { channel: 3 }), ctx()));
    expect(err.code).toBe("AGENTD_E_METER_READ");
    expect(err.message).toMatch(/RPC error -105/);
  });

  it("a 10 MiB reply stops at the bound (AGENTD_E_MINER_REPLY_TOO_LARGE)", async () => {
    const m = await shelly({ fault: "huge" });
    const huge = new Promise<{ bytesWritten: number }>((r) => m.once("huge", r));
    const err = await rejection(readMeter(spec(m), ctx(null, 64 * 1024)));
    expect(err.code).toBe("AGENTD_E_MINER_REPLY_TOO_LARGE");
    expect((await huge).bytesWritten).toBeLessThan(10 * 1024 * 1024);
  });

  it("configuration: kind, a device URL without path, a channel; no pointer or scale", () => {
    const ok = parseMeterSpec({
      kind: "shelly-gen2",
      id: "plug-1",
      url: "http://192.168.1.50",
      channel: 1,
      feeds: ["axe-1"],
    });
    expect(ok).toEqual({
      kind: "shelly-gen2",
      id: "plug-1",
      url: "http://192.168.1.50",
      channel: 1,
      feeds: ["axe-1"],
    });
    const base = { kind: "shelly-gen2", id: "p", url: "http://192.168.1.50", feeds: ["a"] };
    const code = (v: unknown) => {
      try {
        parseMeterSpec(v);
      } catch (e) {
        return (e as AgentdError).code;
      }
      return "accepted";
    };
    expect(code({ ...base, pointer: "/apower" })).toBe("AGENTD_E_CONFIG_UNKNOWN_KEY");
    expect(code({ ...base, url: "http://192.168.1.50/rpc/Switch.GetStatus?id=0" })).toBe(
      "AGENTD_E_CONFIG_RANGE",
    );
    expect(code({ ...base, channel: -1 })).toBe("AGENTD_E_CONFIG_RANGE");
    expect(code({ ...base, channel: "0" })).toBe("AGENTD_E_CONFIG_TYPE");
    expect(code({ ...base, kind: "tasmota" })).toBe("AGENTD_E_CONFIG_RANGE");
  });
});
