/**
 * Building blocks shared by the wire schemas (docs/protocol.md). Every schema is JSON Schema
 * 2020-12, self-contained (fragments are inlined, not `$ref`ed across files, so that each
 * published `docs/schemas/<name>.json` can be used on its own), closed
 * (`additionalProperties: false` on every object) and bounded (`maxLength` on every string,
 * `maxItems` on every array).
 *
 * Patterns are exact rather than merely plausible: a base64url value of N bytes has one
 * canonical spelling, so its last character is restricted to the values whose unused low bits
 * are zero (lib/crypto/base64url.ts refuses the others; the schema agrees with it).
 */

export type JsonSchema = { readonly [key: string]: unknown };

export const SCHEMA_BASE = "https://agentd.dev/schemas/";
export const DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema";

export function schemaId(name: string): string {
  return `${SCHEMA_BASE}${name}.json`;
}

/** A closed object: every listed property, by default all of them required. */
export function closed(
  properties: Readonly<Record<string, JsonSchema | boolean>>,
  required: readonly string[] = Object.keys(properties),
  extra: JsonSchema = {},
): JsonSchema {
  for (const r of required) {
    if (!Object.hasOwn(properties, r)) throw new Error(`schema: required ${r} is not a property`);
  }
  return { type: "object", additionalProperties: false, required, properties, ...extra };
}

/**
 * `required` inside a conditional branch. The members are repeated as `true` properties
 * because Ajv's strictRequired wants every required member defined next to it (the branch
 * is compiled before the parent's `properties`); `true` adds no constraint.
 */
export function requires(...names: string[]): JsonSchema {
  return { required: names, properties: Object.fromEntries(names.map((n) => [n, true])) };
}

/**
 * JSON Schema's `if`/`then`/`else`. Built in one place because an object literal with a
 * `then` member looks like a thenable to the linter; these objects are never awaited.
 *
 * Ajv evaluates applicators such as `allOf` before the type's own keywords (`required`,
 * `properties`, `items`), so a condition must require its discriminator: otherwise an absent
 * discriminator would satisfy every `if` and the error reported would be some branch's, not
 * "missing member".
 */
export function when(condition: JsonSchema, then: JsonSchema, otherwise?: JsonSchema): JsonSchema {
  const out: Record<string, unknown> = { if: condition, then };
  if (otherwise !== undefined) out.else = otherwise;
  return out;
}

/** The condition "member `name` is present and equals `value`". */
export function is(name: string, value: unknown): JsonSchema {
  return { required: [name], properties: { [name]: { const: value } } };
}

/**
 * The condition "member `name` is present and one of `values`". Branches are keyed on the
 * values they apply to, never on "anything else", so that an invalid discriminator matches no
 * branch and is itself reported.
 */
export function isOneOf(name: string, values: readonly unknown[]): JsonSchema {
  return { required: [name], properties: { [name]: { enum: [...values] } } };
}

/** The top of a published schema. */
export function root(name: string, title: string, body: JsonSchema): JsonSchema {
  return { $schema: DRAFT_2020_12, $id: schemaId(name), title, ...body };
}

// ---- strings ------------------------------------------------------------------------------

/** Base64url of `bytes` random bytes, canonical (the last character's unused bits zero). */
export function base64urlBytes(bytes: number): JsonSchema {
  const chars = Math.ceil((bytes * 4) / 3);
  const rest = (bytes * 8) % 6; // bits used in the last character
  const last =
    rest === 0 ? "[A-Za-z0-9_-]" : rest === 2 ? "[AQgw]" : /* rest === 4 */ "[AEIMQUYcgkosw048]";
  return {
    type: "string",
    minLength: chars,
    maxLength: chars,
    pattern: `^[A-Za-z0-9_-]{${chars - 1}}${last}$`,
  };
}

/** RFC 7638 thumbprint (SHA-256, base64url): owner id, worker id, every `kid`. */
export const THUMBPRINT = base64urlBytes(32);
/** 16 random bytes: `jti`, challenge ids, enrollment-token ids, API key ids, nonces. */
export const ID16 = base64urlBytes(16);
export const SHA256_HEX: JsonSchema = {
  type: "string",
  minLength: 64,
  maxLength: 64,
  pattern: "^[0-9a-f]{64}$",
};
export const UUID: JsonSchema = {
  type: "string",
  minLength: 36,
  maxLength: 36,
  pattern: "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
};

