/**
 * RFC 6901 JSON pointers: how a meter's configuration says where its watts are in the reply
 * ("/apower", "/outlets/2/watts", "/emeters/0/power"). Pure: no I/O, no time.
 *
 * Only a parsed document's own members are followed (never a prototype's: a pointer
 * "/constructor" into `{}` finds nothing, not a function), and an array index is the strict
 * RFC 6901 form ("0", "12"; not "01", "-", "1e0", " 1").
 */

/** Why a pointer is not one (null: it is). Parsing and resolving both rely on this. */
export function pointerProblem(pointer: string): string | null {
  if (pointer === "") return null; // the whole document (a meter that replies a bare number)
  if (!pointer.startsWith("/")) return 'must be empty or start with "/"';
  // "~" may only begin "~0" (a "~") or "~1" (a "/") (RFC 6901 section 3).
  if (/~(?![01])/.test(pointer)) return 'has a "~" that is not "~0" or "~1"';
  return null;
}

/** The reference tokens, unescaped: "/a~1b/~01" → ["a/b", "~1"]. Throws on a bad pointer. */
export function parsePointer(pointer: string): string[] {
  const problem = pointerProblem(pointer);
  if (problem !== null) throw new Error(`JSON pointer ${JSON.stringify(pointer)} ${problem}`);
  if (pointer === "") return [];
  // "~1" first, then "~0": the other order would turn "~01" into "/" instead of "~1".
  return pointer
    .slice(1)
    .split("/")
    .map((t) => t.replaceAll("~1", "/").replaceAll("~0", "~"));
}

export type Resolved =
  | { readonly found: true; readonly value: unknown }
  | { readonly found: false; readonly at: string; readonly why: string };

const INDEX = /^(?:0|[1-9][0-9]*)$/;

/**
 * Follows the pointer into a parsed JSON value. Not found says where it stopped (the pointer
 * up to the token that failed) and why, for the error a person reads.
 */
export function resolvePointer(document: unknown, pointer: string): Resolved {
  const tokens = parsePointer(pointer);
  let here: unknown = document;
  let at = "";
  for (const token of tokens) {
    const next = `${at}/${token.replaceAll("~", "~0").replaceAll("/", "~1")}`;
    if (Array.isArray(here)) {
      if (!INDEX.test(token)) {
        return { found: false, at: next, why: `"${token}" is not an array index` };
      }
      const i = Number(token);
      if (i >= here.length) {
        return { found: false, at: next, why: `index ${i} past the array's ${here.length}` };
      }
      here = here[i];
    } else if (here !== null && typeof here === "object") {
      if (!Object.hasOwn(here, token)) return { found: false, at: next, why: "no such member" };
      here = (here as Record<string, unknown>)[token];
    } else {
      return { found: false, at: next, why: `${describe(here)} has no members` };
    }
    at = next;
  }
  return { found: true, value: here };
}

/** A JSON value's kind, for messages (never the value: a reply is untrusted text). */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "object":
      return "an object";
    case "string":
      return "a string";
    case "boolean":
      return "a boolean";
    case "number":
      return "a number";
    default:
      return typeof value;
  }
}
