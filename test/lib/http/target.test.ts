import { createServer, type IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import { httpServerOptions, SERVER_TIMEOUTS } from "../../../lib/http/server-limits.ts";
import { isOriginForm, MAX_TARGET_LENGTH, singleHeader } from "../../../lib/http/target.ts";

/**
 * What a request must look like before a server reads it (issue 15: `http://[` reached a URL
 * parser of the local API and came back as 500), and the limits both servers share.
 */

describe("isOriginForm", () => {
  it("takes paths with queries and well-formed percent-encoding", () => {
    for (const t of [
      "/",
      "/v1/status",
      "/v1/audit?n=5",
      "/v1/audit?n=%35&x=a/b?c",
      "/v1/a:b@c/!$&'()*+,;=-._~",
      "/v1/status?",
      "/v1//x", // empty segments are a path too (the router then finds nothing)
    ]) {
      expect([t, isOriginForm(t)]).toEqual([t, true]);
    }
  });

  it("refuses every other form and anything that does not parse", () => {
    for (const t of [
      "",
      "http://[",
      "http://127.0.0.1:9100/v1/status",
      "//",
      "//evil.example/v1/status",
      "*",
      "v1/status",
      "/v1/%zz",
      "/v1/%4",
      "/v1/status?n=%",
      "/v1/status#frag",
      "/v1/st atus",
      "/v1/\u0000",
      "/v1/ü",
      "/v1/[x]",
      `/${"a".repeat(MAX_TARGET_LENGTH)}`,
    ]) {
      expect([t, isOriginForm(t)]).toEqual([t, false]);
    }
  });

  it("answers at once on a long hostile target (no backtracking)", () => {
    const t = `/${"%41/".repeat(2000)}?${"%".repeat(100)}`;
    expect(isOriginForm(t)).toBe(false);
  });
});

describe("singleHeader", () => {
  const req = (raw: string[]) => ({ rawHeaders: raw }) as unknown as IncomingMessage;
  it("is the value of the one header of that name, whatever its case", () => {
    expect(singleHeader(req(["HOST", "a:1", "Accept", "*/*"]), "host")).toBe("a:1");
  });
  it("is null when the header is missing or repeated", () => {
    expect(singleHeader(req(["Accept", "*/*"]), "host")).toBeNull();
    expect(singleHeader(req(["Host", "a:1", "host", "a:1"]), "host")).toBeNull();
  });
});

describe("the shared server limits", () => {
  it("are the control plane's: 10 s for the headers, 30 s for the request, 5 s keep-alive", () => {
    expect(SERVER_TIMEOUTS).toMatchObject({
      headersMs: 10_000,
      requestMs: 30_000,
      keepAliveMs: 5_000,
    });
    const server = createServer(httpServerOptions());
    expect([server.headersTimeout, server.requestTimeout, server.keepAliveTimeout]).toEqual([
      10_000, 30_000, 5_000,
    ]);
    const shorter = createServer(httpServerOptions({ headersMs: 100, requestMs: 200 }));
    expect([shorter.headersTimeout, shorter.requestTimeout]).toEqual([100, 200]);
  });
});
