import { type ErrorCode, fail } from "../errors.ts";

/**
 * A strict RFC 8259 parser for signed documents and other text that must mean the same thing
 * to every reader.
 *
 * `JSON.parse` is not used because it silently keeps the last of duplicate members and rounds
 * large integers: two implementations could then read one signed document differently. Here
 * the following are refused:
 *
 * - anything outside the RFC 8259 grammar (`AGENTD_E_JSON_INVALID`, with the UTF-16 offset):
 *   comments, trailing commas, leading zeros, `+1`, `.5`, `1.`, NaN/Infinity, single quotes,
 *   unescaped control characters (U+0000–U+001F) in strings, whitespace other than
 *   space/tab/LF/CR (a BOM included), trailing garbage after the value;
 * - lone surrogates, whether escaped (`"\ud800"`) or raw in the input string. The grammar of
 *   RFC 8259 admits escaped ones, but its section 8.2 says their behaviour is unpredictable,
 *   I-JSON (RFC 7493) forbids them, canonicalize() cannot write them and other languages
 *   replace them with U+FFFD (so two distinct member names could collapse into one);
 * - a member name that occurs twice in one object, compared after unescaping, so `"a"` and
 *   `"\u0061"` are duplicates (`AGENTD_E_JSON_DUPLICATE_KEY`, with the name and JSON path);
 * - numbers whose value is an integer outside ±(2^53 − 1) (`AGENTD_E_JSON_INTEGER_RANGE`).
 *   The test is on the IEEE double the literal rounds to: every double with magnitude ≥ 2^53
 *   is an integer, so this refuses exactly the numbers that cannot be held without loss by a
 *   JavaScript reader: `9007199254740992` (2^53, refused because 2^53 + 1 also rounds to it),
 *   `1e300`, `1.5e300`, and literals that overflow to ±Infinity (`1e400`). Non-integers below
 *   2^53 (`0.5`) and integer-valued literals in range (`1.0`, `1e2`) are accepted, as are
 *   underflows to zero (`1e-400`), which JSON.parse also gives as 0;
 * - nesting deeper than `maxDepth` (default 64; the top-level array or object is depth 1).
 *
 * Objects are built with `Object.defineProperty`, so a member named `__proto__` becomes an
 * ordinary own property (as with JSON.parse) instead of replacing the object's prototype.
 * Results are plain objects and arrays (prototype Object.prototype / Array.prototype).
 */

export interface StrictParseOptions {
  readonly maxDepth?: number;
}

export const DEFAULT_MAX_DEPTH = 64;

export function parseJsonStrict(text: string, options: StrictParseOptions = {}): unknown {
  const maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
  if (!Number.isSafeInteger(maxDepth) || maxDepth < 1) {
    throw fail(
      "AGENTD_E_INTERNAL",
      `parseJsonStrict: maxDepth ${maxDepth} is not a positive integer`,
    );
  }
  if (typeof text !== "string") {
    throw fail("AGENTD_E_JSON_INVALID", "JSON text is not a string", { position: 0 });
  }
  const parser = new Parser(text, maxDepth);
  parser.skipWhitespace();
  const value = parser.parseValue("$", 1);
  parser.skipWhitespace();
  if (parser.pos !== text.length) {
    throw parser.invalid("unexpected text after the JSON value");
  }
  return value;
}

