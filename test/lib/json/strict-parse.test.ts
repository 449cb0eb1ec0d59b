import { describe, expect, it } from "vitest";
import { AgentdError } from "../../../lib/errors.ts";
import { canonicalize } from "../../../lib/json/canonical.ts";
import { parseJsonObjectStrict, parseJsonStrict } from "../../../lib/json/strict-parse.ts";

function refusal(f: () => unknown): AgentdError {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) return err;
    throw err;
  }
  throw new Error("accepted");
}

const VALID = [
  "0",
  "-0",
  "1",
  "-1",
  "0.5",
  "-0.0",
  "1.0",
  "1e2",
  "1E+2",
  "1e-2",
  "2.5E-3",
  "1e-400",
  "9007199254740991",
  "-9007199254740991",
  "9007199254740991.4",
  "123.456e1",
  "true",
  "false",
  "null",
  '""',
  '"plain"',
  String.raw`"\" \\ \/ \b \f \n \r \t"`,
  String.raw`"\u0041\u00e9\u20AC\ud83d\ude00"`,
  '"é€😀"',
  '"\u007f"',
  "[]",
  "{}",
  " \t\r\n[ 1 , [ ] , { } ] \n",
  '{"a":{"b":[1,{"c":null}]},"d":"e"}',
  '{"":0}',
  '{"a":1,"A":2}',
  '{"constructor":1,"toString":2,"hasOwnProperty":3}',
];

const INVALID: [text: string, reason: string][] = [
  ["", "empty"],
  [" ", "whitespace only"],
  ["{", "unterminated object"],
  ["[1,]", "trailing comma in array"],
  ['{"a":1,}', "trailing comma in object"],
  ["[,1]", "leading comma"],
  ['{"a" 1}', "missing colon"],
  ['{"a":1 "b":2}', "missing comma"],
  ["{a:1}", "unquoted name"],
  ["{'a':1}", "single quotes"],
  ["'a'", "single-quoted string"],
  ["// c\n1", "line comment"],
  ["/* c */ 1", "block comment"],
  ["[1 /* c */]", "comment inside"],
  ["01", "leading zero"],
  ["-01", "negative leading zero"],
  ["00", "double zero"],
  ["+1", "plus sign"],
  [".5", "no integer part"],
  ["1.", "no fraction digits"],
  ["1.e3", "no fraction digits before exponent"],
  ["1e", "no exponent digits"],
  ["1e+", "no exponent digits after sign"],
  ["-", "lone minus"],
  ["- 1", "space after minus"],
  ["0x10", "hex"],
  ["NaN", "NaN"],
  ["Infinity", "Infinity"],
  ["-Infinity", "-Infinity"],
  ["tru", "truncated literal"],
  ["True", "capitalised literal"],
  ["nul", "truncated null"],
  ["undefined", "undefined"],
  ['"abc', "unterminated string"],
  ['"a\tb"', "raw tab in string"],
  ['"a\nb"', "raw newline in string"],
  ['"\u0000"', "raw NUL in string"],
  ['"\u001f"', "raw U+001F in string"],
  [String.raw`"\x41"`, "\\x escape"],
  [String.raw`"\'"`, "\\' escape"],
  [String.raw`"\u12"`, "short \\u escape"],
  [String.raw`"\u12G4"`, "bad hex digit"],
  [String.raw`"\U0041"`, "capital U escape"],
  [String.raw`"\ud800"`, "escaped lone high surrogate"],
  [String.raw`"\udc00"`, "escaped lone low surrogate"],
  [String.raw`"\ude00\ud83d"`, "escaped surrogates in the wrong order"],
  ['"\ud800"', "raw lone surrogate"],
  ['{"\ud800":1}', "raw lone surrogate in a name"],
  ["1 2", "two values"],
  ["{} x", "trailing garbage"],
  ["[1]]", "extra bracket"],
  ['{"a":1}}', "extra brace"],
  ["\ufeff{}", "byte order mark"],
  ["\u00a0{}", "non-breaking space"],
  ["\v1", "vertical tab"],
  ["[1\f]", "form feed"],
];

