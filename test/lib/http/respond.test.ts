import { createServer, request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { closeNow, listenTcp } from "../../../lib/http/listen.ts";
import { type HttpResult, rawResponse, send, serialize } from "../../../lib/http/respond.ts";

const servers: ReturnType<typeof createServer>[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => closeNow(s)));
});

/** What a real client receives for `result`. */
async function receive(result: HttpResult) {
  const server = createServer((_req, res) => send(res, serialize(result), { "x-extra": "1" }));
  servers.push(server);
  const { port } = await listenTcp(server, 0, "127.0.0.1");
  return new Promise<{ status: number; headers: Record<string, unknown>; text: string }>(
    (resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path: "/" }, (res) => {
        let text = "";
        res.on("data", (c: Buffer) => {
          text += c.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      });
      req.on("error", reject);
      req.end();
    },
  );
}

describe("responses", () => {
  it("sends JSON with the security headers, and never a CORS header", async () => {
    const r = await receive({
      status: 201,
      body: { ok: true },
      headers: { "Access-Control-Allow-Origin": "*", ETag: '"x"' },
    });
    expect(r.status).toBe(201);
    expect(JSON.parse(r.text)).toEqual({ ok: true });
    expect(r.headers).toMatchObject({
      "content-type": "application/json",
      "content-length": String(r.text.length),
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      etag: '"x"',
      "x-extra": "1",
    });
    expect(Object.keys(r.headers).filter((h) => h.startsWith("access-control-"))).toEqual([]);
  });

  it("sends text as given, and no body on 304", async () => {
    const t = await receive({ status: 200, text: "a 1\n", headers: { "content-type": "text/x" } });
    expect([t.text, t.headers["content-type"]]).toEqual(["a 1\n", "text/x"]);
    const n = await receive({ status: 304, body: { ignored: true } });
    expect([n.status, n.text, n.headers["content-length"]]).toEqual([304, "", undefined]);
  });

  it("fails to serialise before anything is sent", () => {
    expect(() => serialize({ status: 200, body: () => {} })).toThrow(TypeError);
    expect(() => serialize({ status: 200, body: { n: 1n } })).toThrow(TypeError);
  });

  it("writes a whole refusal for a raw socket, closing it", () => {
    const raw = rawResponse(429, { error: { code: "X" } }, { "retry-after": "2" });
    const [head = "", payload] = raw.split("\r\n\r\n");
    const lines = head.split("\r\n");
    expect(lines[0]).toBe("HTTP/1.1 429 Too Many Requests");
    expect(lines).toContain("retry-after: 2");
    expect(lines).toContain("connection: close");
    expect(lines).toContain("x-content-type-options: nosniff");
    expect(lines).toContain(`content-length: ${Buffer.byteLength(payload ?? "")}`);
    expect(JSON.parse(payload ?? "")).toEqual({ error: { code: "X" } });
  });
});
