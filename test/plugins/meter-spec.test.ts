import { describe, expect, it } from "vitest";
import { parseMeterSpec, parseMeterSpecs } from "../../plugins/meter/spec.ts";

const good = {
  id: "rack-a",
  url: "http://192.168.1.50/rpc/Switch.GetStatus?id=0",
  pointer: "/apower",
  feeds: ["s19-01", "s19-02"],
};

function refusal(value: unknown): { code: string; message: string } {
  try {
    parseMeterSpec(value, "meters[0]");
  } catch (err) {
    const e = err as { code: string; message: string };
    return { code: e.code, message: e.message };
  }
  throw new Error("accepted");
}

describe("a meter from configuration (plugins/meter/spec.ts)", () => {
  it("accepts a good spec, frozen, with the scale only when given", () => {
    const spec = parseMeterSpec(good);
    expect(spec).toEqual(good);
    expect("scale" in spec).toBe(false);
    expect(Object.isFrozen(spec)).toBe(true);
    expect(Object.isFrozen(spec.feeds)).toBe(true);
    expect(parseMeterSpec({ ...good, scale: 0.001 })).toMatchObject({ scale: 0.001 });
    expect(parseMeterSpec({ ...good, url: "https://pdu.lan:8443/outlets", pointer: "" }).url).toBe(
      "https://pdu.lan:8443/outlets",
    );
  });

  it.each([
    [null, "AGENTD_E_CONFIG_TYPE", "meters[0] must be a table"],
    [[good], "AGENTD_E_CONFIG_TYPE", "meters[0] must be a table"],
    [{ ...good, extra: 1 }, "AGENTD_E_CONFIG_UNKNOWN_KEY", "meters[0].extra no meter has it"],
    [{ ...good, id: undefined }, "AGENTD_E_CONFIG_TYPE", "meters[0].id must be a string"],
    [{ ...good, id: "" }, "AGENTD_E_CONFIG_RANGE", 'meters[0].id "" is not an id'],
    [{ ...good, id: "rack a" }, "AGENTD_E_CONFIG_RANGE", 'meters[0].id "rack a" is not an id'],
    [{ ...good, url: 5 }, "AGENTD_E_CONFIG_TYPE", "meters[0].url must be a URL"],
    [{ ...good, url: "pdu.lan/outlets" }, "AGENTD_E_CONFIG_RANGE", "meters[0].url is not a URL"],
    [
      { ...good, url: "ftp://pdu.lan/outlets" },
      "AGENTD_E_CONFIG_RANGE",
      'meters[0].url scheme "ftp:" is not http: or https:',
    ],
    [
      { ...good, url: "file:///etc/passwd" },
      "AGENTD_E_CONFIG_RANGE",
      'meters[0].url scheme "file:" is not http: or https:',
    ],
    [
      { ...good, url: "http://pdu.lan/outlets#x" },
      "AGENTD_E_CONFIG_RANGE",
      "meters[0].url has a #fragment",
    ],
    [{ ...good, pointer: 3 }, "AGENTD_E_CONFIG_TYPE", "meters[0].pointer must be a JSON pointer"],
    [
      { ...good, pointer: "apower" },
      "AGENTD_E_CONFIG_RANGE",
      'meters[0].pointer "apower" must be empty or start with "/"',
    ],
    [
      { ...good, pointer: "/a~2" },
      "AGENTD_E_CONFIG_RANGE",
      'meters[0].pointer "/a~2" has a "~" that is not "~0" or "~1"',
    ],
    [{ ...good, feeds: "s19-01" }, "AGENTD_E_CONFIG_TYPE", "meters[0].feeds must be a list"],
    [{ ...good, feeds: [] }, "AGENTD_E_CONFIG_RANGE", "meters[0].feeds is empty"],
    [{ ...good, feeds: ["a", 2] }, "AGENTD_E_CONFIG_TYPE", "meters[0].feeds[1] must be a string"],
    [
      { ...good, feeds: ["a", "b", "a"] },
      "AGENTD_E_CONFIG_RANGE",
      'meters[0].feeds[2] "a" is listed twice',
    ],
    [{ ...good, scale: "0.001" }, "AGENTD_E_CONFIG_TYPE", "meters[0].scale must be a number"],
    [{ ...good, scale: 0 }, "AGENTD_E_CONFIG_RANGE", "meters[0].scale must be a finite number > 0"],
    [
      { ...good, scale: -1 },
      "AGENTD_E_CONFIG_RANGE",
      "meters[0].scale must be a finite number > 0",
    ],
    [
      { ...good, scale: Number.POSITIVE_INFINITY },
      "AGENTD_E_CONFIG_RANGE",
      "meters[0].scale must be a finite number > 0",
    ],
    [
      { ...good, scale: Number.NaN },
      "AGENTD_E_CONFIG_RANGE",
      "meters[0].scale must be a finite number > 0",
    ],
  ])("refuses %j: %s", (value, code, message) => {
    const r = refusal(value);
    expect(r.code).toBe(code);
    expect(r.message.startsWith(message)).toBe(true);
  });

  it("refuses a password in the URL without repeating it", () => {
    for (const url of ["http://admin:hunter2@10.0.0.9/status", "http://hunter2@10.0.0.9/x"]) {
      const r = refusal({ ...good, url });
      expect(r.code).toBe("AGENTD_E_CONFIG_RANGE");
      expect(r.message).toContain("credentials file");
      expect(r.message).not.toContain("hunter2");
    }
    expect(refusal({ ...good, url: "http//admin:hunter2@x" }).message).not.toContain("hunter2");
  });

  it("reads a list, and refuses two meters with one id", () => {
    expect(parseMeterSpecs([good, { ...good, id: "rack-b" }]).map((m) => m.id)).toEqual([
      "rack-a",
      "rack-b",
    ]);
    expect(() => parseMeterSpecs([good, good])).toThrow('meters[1].id "rack-a" is used twice');
    expect(() => parseMeterSpecs(good)).toThrow("meters must be a list of meters");
    expect(() => parseMeterSpecs([good, { ...good, id: "x", feeds: [] }])).toThrow(
      "meters[1].feeds is empty",
    );
  });
});