describe("parseJsonStrict", () => {
  it("agrees with JSON.parse on valid input", () => {
    for (const text of VALID) {
      expect(parseJsonStrict(text), text).toEqual(JSON.parse(text));
    }
    expect(Object.is(parseJsonStrict("-0"), -0)).toBe(true);
  });

  it("refuses what is not strict JSON, with AGENTD_E_JSON_INVALID and a position", () => {
    for (const [text, why] of INVALID) {
      const err = refusal(() => parseJsonStrict(text));
      expect(err.code, why).toBe("AGENTD_E_JSON_INVALID");
      expect(typeof err.context.position, why).toBe("number");
    }
  });

  it("reports where the text goes wrong", () => {
    expect(refusal(() => parseJsonStrict('{"a":[1,2,}')).context.position).toBe(10);
    expect(refusal(() => parseJsonStrict("[1] x")).context.position).toBe(4);
    expect(refusal(() => parseJsonStrict('["ok","a\u0001"]')).context.position).toBe(8);
    expect(refusal(() => parseJsonStrict("[01]")).context.position).toBe(1);
  });

  it("refuses duplicate member names, compared after unescaping, with name and path", () => {
    const cases: [string, string, string][] = [
      ['{"a":1,"a":2}', "a", "$.a"],
      ['{"a":1,"\\u0061":1}', "a", "$.a"],
      ['{"x":[0,{"k":1,"k":1}]}', "k", "$.x[1].k"],
      ['{"o":{"two words":1,"two words":2}}', "two words", '$.o["two words"]'],
      ['{"__proto__":1,"__proto__":2}', "__proto__", "$.__proto__"],
    ];
    for (const [text, member, path] of cases) {
      const err = refusal(() => parseJsonStrict(text));
      expect(err.code, text).toBe("AGENTD_E_JSON_DUPLICATE_KEY");
      expect(err.context.member, text).toBe(member);
      expect(err.context.path, text).toBe(path);
    }
    // The same name in sibling objects is not a duplicate.
    expect(parseJsonStrict('[{"a":1},{"a":2}]')).toEqual([{ a: 1 }, { a: 2 }]);
  });

  it("refuses numbers whose value is an integer outside ±(2^53 − 1)", () => {
    for (const text of [
      "9007199254740992",
      "-9007199254740992",
      "9007199254740993",
      "9007199254740991.5",
      "18446744073709551616",
      "1e16",
      "1e300",
      "-1.5e300",
      "1e400",
      "-1e400",
      `1${"0".repeat(400)}`,
      '{"seq":[1,2,{"n":1e17}]}',
    ]) {
      const err = refusal(() => parseJsonStrict(text));
      expect(err.code, text).toBe("AGENTD_E_JSON_INTEGER_RANGE");
    }
    expect(refusal(() => parseJsonStrict('{"a":[0,1e20]}')).context.path).toBe("$.a[1]");
  });

  it("limits nesting depth (default 64), arrays and objects alike", () => {
    const nested = (n: number) => "[".repeat(n) + "]".repeat(n);
    expect(parseJsonStrict(nested(64))).toBeInstanceOf(Array);
    expect(refusal(() => parseJsonStrict(nested(65))).code).toBe("AGENTD_E_JSON_INVALID");
    const objects = (n: number) => `${'{"a":'.repeat(n - 1)}{}${"}".repeat(n - 1)}`;
    expect(parseJsonStrict(objects(64))).toBeTypeOf("object");
    expect(refusal(() => parseJsonStrict(objects(65))).code).toBe("AGENTD_E_JSON_INVALID");
    expect(parseJsonStrict(nested(3), { maxDepth: 3 })).toEqual([[[]]]);
    expect(refusal(() => parseJsonStrict(nested(4), { maxDepth: 3 })).code).toBe(
      "AGENTD_E_JSON_INVALID",
    );
    // Deep input far beyond the stack is refused, not a RangeError.
    expect(refusal(() => parseJsonStrict(nested(100_000))).code).toBe("AGENTD_E_JSON_INVALID");
  });

  it("a __proto__ member is an own property and pollutes nothing", () => {
    const text = '{"__proto__":{"polluted":true},"a":{"__proto__":[1]}}';
    const value = parseJsonStrict(text) as Record<string, unknown>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.hasOwn(value, "__proto__")).toBe(true);
    expect(Object.keys(value)).toEqual(["__proto__", "a"]);
    expect((value as { polluted?: unknown }).polluted).toBeUndefined();
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
    const a = value.a as Record<string, unknown>;
    expect(Object.getPrototypeOf(a)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(a, "__proto__")?.value).toEqual([1]);
    // Same shape as JSON.parse gives, and canonicalize accepts it.
    expect(value).toEqual(JSON.parse(text));
    expect(canonicalize(value)).toBe('{"__proto__":{"polluted":true},"a":{"__proto__":[1]}}');
  });
});

describe("parseJsonObjectStrict", () => {
  it("requires a top-level object", () => {
    expect(parseJsonObjectStrict(' {"a":1} ')).toEqual({ a: 1 });
    for (const text of ["[]", "null", "1", '"{}"', "true"]) {
      expect(refusal(() => parseJsonObjectStrict(text)).code, text).toBe("AGENTD_E_JSON_INVALID");
    }
    expect(refusal(() => parseJsonObjectStrict('{"a":1,"a":1}')).code).toBe(
      "AGENTD_E_JSON_DUPLICATE_KEY",
    );
  });
});
