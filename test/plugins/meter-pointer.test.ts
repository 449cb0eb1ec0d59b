import { describe, expect, it } from "vitest";
import { parsePointer, pointerProblem, resolvePointer } from "../../plugins/meter/pointer.ts";
import { MAX_METER_WATTS, toWatts } from "../../plugins/meter/watts.ts";

describe("RFC 6901 pointers (plugins/meter/pointer.ts)", () => {
  // RFC 6901 section 5's document and every pointer it lists, with the values it gives.
  const rfc = {
    foo: ["bar", "baz"],
    "": 0,
    "a/b": 1,
    "c%d": 2,
    "e^f": 3,
    "g|h": 4,
    "i\\j": 5,
    'k"l': 6,
    " ": 7,
    "m~n": 8,
  };
  it.each([
    ["", rfc],
    ["/foo", ["bar", "baz"]],
    ["/foo/0", "bar"],
    ["/", 0],
    ["/a~1b", 1],
    ["/c%d", 2],
    ["/e^f", 3],
    ["/g|h", 4],
    ["/i\\j", 5],
    ['/k"l', 6],
    ["/ ", 7],
    ["/m~0n", 8],
  ])("RFC 6901 section 5: %j", (pointer, value) => {
    expect(resolvePointer(rfc, pointer)).toEqual({ found: true, value });
  });

  it('unescapes "~1" before "~0", so "~01" is "~1" and not "/"', () => {
    expect(parsePointer("/~01")).toEqual(["~1"]);
    expect(parsePointer("/a~1b~0c/~0~1")).toEqual(["a/b~c", "~/"]);
    expect(resolvePointer({ "~1": 5, "/": 6 }, "/~01")).toEqual({ found: true, value: 5 });
  });

  it("walks into arrays by index, and nested objects in arrays", () => {
    const doc = { outlets: [{ watts: 1 }, { watts: 2 }, { watts: 3 }], emeters: [[10, 20]] };
    expect(resolvePointer(doc, "/outlets/2/watts")).toEqual({ found: true, value: 3 });
    expect(resolvePointer(doc, "/emeters/0/1")).toEqual({ found: true, value: 20 });
    expect(resolvePointer([7, 8], "/1")).toEqual({ found: true, value: 8 });
  });

  it.each([
    ["/outlets/3/watts", "/outlets/3", "index 3 past the array's 3"],
    ["/outlets/-/watts", "/outlets/-", '"-" is not an array index'],
    ["/outlets/01/watts", "/outlets/01", '"01" is not an array index'],
    ["/outlets/1e0", "/outlets/1e0", '"1e0" is not an array index'],
    ["/outlets/ 1", "/outlets/ 1", '" 1" is not an array index'],
    ["/outlets/0/volts", "/outlets/0/volts", "no such member"],
    ["/outlets/0/watts/x", "/outlets/0/watts/x", "a number has no members"],
    ["/none", "/none", "no such member"],
    ["/Outlets", "/Outlets", "no such member"],
  ])("%j is not found, stopping at %j: %s", (pointer, at, why) => {
    const doc = { outlets: [{ watts: 1 }, { watts: 2 }, { watts: 3 }] };
    expect(resolvePointer(doc, pointer)).toEqual({ found: false, at, why });
  });

  it("follows only the document's own members, never a prototype's", () => {
    expect(resolvePointer({}, "/constructor")).toMatchObject({ found: false });
    expect(resolvePointer({}, "/__proto__")).toMatchObject({ found: false });
    expect(resolvePointer({ a: [] }, "/a/length")).toMatchObject({ found: false });
    expect(resolvePointer(JSON.parse('{"__proto__":12}'), "/__proto__")).toEqual({
      found: true,
      value: 12,
    });
  });

  it("re-escapes the stopping point the way the pointer wrote it", () => {
    expect(resolvePointer({ "a/b": {} }, "/a~1b/c~0d")).toEqual({
      found: false,
      at: "/a~1b/c~0d",
      why: "no such member",
    });
  });

  it.each([
    ["apower", 'must be empty or start with "/"'],
    ["#/apower", 'must be empty or start with "/"'],
    ["/a~2b", 'has a "~" that is not "~0" or "~1"'],
    ["/a~", 'has a "~" that is not "~0" or "~1"'],
  ])("refuses %j: %s", (pointer, why) => {
    expect(pointerProblem(pointer)).toBe(why);
    expect(() => parsePointer(pointer)).toThrow(why);
  });
});

describe("the value at the pointer as watts (plugins/meter/watts.ts)", () => {
  it("takes a number and applies the scale", () => {
    expect(toWatts(1234.5, 1)).toEqual({ ok: true, watts: 1234.5 });
    expect(toWatts(1_500_000, 0.001)).toEqual({ ok: true, watts: 1500 });
    expect(toWatts(0, 1)).toEqual({ ok: true, watts: 0 });
    expect(Object.is((toWatts(-0, 1) as { watts: number }).watts, 0)).toBe(true);
  });

  it("takes a string holding exactly a JSON number, and nothing looser", () => {
    expect(toWatts("123.4", 1)).toEqual({ ok: true, watts: 123.4 });
    expect(toWatts("1e3", 2)).toEqual({ ok: true, watts: 2000 });
    for (const s of ["", " ", " 12", "12 ", "0x10", "Infinity", "NaN", "1,5", "12W", "+1", ".5"]) {
      expect(toWatts(s, 1), s).toEqual({ ok: false, why: "a string that is not a number" });
    }
  });

  it("refuses what no meter reports: negative, not finite, more than 1 MW, not a number", () => {
    expect(toWatts(-0.5, 1)).toEqual({ ok: false, why: "negative (-0.5)" });
    expect(toWatts("-3", 1)).toEqual({ ok: false, why: "negative (-3)" });
    expect(toWatts(Number.NaN, 1)).toEqual({ ok: false, why: "not a finite number" });
    expect(toWatts(Number.POSITIVE_INFINITY, 1)).toEqual({ ok: false, why: "not a finite number" });
    expect(toWatts(MAX_METER_WATTS, 1)).toEqual({ ok: true, watts: MAX_METER_WATTS });
    expect(toWatts(MAX_METER_WATTS + 1, 1)).toMatchObject({ ok: false });
    // 1400 W reported in mW but configured without a scale: 1.4 MW, a unit mistake.
    expect(toWatts(1_400_000, 1)).toEqual({
      ok: false,
      why: "1400000 W is more than any meter reports (1000000 W)",
    });
    expect(toWatts(1e308, 10)).toMatchObject({ ok: false });
    expect(toWatts(null, 1)).toEqual({ ok: false, why: "null, not a number" });
    expect(toWatts(true, 1)).toEqual({ ok: false, why: "a boolean, not a number" });
    expect(toWatts({ w: 1 }, 1)).toEqual({ ok: false, why: "an object, not a number" });
    expect(toWatts([1], 1)).toEqual({ ok: false, why: "an array, not a number" });
  });
});
