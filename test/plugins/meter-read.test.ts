import { afterEach, describe, expect, it } from "vitest";
import { AgentdError } from "../../lib/errors.ts";
import { fakeTime } from "../../lib/timers.ts";
import {
  type Credentials,
  DEFAULT_LIMITS,
  type DriverContext,
  type MeterSpec,
} from "../../plugins/driver.ts";
import { httpSend } from "../../plugins/http/client.ts";
import { readMeter } from "../../plugins/meter/http-json.ts";
import type { Fault } from "../../sim/meter/faults.ts";
import { SimMeter, type SimMeterOptions } from "../../sim/meter/server.ts";

const T0 = Date.UTC(2025, 0, 1);
const meters: SimMeter[] = [];
afterEach(async () => {
  await Promise.all(meters.splice(0).map((m) => m.close()));
});

async function sim(o: SimMeterOptions = {}): Promise<SimMeter> {
  const m = await SimMeter.start(o);
  meters.push(m);
  return m;
}

/** Fake time: the deadline fires only when a test moves it, so none passes by accident. */
function context(credentials: Credentials | null = null, maxReplyBytes = 64 * 1024) {
  const time = fakeTime(T0);
  const ctx: DriverContext = {
    clock: time.clock,
    timers: time.timers,
    limits: { ...DEFAULT_LIMITS, maxReplyBytes, requestTimeoutMs: 5_000 },
    credentials,
  };
  return { time, ctx };
}

function specOf(m: SimMeter, over: Partial<MeterSpec> = {}): MeterSpec {
  return { id: "rack-a", url: m.url, pointer: m.pointer, feeds: ["s9-1", "s9-2"], ...over };
}

async function refusal(p: Promise<unknown>): Promise<AgentdError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(AgentdError);
    return err as AgentdError;
  }
  throw new Error("the read succeeded");
}

