import { describe, expect, it } from "vitest";
import { NetworkAllowlist } from "../../stratum-client/networks.ts";

describe("NetworkAllowlist", () => {
  const list = new NetworkAllowlist(["192.168.10.0/24", "127.0.0.1/32", "fd00::/8"]);

  it.each([
    ["192.168.10.7", true],
    ["192.168.11.7", false],
    ["127.0.0.1", true],
    ["127.0.0.2", false],
    ["::ffff:192.168.10.200", true],
    ["::ffff:10.0.0.1", false],
    ["fd12::1", true],
    ["fe80::1", false],
    ["", false],
    [undefined, false],
  ])("%s → %s", (addr, expected) => {
    expect(list.allows(addr)).toBe(expected);
  });

  it("allows nobody when the list is empty", () => {
    expect(new NetworkAllowlist([]).allows("127.0.0.1")).toBe(false);
  });
});