/** As `parseJsonStrict`, and the top-level value must be an object. */
export function parseJsonObjectStrict(
  text: string,
  options: StrictParseOptions = {},
): Record<string, unknown> {
  const value = parseJsonStrict(text, options);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw fail("AGENTD_E_JSON_INVALID", "the JSON value is not an object", {
      position: 0,
      reason: "not an object",
    });
  }
  return value as Record<string, unknown>;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function memberPath(path: string, name: string): string {
  return IDENTIFIER.test(name) ? `${path}.${name}` : `${path}[${JSON.stringify(name)}]`;
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

class Parser {
  readonly text: string;
  readonly maxDepth: number;
  pos = 0;

  constructor(text: string, maxDepth: number) {
    this.text = text;
    this.maxDepth = maxDepth;
  }

  invalid(reason: string, position = this.pos, code: ErrorCode = "AGENTD_E_JSON_INVALID") {
    return fail(code, `invalid JSON at position ${position}: ${reason}`, { position, reason });
  }

  skipWhitespace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      // RFC 8259 section 2: only space, tab, LF and CR.
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return;
      this.pos++;
    }
  }

  parseValue(path: string, depth: number): unknown {
    const c = this.text[this.pos];
    switch (c) {
      case "{":
        return this.parseObject(path, depth);
      case "[":
        return this.parseArray(path, depth);
      case '"':
        return this.parseString();
      case "t":
        return this.literal("true", true);
      case "f":
        return this.literal("false", false);
      case "n":
        return this.literal("null", null);
      case undefined:
        throw this.invalid("unexpected end of text");
      default:
        if (c === "-" || (c >= "0" && c <= "9")) return this.parseNumber(path);
        throw this.invalid(`unexpected character ${JSON.stringify(c)}`);
    }
  }

  literal<T>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) throw this.invalid("unknown literal");
    this.pos += word.length;
    return value;
  }

  enter(depth: number): void {
    if (depth > this.maxDepth) {
      throw this.invalid(`nesting deeper than ${this.maxDepth}`);
    }
  }

  parseObject(path: string, depth: number): Record<string, unknown> {
    this.enter(depth);
    this.pos++; // "{"
    const obj: Record<string, unknown> = {};
    this.skipWhitespace();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return obj;
    }
    for (;;) {
      if (this.text[this.pos] !== '"') throw this.invalid("expected a member name");
      const namePos = this.pos;
      const name = this.parseString();
      const at = memberPath(path, name);
      if (Object.hasOwn(obj, name)) {
        throw fail(
          "AGENTD_E_JSON_DUPLICATE_KEY",
          `duplicate member ${JSON.stringify(name)} at ${at}`,
          {
            member: name,
            path: at,
            position: namePos,
          },
        );
      }
      this.skipWhitespace();
      if (this.text[this.pos] !== ":") throw this.invalid('expected ":"');
      this.pos++;
      this.skipWhitespace();
      const value = this.parseValue(at, depth + 1);
      // defineProperty, not assignment: `obj["__proto__"] = v` would set the prototype.
      Object.defineProperty(obj, name, {
        value,
        writable: true,
        enumerable: true,
        configurable: true,
      });
      this.skipWhitespace();
      const sep = this.text[this.pos];
      this.pos++;
      if (sep === "}") return obj;
      if (sep !== ",") throw this.invalid('expected "," or "}"', this.pos - 1);
      this.skipWhitespace();
      // A trailing comma lands here with "}" and is refused as "expected a member name".
    }
  }

  parseArray(path: string, depth: number): unknown[] {
    this.enter(depth);
    this.pos++; // "["
    const arr: unknown[] = [];
    this.skipWhitespace();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return arr;
    }
    for (;;) {
      arr.push(this.parseValue(`${path}[${arr.length}]`, depth + 1));
      this.skipWhitespace();
      const sep = this.text[this.pos];
      this.pos++;
      if (sep === "]") return arr;
      if (sep !== ",") throw this.invalid('expected "," or "]"', this.pos - 1);
      this.skipWhitespace();
      if (this.text[this.pos] === "]") throw this.invalid("trailing comma");
    }
  }

  parseString(): string {
    const t = this.text;
    const start = this.pos;
    this.pos++; // opening quote
    let out = "";
    let chunk = this.pos;
    for (;;) {
      if (this.pos >= t.length) throw this.invalid("unterminated string", start);
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) {
        out += t.slice(chunk, this.pos);
        this.pos++;
        break;
      }
      if (c < 0x20) throw this.invalid("unescaped control character in string");
      if (c !== 0x5c) {
        this.pos++;
        continue;
      }
      out += t.slice(chunk, this.pos);
      const e = t[this.pos + 1];
      if (e === "u") {
        const hex = t.slice(this.pos + 2, this.pos + 6);
        if (!/^[0-9A-Fa-f]{4}$/.test(hex)) throw this.invalid("bad \\u escape");
        out += String.fromCharCode(Number.parseInt(hex, 16));
        this.pos += 6;
      } else {
        const s = e === undefined ? undefined : SIMPLE_ESCAPES[e];
        if (s === undefined) throw this.invalid("bad escape");
        out += s;
        this.pos += 2;
      }
      chunk = this.pos;
    }
    if (!out.isWellFormed()) {
      throw this.invalid("lone surrogate in string", start);
    }
    return out;
  }

  parseNumber(path: string): number {
    const start = this.pos;
    NUMBER.lastIndex = start;
    const m = NUMBER.exec(this.text);
    if (m === null) throw this.invalid("bad number");
    const end = start + m[0].length;
    // The regex stops before a second leading digit ("01"), a lone "." or "e": whatever follows
    // a number must be a separator, so such input is refused here with the number's position.
    const next = this.text[end];
    if (next !== undefined && /[0-9.eE+-]/.test(next)) throw this.invalid("bad number", start);
    this.pos = end;
    const value = Number(m[0]);
    if (Math.abs(value) > Number.MAX_SAFE_INTEGER) {
      throw fail(
        "AGENTD_E_JSON_INTEGER_RANGE",
        `${path}: ${m[0].length > 40 ? `${m[0].slice(0, 40)}…` : m[0]} is an integer outside ±(2^53 − 1)`,
        { path, position: start },
      );
    }
    return value;
  }
}