describe("readMeter against the simulated meter (real sockets)", () => {
  it("reads a Shelly's apower as measured watts for every miner it feeds", async () => {
    const m = await sim({ shape: "shelly", watts: 1350 });
    const { ctx, time } = context();
    time.clock.advance(1234);
    const r = await readMeter(specOf(m), ctx);
    expect(m.last()).toEqual({ seq: 1, watts: [1350.25] });
    expect(r).toEqual({
      id: "rack-a",
      at: T0 + 1234,
      watts: 1350.25,
      provenance: "measured",
      feeds: ["s9-1", "s9-2"],
    });
    expect(Object.isFrozen(r)).toBe(true);
  });

  it("is current on every read: each reading is the body just served, never a cached one", async () => {
    const m = await sim({ shape: "pdu", outlets: 3, watts: 3000 });
    const { ctx } = context();
    const seen: number[] = [];
    for (let i = 1; i <= 20; i++) {
      const r = await readMeter(specOf(m, { pointer: "/outlets/2/watts" }), ctx);
      const served = m.last();
      expect(served?.seq).toBe(i);
      expect(r.watts).toBe(served?.watts[2]);
      seen.push(r.watts);
    }
    expect(new Set(seen).size).toBe(20);
    m.setWatts(100);
    const after = await readMeter(specOf(m, { pointer: "/outlets/0/watts" }), ctx);
    expect(after.watts).toBe(100 + 21 * 0.25);
  });

  it("reads a PDU outlet by index, the total, and applies the scale", async () => {
    const m = await sim({ shape: "pdu", outlets: 4, watts: 1000 });
    const { ctx } = context();
    const one = await readMeter(specOf(m, { pointer: "/outlets/3/watts" }), ctx);
    expect(one.watts).toBe(m.last()?.watts[3]);
    expect(one.watts).toBe(1030.25);
    const total = await readMeter(specOf(m, { pointer: "/total_watts" }), ctx);
    const served = m.last()?.watts ?? [];
    expect(total.watts).toBe(served.reduce((a, b) => a + b, 0));
    const kw = await readMeter(specOf(m, { pointer: "/outlets/0/watts", scale: 0.001 }), ctx);
    expect(kw.watts).toBeCloseTo((m.last()?.watts[0] ?? 0) * 0.001, 9);
  });

  it("names the pointer when nothing is there, and never the URL's password", async () => {
    const m = await sim({ shape: "pdu", outlets: 2 });
    const { ctx } = context();
    const url = m.url.replace("http://", "http://admin:hunter2@");
    const e = await refusal(readMeter(specOf(m, { url, pointer: "/outlets/2/watts" }), ctx));
    expect(e.code).toBe("AGENTD_E_METER_READ");
    expect(e.message).toBe(
      `meter rack-a: nothing at pointer "/outlets/2/watts": /outlets/2: index 2 past the array's 2`,
    );
    expect(JSON.stringify(e.toJSON())).not.toContain("hunter2");
    expect(e.context).toMatchObject({ meter: "rack-a", pointer: "/outlets/2/watts" });
  });

  const VALUE_FAULTS: readonly [Fault, string][] = [
    ["not-number", 'the value at pointer "/apower" is a string that is not a number'],
    ["negative", 'the value at pointer "/apower" is negative (-1400.25)'],
    ["missing", 'nothing at pointer "/apower": /apower: no such member'],
    ["nan", "reply is not strict JSON (invalid JSON at position"],
    ["malformed", "reply is not strict JSON (invalid JSON at position"],
    ["status-503", "answered HTTP 503, not 200"],
  ];
  it.each(VALUE_FAULTS)("fault %s: AGENTD_E_METER_READ, %s", async (fault, message) => {
    const m = await sim({ shape: "shelly", fault });
    const { ctx } = context();
    const e = await refusal(readMeter(specOf(m), ctx));
    expect(e.code).toBe("AGENTD_E_METER_READ");
    expect(e.message.startsWith(`meter rack-a: ${message}`)).toBe(true);
    // The same meter read fine the moment it stops misbehaving.
    m.setFault(null);
    expect((await readMeter(specOf(m), ctx)).watts).toBe(m.last()?.watts[0]);
  });

  it("refuses an absurd value (1 MW and more) with the pointer named", async () => {
    const m = await sim({ shape: "shelly", watts: 1_500_000 });
    const { ctx } = context();
    const e = await refusal(readMeter(specOf(m), ctx));
    expect(e.code).toBe("AGENTD_E_METER_READ");
    expect(e.message).toContain('the value at pointer "/apower" is 1500000.25 W is more than');
  });

  it("fault reset: the connection dies mid-reply, AGENTD_E_MINER_UNREACHABLE", async () => {
    const m = await sim({ shape: "shelly", fault: "reset" });
    const { ctx } = context();
    const e = await refusal(readMeter(specOf(m), ctx));
    expect(e.code).toBe("AGENTD_E_MINER_UNREACHABLE");
    expect(e.message.startsWith("meter rack-a: ")).toBe(true);
    expect(e.context).toMatchObject({ meter: "rack-a" });
  });

  it("fault huge: the 10 MiB reply is cut off at maxReplyBytes, read no further", async () => {
    const m = await sim({ shape: "shelly", fault: "huge" });
    const limit = 64 * 1024;
    const { ctx } = context(null, limit);
    const outcome = new Promise((resolve) => m.once("huge", resolve));
    const rss = process.memoryUsage().rss;
    const e = await refusal(readMeter(specOf(m), ctx));
    // Read whole, the reply costs ~40 MiB (chunks, their concatenation, the string).
    expect(process.memoryUsage().rss - rss).toBeLessThan(10 * 1024 * 1024);
    expect(e.code).toBe("AGENTD_E_MINER_REPLY_TOO_LARGE");
    expect(e.context).toMatchObject({ meter: "rack-a", limit });
    // The reader closed the connection long before the meter got its 10 MiB out: what it
    // held was bounded by the limit, not by what the meter sent.
    const { bytesWritten, complete } = (await outcome) as {
      bytesWritten: number;
      complete: boolean;
    };
    expect(complete).toBe(false);
    expect(bytesWritten).toBeLessThan(4 * 1024 * 1024);
  });

  it("fault huge, under a bound above 10 MiB: read whole (so the bound is what stops it)", async () => {
    const m = await sim({ shape: "shelly", fault: "huge" });
    const { ctx } = context(null, 11 * 1024 * 1024);
    const outcome = new Promise((resolve) => m.once("huge", resolve));
    expect((await readMeter(specOf(m), ctx)).watts).toBe(m.last()?.watts[0]);
    expect(await outcome).toEqual({ bytesWritten: 10 * 1024 * 1024, complete: true });
  });

  it("fault slow: no answer by the deadline, AGENTD_E_MINER_TIMEOUT", async () => {
    const m = await sim({ shape: "shelly", fault: "slow" });
    const { ctx, time } = context();
    const arrived = new Promise((resolve) => m.once("request", resolve));
    const read = refusal(readMeter(specOf(m), ctx));
    await arrived;
    await time.advance(4_999);
    expect(m.reads).toBe(0);
    await time.advance(1);
    const e = await read;
    expect(e.code).toBe("AGENTD_E_MINER_TIMEOUT");
    expect(e.message).toBe(`meter rack-a: ${m.host}:${m.port} did not answer in time`);
  });

  it("a meter that is not there: AGENTD_E_MINER_UNREACHABLE", async () => {
    const m = await sim();
    const url = m.url;
    await m.close();
    meters.splice(0);
    const { ctx } = context();
    const e = await refusal(readMeter(specOf(m, { url }), ctx));
    expect(e.code).toBe("AGENTD_E_MINER_UNREACHABLE");
    expect(e.context).toMatchObject({ meter: "rack-a", errno: "ECONNREFUSED" });
  });

  it("two meters read at once: the faulty one's error is its own, the other reads", async () => {
    const good = await sim({ shape: "shelly", watts: 1400 });
    const bad = await sim({ shape: "pdu", fault: "huge" });
    const slow = await sim({ shape: "shelly", fault: "nan" });
    const { ctx } = context();
    const [a, b, c] = await Promise.allSettled([
      readMeter(specOf(good, { id: "good", feeds: ["m1"] }), ctx),
      readMeter(specOf(bad, { id: "bad", feeds: ["m2"] }), ctx),
      readMeter(specOf(slow, { id: "nan", feeds: ["m3"] }), ctx),
    ]);
    expect(a).toEqual({
      status: "fulfilled",
      value: expect.objectContaining({ id: "good", watts: good.last()?.watts[0], feeds: ["m1"] }),
    });
    expect(b).toMatchObject({
      status: "rejected",
      reason: { code: "AGENTD_E_MINER_REPLY_TOO_LARGE", context: { meter: "bad" } },
    });
    expect(c).toMatchObject({
      status: "rejected",
      reason: { code: "AGENTD_E_METER_READ", context: { meter: "nan" } },
    });
  });
});

