import { describe, expect, it } from "vitest";
import { parseRate } from "../../cli/commands/cp-serve.ts";
import { DEFAULT_RATE_LIMITS, rateLimitsOf } from "../../control-plane/serve.ts";
import { AgentdError } from "../../lib/errors.ts";

describe("agentd cp serve rate limits", () => {
  it("parses RATE and RATE:BURST; 0 switches the limit off", () => {
    expect(parseRate("--rate-ip", "50")).toEqual({ ratePerSecond: 50, burst: 100 });
    expect(parseRate("--rate-ip", "0.5")).toEqual({ ratePerSecond: 0.5, burst: 1 });
    expect(parseRate("--rate-caller", "20:7")).toEqual({ ratePerSecond: 20, burst: 7 });
    expect(parseRate("--rate-caller", "0")).toBeNull();
  });

  it("refuses anything else with a usage error naming the flag", () => {
    for (const bad of ["", "-1", "fast", "10:", "10:0", "1e3", "10:2:3"]) {
      let err: unknown;
      try {
        parseRate("--rate-ip", bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(AgentdError);
      expect((err as AgentdError).code).toBe("AGENTD_E_USAGE");
      expect((err as AgentdError).message).toContain("--rate-ip");
    }
  });

  it("serves with both limits unless told otherwise; null removes one", () => {
    expect(rateLimitsOf(undefined)).toEqual(DEFAULT_RATE_LIMITS);
    expect(rateLimitsOf({ perIp: null })).toEqual({ perCaller: DEFAULT_RATE_LIMITS.perCaller });
    const tight = { ratePerSecond: 1, burst: 1 };
    expect(rateLimitsOf({ perCaller: tight, perIp: null })).toEqual({ perCaller: tight });
  });
});