/** Printable text for humans (labels, reasons): no control characters. */
export function text(maxLength: number, minLength = 1): JsonSchema {
  return { type: "string", minLength, maxLength, pattern: "^[^\\u0000-\\u001f\\u007f]*$" };
}

export const AGENT_VERSION: JsonSchema = {
  type: "string",
  minLength: 1,
  maxLength: 64,
  pattern: "^[0-9A-Za-z][0-9A-Za-z.+_-]*$",
};

/**
 * A consent's upstream URL, with the same bounds as policy-guard/documents.ts (which checks
 * the host more strictly): whatever a consent may list, this accepts.
 */
export const UPSTREAM_URL: JsonSchema = {
  type: "string",
  minLength: 1,
  maxLength: 256,
  pattern: "^(stratum\\+tcp|stratum\\+ssl|sv2\\+tcp)://[^\\s/?#@]+:[0-9]{1,5}$",
};
export const UPSTREAM_USER: JsonSchema = {
  type: "string",
  minLength: 1,
  maxLength: 128,
  pattern: "^[\\x21-\\x7e]+$",
};

export const ERROR_CODE: JsonSchema = {
  type: "string",
  minLength: 10,
  maxLength: 64,
  pattern: "^AGENTD_E_[A-Z0-9_]+$",
};

/** The largest JWS lib/crypto/jws.ts accepts: 1 KiB header, 64 KiB payload, 64-byte signature. */
export const JWS_MAX_CHARS = 1366 + 1 + 87382 + 1 + 86;

/** A JWS compact serialization (its form only; the signature is checked by its verifier). */
export function jws(maxLength = JWS_MAX_CHARS): JsonSchema {
  return {
    type: "string",
    minLength: 1 + 1 + 1 + 1 + 86,
    maxLength,
    pattern: "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{85}[AQgw]$",
  };
}

/** Machine documents and proofs are small: a tighter bound than a consent's. */
export const SMALL_JWS = jws(8192);

export const ROLES = ["admin", "operator", "owner", "auditor"] as const;
export type Role = (typeof ROLES)[number];

/** `agentd_<role>_` + base64url(32 random bytes); stored as sha256 only. */
export const API_KEY: JsonSchema = {
  type: "string",
  minLength: 1,
  maxLength: 64,
  pattern: `^agentd_(${ROLES.join("|")})_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$`,
};

/** `agentd_at_` + base64url(32 random bytes): a machine access token, bound to its key. */
export const ACCESS_TOKEN: JsonSchema = {
  type: "string",
  minLength: 53,
  maxLength: 53,
  pattern: "^agentd_at_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$",
};

// ---- numbers ------------------------------------------------------------------------------

/** Integer Unix seconds up to the year 9999. */
export const UNIX_TIME: JsonSchema = { type: "integer", minimum: 0, maximum: 253402300799 };
export const SAFE_COUNT: JsonSchema = { type: "integer", minimum: 0, maximum: 9007199254740991 };
export const POSITIVE: JsonSchema = { type: "integer", minimum: 1, maximum: 9007199254740991 };

/** A decimal integer as it appears in a query string. */
export const DECIMAL_QUERY: JsonSchema = {
  type: "string",
  minLength: 1,
  maxLength: 16,
  pattern: "^(0|[1-9][0-9]*)$",
};

// ---- objects ------------------------------------------------------------------------------

/** An Ed25519 public key as a JWK: exactly kty, crv, x (RFC 8037). */
export const ED25519_JWK = closed({
  kty: { const: "OKP" },
  crv: { const: "Ed25519" },
  x: base64urlBytes(32),
});

export const SERVICE_STATUSES = ["running", "stopped", "unhealthy", "absent"] as const;

/** Deep-freezes a schema so that no importer can change what every other importer validates. */
export function frozen<T>(v: T): T {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) frozen(x);
    Object.freeze(v);
  }
  return v;
}
