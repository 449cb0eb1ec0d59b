/**
 * Secrets never reach a log line. pino's own `redact` option needs every path spelled out in
 * advance; agentd logs objects from many places (HTTP requests, service specs, config), so
 * instead every logged object is walked and members are replaced by name (private keys,
 * tokens, passwords, macaroons, cookies, API keys, seeds) and by value (PEM private keys).
 */

export const REDACTED = "[REDACTED]";

// Names are normalised to snake_case first, so `privateKey`, `private-key` and
// `PRIVATE_KEY` are one name. `key` alone and `*_key` count; `*_key_file` (a path) does not.
const SECRET_NAME =
  /^(?:.*_)?(?:key|password|passwd|pass|passphrase|secret|token|macaroon|cookie|authorization|apikey|seed|mnemonic|credentials?)$/;

const PEM_PRIVATE = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

export function isSecretName(name: string): boolean {
  const snake = name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/[-\s.]/g, "_")
    .toLowerCase();
  return SECRET_NAME.test(snake);
}

/** A copy of `value` with secrets replaced; cycles and depth are bounded. */
export function redact(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === "string") return PEM_PRIVATE.test(value) ? REDACTED : value;
  if (typeof value !== "object" || value === null) return value;
  if (seen.has(value)) return "[Circular]";
  if (depth >= 10) return "[Deep]";
  seen.add(value);
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1, seen));
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return `[${value.byteLength} bytes]`;
  const out: Record<string, unknown> = {};
  const source =
    value instanceof Error
      ? { ...value, type: value.name, message: value.message, stack: value.stack }
      : value;
  for (const [k, v] of Object.entries(source)) {
    out[k] =
      isSecretName(k) && v !== "" && v !== null && v !== undefined
        ? REDACTED
        : redact(v, depth + 1, seen);
  }
  return out;
}
