import { describe, expect, it } from "vitest";
import { AgentdError } from "../../../lib/errors.ts";
import { canonicalize } from "../../../lib/json/canonical.ts";
import { parseJsonStrict } from "../../../lib/json/strict-parse.ts";

/** RFC 8785 examples (section 3.2.2, 3.2.3 and Appendix B). */

describe("RFC 8785 canonicalization", () => {
  it("section 3.2.2 input gives the section 3.2.3 output", () => {
    const input = String.raw`{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }`;
    const expected = String.raw`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`;
    expect(canonicalize(JSON.parse(input))).toBe(expected);
    // Our strict parser refuses this very input on purpose: 1E30 is an integer beyond 2^53
    // (DOCUMENTS.md section 1). Canonicalization itself has no such limit.
    let err: unknown;
    try {
      parseJsonStrict(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AgentdError);
    expect((err as AgentdError).code).toBe("AGENTD_E_JSON_INTEGER_RANGE");
    expect((err as AgentdError).context.path).toBe("$.numbers[1]");
    // Without it, the strict parser reads the rest exactly as JSON.parse does.
    const inRange = input.replace("1E30, ", "");
    expect(canonicalize(parseJsonStrict(inRange))).toBe(expected.replace("1e+30,", ""));
  });

  it("section 3.2.3 sorts member names by UTF-16 code units", () => {
    const input = String.raw`{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }`;
    const out = canonicalize(parseJsonStrict(input));
    const order = [...out.matchAll(/":"([^"]+)"/g)].map((m) => m[1]);
    expect(order).toEqual([
      "Carriage Return",
      "One",
      "Control",
      "Latin Small Letter O With Diaeresis",
      "Euro Sign",
      "Emoji: Grinning Face",
      "Hebrew Letter Dalet With Dagesh",
    ]);
    expect(out).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\u{1f600}":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  const fromHex = (hex: string): number => {
    const view = new DataView(new ArrayBuffer(8));
    view.setBigUint64(0, BigInt(`0x${hex}`));
    return view.getFloat64(0);
  };

  it("serializes the Appendix B numbers", () => {
    const samples: [string, string][] = [
      ["0000000000000000", "0"],
      ["8000000000000000", "0"],
      ["0000000000000001", "5e-324"],
      ["8000000000000001", "-5e-324"],
      ["7fefffffffffffff", "1.7976931348623157e+308"],
      ["ffefffffffffffff", "-1.7976931348623157e+308"],
      ["4340000000000000", "9007199254740992"],
      ["c340000000000000", "-9007199254740992"],
      ["4430000000000000", "295147905179352830000"],
      ["44b52d02c7e14af5", "9.999999999999997e+22"],
      ["44b52d02c7e14af6", "1e+23"],
      ["44b52d02c7e14af7", "1.0000000000000001e+23"],
      ["444b1ae4d6e2ef4e", "999999999999999700000"],
      ["444b1ae4d6e2ef4f", "999999999999999900000"],
      ["444b1ae4d6e2ef50", "1e+21"],
      ["3eb0c6f7a0b5ed8c", "9.999999999999997e-7"],
      ["3eb0c6f7a0b5ed8d", "0.000001"],
      ["41b3de4355555553", "333333333.3333332"],
      ["41b3de4355555554", "333333333.33333325"],
      ["41b3de4355555555", "333333333.3333333"],
      ["41b3de4355555556", "333333333.3333334"],
      ["41b3de4355555557", "333333333.33333343"],
      ["becbf647612f3696", "-0.0000033333333333333333"],
      ["43143ff3c1cb0959", "1424953923781206.2"],
    ];
    for (const [hex, expected] of samples) {
      expect(canonicalize(fromHex(hex)), hex).toBe(expected);
    }
  });

  it("refuses the Appendix B NaN and Infinity rows", () => {
    for (const hex of ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"]) {
      const value = fromHex(hex);
      expect(Number.isFinite(value)).toBe(false);
      let code = "accepted";
      try {
        canonicalize({ n: value });
      } catch (err) {
        if (err instanceof AgentdError) code = err.code;
      }
      expect(code, hex).toBe("AGENTD_E_JSON_NOT_CANONICALIZABLE");
    }
  });
});