describe("readMeter with credentials", () => {
  const creds = { username: "admin", password: "s3cret" };

  it("only meters answer a Basic challenge: for a miner it is a downgrade, refused", async () => {
    const m = await sim({ shape: "shelly", auth: { scheme: "basic", ...creds } });
    const { ctx } = context(creds);
    const o = { timers: ctx.timers, maxReplyBytes: 65536, timeoutMs: 5000, credentials: creds };
    const e = await refusal(httpSend("GET", m.url, null, o));
    expect(e.code).toBe("AGENTD_E_MINER_AUTH");
    expect(e.message).toContain("no digest challenge");
    expect(m.reads).toBe(0);
    expect((await httpSend("GET", m.url, null, { ...o, allowBasic: true })).status).toBe(200);
    expect(m.reads).toBe(1);
  });

  it.each([
    ["basic", undefined],
    ["digest", "MD5"],
    ["digest", "SHA-256"],
  ] as const)("%s %s: 401 without credentials, a reading with them", async (scheme, algorithm) => {
    const m = await sim({
      shape: "shelly",
      auth: { scheme, ...(algorithm === undefined ? {} : { algorithm }), ...creds },
    });
    const without = await refusal(readMeter(specOf(m), context().ctx));
    expect(without.code).toBe("AGENTD_E_MINER_AUTH");
    expect(without.message).toBe(`meter rack-a: ${m.host}:${m.port}: credentials needed`);
    expect(m.reads).toBe(0);

    const r = await readMeter(specOf(m), context(creds).ctx);
    expect(r.watts).toBe(m.last()?.watts[0]);

    const wrong = await refusal(readMeter(specOf(m), context({ ...creds, password: "guess" }).ctx));
    expect(wrong.code).toBe("AGENTD_E_MINER_AUTH");
    expect(wrong.message).toContain("credentials refused");
    expect(JSON.stringify(wrong.toJSON())).not.toContain("guess");
    expect(m.reads).toBe(1);
  });
});
