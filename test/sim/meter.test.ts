import { request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { type Fault, HUGE_BYTES } from "../../sim/meter/faults.ts";
import { SimMeter, type SimMeterOptions } from "../../sim/meter/server.ts";

const meters: SimMeter[] = [];
afterEach(async () => {
  await Promise.all(meters.splice(0).map((m) => m.close()));
});

async function sim(o: SimMeterOptions = {}): Promise<SimMeter> {
  const m = await SimMeter.start(o);
  meters.push(m);
  return m;
}

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  error: string | null;
}

/** A plain GET, independent of the driver's client: what the simulator really sends. */
function get(url: string, headers: Record<string, string> = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      const done = (error: string | null) =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, error });
      res.on("end", () => done(null));
      res.on("error", (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("the simulated meter (sim/meter/)", () => {
  it("shelly: apower at /rpc/Switch.GetStatus?id=0, a new value and sim_seq on every read", async () => {
    const m = await sim({ shape: "shelly", watts: 1000 });
    expect(m.url).toBe(`http://127.0.0.1:${m.port}/rpc/Switch.GetStatus?id=0`);
    expect(m.pointer).toBe("/apower");
    expect(m.last()).toBeNull();
    const served: number[] = [];
    m.on("read", (s) => served.push(s.seq));
    for (let i = 1; i <= 3; i++) {
      const r = await get(m.url);
      expect(r.status).toBe(200);
      expect(r.headers["content-type"]).toBe("application/json");
      const body = JSON.parse(r.body) as Record<string, unknown>;
      expect(body).toMatchObject({ id: 0, output: true, apower: 1000 + i * 0.25, sim_seq: i });
      expect(m.last()).toEqual({ seq: i, watts: [1000 + i * 0.25] });
    }
    expect(served).toEqual([1, 2, 3]);
    expect(m.reads).toBe(3);
  });

  it("pdu: one value per outlet and their total, at /outlets", async () => {
    const m = await sim({ shape: "pdu", outlets: 3, watts: 500 });
    expect(m.pointer).toBe("/outlets/0/watts");
    const body = JSON.parse((await get(m.url)).body) as {
      outlets: { id: number; watts: number }[];
      total_watts: number;
      sim_seq: number;
    };
    expect(body.outlets.map((o) => [o.id, o.watts])).toEqual([
      [1, 500.25],
      [2, 510.25],
      [3, 520.25],
    ]);
    expect(body.total_watts).toBe(1530.75);
    expect(body.sim_seq).toBe(1);
  });

  it("answers 404 elsewhere and 405 to other methods, serving nothing", async () => {
    const m = await sim({ shape: "pdu" });
    expect((await get(`http://127.0.0.1:${m.port}/status`)).status).toBe(404);
    const post = await new Promise<number>((resolve, reject) => {
      const req = request(m.url, { method: "POST" }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    });
    expect(post).toBe(405);
    expect(m.reads).toBe(0);
  });

  it.each([
    ["not-number", /"apower":"n\/a",/],
    ["negative", /"apower":-1400\.25,/],
    ["nan", /"apower":NaN,/],
    ["malformed", /"sim_seq":1,\}$/],
  ] as [Fault, RegExp][])("fault %s is in the body's text", async (fault, text) => {
    const m = await sim({ shape: "shelly", fault });
    const r = await get(m.url);
    expect(r.status).toBe(200);
    expect(r.body).toMatch(text);
  });

  it("fault missing: no apower; status-503: a 503", async () => {
    const m = await sim({ shape: "shelly", fault: "missing" });
    const body = JSON.parse((await get(m.url)).body) as Record<string, unknown>;
    expect(body).not.toHaveProperty("apower");
    expect(body).toHaveProperty("voltage");
    m.setFault("status-503");
    expect((await get(m.url)).status).toBe(503);
  });

  it("fault reset: half the promised body, then the connection dies", async () => {
    const m = await sim({ shape: "shelly", fault: "reset" });
    const r = await get(m.url);
    expect(r.error).not.toBeNull();
    expect(r.body.length).toBeGreaterThan(0);
    expect(r.body.length).toBeLessThan(Number(r.headers["content-length"]));
  });

  it("fault huge: 10 MiB of valid JSON with the watts in it, to a reader that takes it all", async () => {
    const m = await sim({ shape: "shelly", fault: "huge" });
    const outcome = new Promise((resolve) => m.once("huge", resolve));
    const r = await get(m.url);
    expect(Buffer.byteLength(r.body)).toBe(HUGE_BYTES);
    expect((JSON.parse(r.body) as { apower: number }).apower).toBe(m.last()?.watts[0]);
    expect(await outcome).toEqual({ bytesWritten: HUGE_BYTES, complete: true });
  });

  it("fault slow: holds the request until slowMs, then serves", async () => {
    const m = await sim({ shape: "shelly", fault: "slow", slowMs: 50 });
    const arrived = new Promise((resolve) => m.once("request", resolve));
    const reply = get(m.url);
    await arrived;
    expect(m.reads).toBe(0);
    const r = await reply;
    expect(r.status).toBe(200);
    expect(m.reads).toBe(1);
  });

  it("close() ends a held slow request and its timer", async () => {
    const m = await SimMeter.start({ fault: "slow" });
    const arrived = new Promise((resolve) => m.once("request", resolve));
    const reply = get(m.url).catch((e: NodeJS.ErrnoException) => e.code);
    await arrived;
    await m.close();
    expect(await reply).toBe("ECONNRESET");
    expect(m.reads).toBe(0);
  });

  it("--auth basic: 401 with a Basic challenge, 200 with the right credentials only", async () => {
    const m = await sim({ auth: { scheme: "basic", username: "admin", password: "pw" } });
    const bare = await get(m.url);
    expect(bare.status).toBe(401);
    expect(bare.headers["www-authenticate"]).toBe('Basic realm="shellyplus1pm-sim000000"');
    const basic = (s: string) => ({ authorization: `Basic ${Buffer.from(s).toString("base64")}` });
    expect((await get(m.url, basic("admin:nope"))).status).toBe(401);
    expect((await get(m.url, basic("admin:pw"))).status).toBe(200);
    expect(m.reads).toBe(1);
  });

  it("--auth digest: the challenge names qop, realm, nonce and the algorithm", async () => {
    const m = await sim({
      shape: "pdu",
      auth: { scheme: "digest", algorithm: "SHA-256", username: "admin", password: "pw" },
    });
    const bare = await get(m.url);
    expect(bare.status).toBe(401);
    expect(bare.headers["www-authenticate"]).toMatch(
      /^Digest qop="auth", realm="pdu-sim", nonce="[0-9a-f]{32}", algorithm=SHA-256$/,
    );
    const forged =
      'Digest username="admin", realm="pdu-sim", nonce="x", uri="/outlets", response="0"';
    expect((await get(m.url, { authorization: forged })).status).toBe(401);
    expect(m.reads).toBe(0);
  });
});
