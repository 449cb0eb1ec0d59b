import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { AgentdError } from "../../lib/errors.ts";
import { fakeTime, systemTimers } from "../../lib/timers.ts";
import {
  cgminerParams,
  cgminerRaw,
  cgminerRequest,
  checkEnvelope,
} from "../../plugins/cgminer/client.ts";
import { parseCgminerReply, repairCgminerJson } from "../../plugins/cgminer/repair.ts";

/** A 4028 server that answers every connection with `reply(request, socket)`. */
const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

async function serve(reply: (request: string, socket: Socket) => void): Promise<number> {
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on("error", () => {});
    let buf = "";
    socket.on("data", (c) => {
      buf += c.toString();
      try {
        JSON.parse(buf);
      } catch {
        return;
      }
      reply(buf, socket);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return (server.address() as { port: number }).port;
}

const opts = { timers: systemTimers, maxReplyBytes: 64 * 1024, timeoutMs: 5_000 };
const target = (port: number) => ({ host: "127.0.0.1", port });
const ok = (extra = "") =>
  `{"STATUS":[{"STATUS":"S","When":1,"Code":11,"Msg":"Summary","Description":"bmminer 2.0.0"}]${extra},"id":1}`;

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AgentdError) return err.code;
    throw err;
  }
  return "resolved";
}

describe("repairs of what firmware prints", () => {
  it("}{ between objects gets its comma (the S9's STATS)", () => {
    expect(parseCgminerReply('{"STATS":[{"a":1}{"b":2}],"id":1}\0')).toEqual({
      STATS: [{ a: 1 }, { b: 2 }],
      id: 1,
    });
  });
  it("trailing commas before } and ] are dropped", () => {
    expect(parseCgminerReply('{"a":[1,2,],"b":{"c":3,},}')).toEqual({ a: [1, 2], b: { c: 3 } });
  });
  it("a leading comma [,{ is dropped", () => {
    expect(parseCgminerReply('{"a":[,{"x":1}]}')).toEqual({ a: [{ x: 1 }] });
  });
  it("bare inf, -inf and nan become null; inside strings they stay", () => {
    expect(parseCgminerReply('{"a":inf,"b":-inf,"c":nan,"d":"nan inf,}"}')).toEqual({
      a: null,
      b: null,
      c: null,
      d: "nan inf,}",
    });
  });
  it("the trailing NUL and whitespace go; escaped quotes inside strings are kept", () => {
    expect(repairCgminerJson('{"a":"x\\"}{"}\n\0')).toBe('{"a":"x\\"}{"}');
  });
  it("what is still not JSON, or nested too deep, is AGENTD_E_MINER_REPLY_INVALID", () => {
    expect(() => parseCgminerReply("{oops")).toThrow(/not JSON/);
    expect(() => parseCgminerReply(`${"[".repeat(40)}${"]".repeat(40)}`)).toThrow(
      expect.objectContaining({ code: "AGENTD_E_MINER_REPLY_INVALID" }),
    );
  });
});

describe("the STATUS envelope", () => {
  const env = (status: string, c: number) =>
    JSON.parse(`{"STATUS":[{"STATUS":"${status}","Code":${c},"Msg":"m${c}"}],"id":1}`);
  it("45 is ACCESS_DENIED, 14 UNSUPPORTED, another error REFUSED", () => {
    for (const [c, want] of [
      [45, "AGENTD_E_MINER_ACCESS_DENIED"],
      [14, "AGENTD_E_MINER_UNSUPPORTED"],
      [26, "AGENTD_E_MINER_REFUSED"],
    ] as const) {
      expect(() => checkEnvelope("x", env("E", c))).toThrow(
        expect.objectContaining({ code: want }),
      );
    }
    expect(() => checkEnvelope("x", env("F", 1))).toThrow(
      expect.objectContaining({ code: "AGENTD_E_MINER_REFUSED" }),
    );
  });
  it("S, I and W carry data; a bare RESTART and the new API's STATUS object are envelopes too", () => {
    expect(checkEnvelope("x", env("W", 11)).status.Code).toBe(11);
    expect(checkEnvelope("restart", { STATUS: "RESTART" }).status.STATUS).toBe("RESTART");
    expect(
      checkEnvelope("stats", { STATUS: { STATUS: "S", when: 1, Msg: "stats" }, STATS: [] }).status
        .Msg,
    ).toBe("stats");
  });
  it("no STATUS, or not an object: REPLY_INVALID", () => {
    for (const v of [{ id: 1 }, [1], "x", { STATUS: 3 }]) {
      expect(() => checkEnvelope("x", v)).toThrow(
        expect.objectContaining({ code: "AGENTD_E_MINER_REPLY_INVALID" }),
      );
    }
  });
});

