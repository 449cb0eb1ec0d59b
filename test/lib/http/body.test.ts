import { createServer, request, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isAgentdError } from "../../../lib/errors.ts";
import { type BodyOptions, readJsonBody } from "../../../lib/http/body.ts";
import { closeNow, listenTcp } from "../../../lib/http/listen.ts";

/**
 * Bounded strict-JSON bodies on a real server (127.0.0.1, port 0): each path reads with other
 * options, and answers what it read or the code it refused with.
 */

const OPTIONS: Record<string, BodyOptions> = {
  // a server that checks Content-Type, with its own codes
  "/typed": {
    limit: 16,
    codes: { tooLarge: "AGENTD_E_CP_TOO_LARGE", unsupportedMedia: "AGENTD_E_CP_UNSUPPORTED_MEDIA" },
  },
  // one that does not, an empty body allowed
  "/untyped": { limit: 16, optional: true, codes: { tooLarge: "AGENTD_E_API_TOO_LARGE" } },
  "/none": { limit: 0, codes: { tooLarge: "AGENTD_E_CP_TOO_LARGE" } },
};

let server: Server;
let port = 0;
beforeAll(async () => {
  server = createServer((req, res) => {
    const options = OPTIONS[req.url ?? ""] as BodyOptions;
    readJsonBody(req, options).then(
      (value) => res.end(JSON.stringify({ value: value ?? "(none)" })),
      (err: unknown) => {
        res.setHeader("connection", "close");
        res.end(JSON.stringify({ code: isAgentdError(err) ? err.code : String(err) }));
      },
    );
  });
  port = (await listenTcp(server, 0, "127.0.0.1")).port;
});
afterAll(() => closeNow(server));

/** One POST: `chunks` written one by one (chunked unless a content-length is given). */
function post(
  path: string,
  headers: Record<string, string>,
  chunks: (string | Buffer)[],
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method: "POST", headers }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => {
        text += c.toString();
      });
      res.on("end", () => resolve(JSON.parse(text)));
    });
    req.on("error", reject);
    if (chunks.length === 0) {
      // headers only, and the body never comes: the answer must not wait for it
      req.flushHeaders();
      return;
    }
    for (const c of chunks) req.write(c);
    req.end();
  });
}

const json = { "content-type": "application/json" };

describe("readJsonBody", () => {
  it("reads a strict JSON body", async () => {
    expect(await post("/typed", json, ['{"a":', "1}"])).toEqual({ value: { a: 1 } });
    expect(
      await post("/typed", { "content-type": "application/json; charset=utf-8" }, ["[1]"]),
    ).toEqual({ value: [1] });
  });

  it("refuses a declared length past the limit before a byte of the body is read", async () => {
    const headers = { ...json, "content-length": "1000" };
    expect(await post("/typed", headers, [])).toEqual({ code: "AGENTD_E_CP_TOO_LARGE" });
    expect(await post("/untyped", headers, [])).toEqual({ code: "AGENTD_E_API_TOO_LARGE" });
  });

  it("refuses a chunked body past the limit, with the server's own code", async () => {
    const big = ['{"a":"', "x".repeat(10), "x".repeat(10), '"}'];
    expect(await post("/typed", json, big)).toEqual({ code: "AGENTD_E_CP_TOO_LARGE" });
    expect(await post("/untyped", {}, big)).toEqual({ code: "AGENTD_E_API_TOO_LARGE" });
    expect(await post("/none", json, ["1"])).toEqual({ code: "AGENTD_E_CP_TOO_LARGE" });
  });

  it("checks the media type only for a server that gives a code for it", async () => {
    expect(await post("/typed", {}, ["{}"])).toEqual({ code: "AGENTD_E_CP_UNSUPPORTED_MEDIA" });
    expect(await post("/typed", { "content-type": "text/plain" }, ["{}"])).toEqual({
      code: "AGENTD_E_CP_UNSUPPORTED_MEDIA",
    });
    expect(await post("/typed", { ...json, "content-encoding": "gzip" }, ["{}"])).toEqual({
      code: "AGENTD_E_CP_UNSUPPORTED_MEDIA",
    });
    expect(await post("/untyped", {}, ['{"b":2}'])).toEqual({ value: { b: 2 } });
  });

  it("refuses bytes that are not UTF-8 and duplicate members", async () => {
    const notUtf8 = Buffer.from([0x22, 0xff, 0x22]);
    expect(await post("/untyped", {}, [notUtf8])).toEqual({ code: "AGENTD_E_JSON_INVALID" });
    expect(await post("/untyped", {}, ['{"a":1,"a":2}'])).toEqual({
      code: "AGENTD_E_JSON_DUPLICATE_KEY",
    });
  });

  it("gives an empty body as nothing where that is allowed, else AGENTD_E_SCHEMA", async () => {
    expect(await post("/untyped", { "content-length": "0" }, [""])).toEqual({ value: "(none)" });
    expect(await post("/typed", { ...json, "content-length": "0" }, [""])).toEqual({
      code: "AGENTD_E_SCHEMA",
    });
  });
});
