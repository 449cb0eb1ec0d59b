import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import { fail } from "../../lib/errors.ts";
import { SCHEMAS, type SchemaName, type SchemaTypes } from "./schemas/index.ts";

/**
 * Validation of every body and signed payload against its wire schema (docs/protocol.md).
 *
 * One Ajv instance in strict mode (a schema with an unknown keyword, a union type it cannot
 * check or a `required` member it does not define fails to compile, so a typo in a schema is
 * a bug found at once, not a check silently skipped). `allErrors: false`: the first mismatch
 * is enough to refuse, and stopping there bounds the work an attacker can cause.
 *
 * Messages are built here from the keyword and the schema's parameters only: they name where
 * the value is wrong and what was expected, never the value itself, so a secret sent in the
 * wrong field (an API key pasted as a label) cannot reach a log through an error.
 */

let ajv: Ajv2020 | undefined;
const validators = new Map<SchemaName, ValidateFunction>();

function compiler(): Ajv2020 {
  ajv ??= new Ajv2020({
    strict: true,
    allErrors: false,
    // `["integer", "null"]` is the plainest way to say "nullable"; strict mode still checks
    // that every keyword applies to one of the listed types.
    allowUnionTypes: true,
    // Error objects must not carry the data (verbose), and messages are our own.
    verbose: false,
    messages: false,
  });
  return ajv;
}

/**
 * Each schema is compiled on its first use: an agent uses about ten of the wire's schemas,
 * and compiling all of them cost it 115–140 ms of its start (bench/agent.ts). The control
 * plane compiles all at start (compileSchemas), so a broken schema still stops it early, and
 * the schema tests compile every one.
 */
function validatorFor(name: SchemaName): ValidateFunction {
  let v = validators.get(name);
  if (v !== undefined) return v;
  if (!Object.hasOwn(SCHEMAS, name)) {
    throw fail("AGENTD_E_INTERNAL", `no schema named ${JSON.stringify(name)}`);
  }
  v = compiler().compile(SCHEMAS[name] as object);
  validators.set(name, v);
  return v;
}

/** Compiles every schema now (at start-up, so a broken schema stops the process early). */
export function compileSchemas(): void {
  for (const name of Object.keys(SCHEMAS) as SchemaName[]) validatorFor(name);
}

/**
 * `value` as the type of schema `name`, or AGENTD_E_SCHEMA with context
 * `{schema, pointer, keyword}` for the first mismatch (`pointer` is an RFC 6901 JSON pointer
 * to the offending member; for a missing or unknown member, to that member).
 */
export function validate<N extends SchemaName>(name: N, value: unknown): SchemaTypes[N] {
  const v = validatorFor(name);
  if (v(value)) return value as SchemaTypes[N];
  const first = v.errors?.[0];
  if (first === undefined) {
    throw fail("AGENTD_E_SCHEMA", `${name}: does not match its schema`, {
      schema: name,
      pointer: "",
      keyword: "unknown",
    });
  }
  const { pointer, problem } = describe(first);
  throw fail("AGENTD_E_SCHEMA", `${name}: ${pointer === "" ? "(root)" : pointer}: ${problem}`, {
    schema: name,
    pointer,
    keyword: first.keyword,
  });
}

/** True when `value` matches schema `name` (no error built). */
export function matches(name: SchemaName, value: unknown): boolean {
  return validatorFor(name)(value) === true;
}

// ---- messages -----------------------------------------------------------------------------

const MAX_NAME_CHARS = 64;

/** A member name from the data, as a pointer token: escaped (RFC 6901) and bounded. */
function token(name: unknown): string {
  let s = typeof name === "string" ? name : String(name);
  if (s.length > MAX_NAME_CHARS) s = `${s.slice(0, MAX_NAME_CHARS)}…`;
  // Control characters would let a member name forge log lines.
  s = Array.from(s, (c) => (c.charCodeAt(0) < 0x20 || c === "\u007f" ? "?" : c)).join("");
  return s.replace(/~/g, "~0").replace(/\//g, "~1");
}

function shorten(s: string, max = 120): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

function describe(e: ErrorObject): { pointer: string; problem: string } {
  const p = e.params as Record<string, unknown>;
  const at = e.instancePath;
  if (e.propertyName !== undefined) {
    return { pointer: `${at}/${token(e.propertyName)}`, problem: "member name not allowed" };
  }
  switch (e.keyword) {
    case "required":
      return { pointer: `${at}/${token(p.missingProperty)}`, problem: "missing required member" };
    case "additionalProperties":
      return { pointer: `${at}/${token(p.additionalProperty)}`, problem: "unknown member" };
    case "false schema":
      return { pointer: at, problem: "member not allowed here" };
    case "type":
      return { pointer: at, problem: `must be of type ${String(p.type).replace(",", " or ")}` };
    case "const":
      return { pointer: at, problem: `must be ${shorten(JSON.stringify(p.allowedValue))}` };
    case "enum":
      return {
        pointer: at,
        problem: `must be one of ${shorten((p.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(", "), 300)}`,
      };
    case "maxLength":
      return { pointer: at, problem: `must be at most ${p.limit} characters` };
    case "minLength":
      return { pointer: at, problem: `must be at least ${p.limit} characters` };
    case "pattern":
      return { pointer: at, problem: `must match ${shorten(String(p.pattern))}` };
    case "maximum":
      return { pointer: at, problem: `must be at most ${p.limit}` };
    case "minimum":
      return { pointer: at, problem: `must be at least ${p.limit}` };
    case "maxItems":
      return { pointer: at, problem: `must have at most ${p.limit} items` };
    case "minItems":
      return { pointer: at, problem: `must have at least ${p.limit} items` };
    case "uniqueItems":
      return { pointer: at, problem: `items ${p.j} and ${p.i} must not be equal` };
    case "maxProperties":
      return { pointer: at, problem: `must have at most ${p.limit} members` };
    case "contains":
      return { pointer: at, problem: "must contain an item of the required kind" };
    default:
      return { pointer: at, problem: `fails ${e.keyword}` };
  }
}