describe("one request over TCP, bounded", () => {
  it("sends the command, parameter and extra fields; resolves at the NUL even if the socket stays open", async () => {
    let seen = "";
    const port = await serve((req, s) => {
      seen = req;
      s.write(`${ok()}\0`);
    });
    const r = await cgminerRequest(target(port), "summary", "0", {
      ...opts,
      extra: { new_api: true },
    });
    expect(JSON.parse(seen)).toEqual({ command: "summary", parameter: "0", new_api: true });
    expect(r.status).toMatchObject({ STATUS: "S", Code: 11 });
  });

  it("a reply without a NUL ends at EOF", async () => {
    const port = await serve((_r, s) => s.end(ok()));
    expect((await cgminerRequest(target(port), "summary", null, opts)).status.Code).toBe(11);
  });

  it("more than maxReplyBytes: REPLY_TOO_LARGE, cut at the bound", async () => {
    const port = await serve((_r, s) => s.end(`{"pad":"${"x".repeat(200_000)}"}\0`));
    const err = await cgminerRaw(target(port), "stats", null, opts).catch((e: AgentdError) => e);
    expect(err).toMatchObject({
      code: "AGENTD_E_MINER_REPLY_TOO_LARGE",
      context: { limit: 65536 },
    });
  });

  it("a reset mid-reply and a close without a word: UNREACHABLE", async () => {
    const reset = await serve((_r, s) => s.write('{"STATUS":[{"STAT', () => s.resetAndDestroy()));
    expect(await code(cgminerRaw(target(reset), "summary", null, opts))).toBe(
      "AGENTD_E_MINER_UNREACHABLE",
    );
    const silent = await serve((_r, s) => s.end());
    expect(await code(cgminerRaw(target(silent), "summary", null, opts))).toBe(
      "AGENTD_E_MINER_UNREACHABLE",
    );
  });

  it("a refused connection: UNREACHABLE", async () => {
    const port = await serve(() => {});
    await new Promise((r) => servers.pop()?.close(r));
    expect(await code(cgminerRaw(target(port), "summary", null, opts))).toBe(
      "AGENTD_E_MINER_UNREACHABLE",
    );
  });

  it("no answer within timeoutMs (fake time): TIMEOUT; no timer is left behind after a reply", async () => {
    const ft = fakeTime(0);
    const port = await serve(() => {});
    const p = code(cgminerRaw(target(port), "summary", null, { ...opts, timers: ft.timers }));
    expect(ft.delays()).toEqual([5_000]);
    await ft.advance(5_000);
    expect(await p).toBe("AGENTD_E_MINER_TIMEOUT");

    const fast = await serve((_r, s) => s.end(`${ok()}\0`));
    await cgminerRaw(target(fast), "summary", null, { ...opts, timers: ft.timers });
    expect(ft.pending()).toBe(0);
  });
});

describe("parameters", () => {
  it("commas and backslashes inside a value are escaped as cgminer reads them", () => {
    expect(cgminerParams(["stratum+tcp://h:1", "a,b", "c\\d"])).toBe(
      "stratum+tcp://h:1,a\\,b,c\\\\d",
    );
  });
});
