import { describe, expect, it } from "vitest";
import { isAgentdError } from "../../../lib/errors.ts";
import {
  formatHostPort,
  isHostPort,
  isLoopbackHost,
  parseHostPort,
  tryParseHostPort,
} from "../../../lib/http/host-port.ts";

describe("host:port", () => {
  it("reads names, IPv4 and bracketed IPv6, with ports from 0 to 65535", () => {
    expect(parseHostPort("127.0.0.1:3333")).toEqual({ host: "127.0.0.1", port: 3333 });
    expect(parseHostPort("[::1]:9100")).toEqual({ host: "::1", port: 9100 });
    expect(parseHostPort("[2001:db8::ffff:192.0.2.1]:0")).toEqual({
      host: "2001:db8::ffff:192.0.2.1",
      port: 0,
    });
    expect(parseHostPort("pool.example-1.net:65535")).toEqual({
      host: "pool.example-1.net",
      port: 65535,
    });
    expect(parseHostPort("localhost:08080")).toEqual({ host: "localhost", port: 8080 });
  });

  it("refuses what is not host:port", () => {
    for (const bad of [
      "",
      "127.0.0.1",
      "127.0.0.1:",
      ":3333",
      "::1:3333", // IPv6 without brackets: where would the port start?
      "[::1]",
      "[not-v6]:80",
      "[::1]:65536",
      "host:123456",
      "host:-1",
      "host:80 ",
      " host:80",
      "-host:80",
      "host-:80",
      "ho st:80",
      "user@host:80",
      "http://host:80",
    ]) {
      expect(tryParseHostPort(bad), bad).toBeNull();
      expect(isHostPort(bad), bad).toBe(false);
    }
  });

  it("throws AGENTD_E_USAGE naming where the value came from", () => {
    let caught: unknown;
    try {
      parseHostPort("nope", "--listen");
    } catch (e) {
      caught = e;
    }
    expect(isAgentdError(caught)).toBe(true);
    if (!isAgentdError(caught)) return;
    expect(caught.code).toBe("AGENTD_E_USAGE");
    expect(caught.message).toBe('--listen: expected host:port, found "nope"');
    expect(caught.context).toEqual({ value: "nope" });
  });

  it("writes back what it reads, IPv6 in brackets", () => {
    for (const text of ["127.0.0.1:1", "[::1]:9100", "[2001:db8::1]:3333", "example.org:80"]) {
      expect(formatHostPort(parseHostPort(text))).toBe(text);
    }
  });

  it("knows the loopback names a listener may be given, and only those", () => {
    for (const h of ["127.0.0.1", "::1", "localhost"]) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ["0.0.0.0", "::", "192.168.1.2", "LOCALHOST", "127.0.0.2", "[::1]", ""]) {
      expect(isLoopbackHost(h), h).toBe(false);
    }
  });
});
