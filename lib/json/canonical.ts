import { createHash } from "node:crypto";
import { fail } from "../errors.ts";

/**
 * RFC 8785 (JSON Canonicalization Scheme). Hash-chained logs and document hashes are taken
 * over this form so that any two implementations agree byte for byte.
 *
 * ECMAScript's own number and string serialisation is what RFC 8785 specifies, so
 * `JSON.stringify` is used for primitives; what it would silently accept but RFC 8785
 * forbids (NaN, ±Infinity, lone surrogates, non-plain objects, undefined members) is refused.
 */
export function canonicalize(value: unknown): string {
  return write(value, "$");
}

export function canonicalSha256Hex(value: unknown): string {
  return createHash("sha256").update(canonicalize(value), "utf8").digest("hex");
}

function write(value: unknown, path: string): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) {
        throw fail("AGENTD_E_JSON_NOT_CANONICALIZABLE", `${path}: ${value} has no JSON form`, {
          path,
        });
      }
      return JSON.stringify(value);
    case "string":
      return writeString(value, path);
    case "object": {
      if (Array.isArray(value)) {
        return `[${value.map((v, i) => write(v, `${path}[${i}]`)).join(",")}]`;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw fail("AGENTD_E_JSON_NOT_CANONICALIZABLE", `${path}: not a plain object`, { path });
      }
      const rec = value as Record<string, unknown>;
      // RFC 8785 3.2.3: members sorted by their names as arrays of UTF-16 code units,
      // which is exactly JavaScript's default string comparison.
      const keys = Object.keys(rec).sort();
      const parts: string[] = [];
      for (const k of keys) {
        const v = rec[k];
        if (v === undefined) {
          throw fail("AGENTD_E_JSON_NOT_CANONICALIZABLE", `${path}.${k}: undefined`, { path });
        }
        parts.push(`${writeString(k, path)}:${write(v, `${path}.${k}`)}`);
      }
      return `{${parts.join(",")}}`;
    }
    default:
      throw fail(
        "AGENTD_E_JSON_NOT_CANONICALIZABLE",
        `${path}: a ${typeof value} has no JSON form`,
        {
          path,
        },
      );
  }
}

function writeString(s: string, path: string): string {
  if (!s.isWellFormed()) {
    throw fail("AGENTD_E_JSON_NOT_CANONICALIZABLE", `${path}: string holds a lone surrogate`, {
      path,
    });
  }
  return JSON.stringify(s);
}
