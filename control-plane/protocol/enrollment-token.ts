import { Buffer } from "node:buffer";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { decodeBase64urlStrict, encodeBase64url } from "../../lib/crypto/base64url.ts";
import { fail } from "../../lib/errors.ts";
import { canonicalize } from "../../lib/json/canonical.ts";
import { parseJsonObjectStrict } from "../../lib/json/strict-parse.ts";

/**
 * The enrollment token, kubeadm-style and self-describing:
 * `agentd1.` + base64url(RFC 8785 canonical JSON {url, ca_sha256, root_kid, id, secret}).
 *
 * It carries everything an agent needs to trust its first connection: where the control plane
 * is (`url`), which CA certificate it must present (`ca_sha256`), which root key must sign its
 * key set (`root_kid`), and the single-use credential (`id` to look up, `secret` to prove).
 * Parsing is strict, so that each token has exactly one spelling: the JSON must be canonical,
 * and every member has one exact form. Messages never repeat the secret.
 */

export const ENROLLMENT_TOKEN_PREFIX = "agentd1.";
/** Far above a real token (about 300 characters); bounds the work done on garbage. */
const MAX_TOKEN_CHARS = 2_048;
const MAX_URL_CHARS = 512;
const MEMBERS = ["ca_sha256", "id", "root_kid", "secret", "url"] as const;

export interface EnrollmentToken {
  /** The control plane's origin, `https://host[:port]`; the API is under `${url}/v1`. */
  readonly url: string;
  readonly ca_sha256: string;
  readonly root_kid: string;
  /** 16 random bytes, base64url: the lookup key. */
  readonly id: string;
  /** 32 random bytes, base64url: stored by the control plane only as its SHA-256. */
  readonly secret: string;
}

function invalid(message: string, member?: string): Error {
  return fail(
    "AGENTD_E_CP_TOKEN_INVALID",
    `enrollment token: ${message}`,
    member === undefined ? {} : { member },
  );
}

export function encodeEnrollmentToken(token: EnrollmentToken): string {
  const fields = checkFields(token as unknown as Record<string, unknown>);
  return `${ENROLLMENT_TOKEN_PREFIX}${encodeBase64url(Buffer.from(canonicalize(fields), "utf8"))}`;
}

export function parseEnrollmentToken(token: unknown): EnrollmentToken {
  if (typeof token !== "string") throw invalid("not a string");
  if (token.length > MAX_TOKEN_CHARS) throw invalid(`longer than ${MAX_TOKEN_CHARS} characters`);
  if (!token.startsWith(ENROLLMENT_TOKEN_PREFIX)) {
    throw invalid(`does not start with "${ENROLLMENT_TOKEN_PREFIX}"`);
  }
  let json: string;
  try {
    const bytes = decodeBase64urlStrict(token.slice(ENROLLMENT_TOKEN_PREFIX.length), "token");
    json = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw invalid("body is not strict base64url of UTF-8 text");
  }
  let obj: Record<string, unknown>;
  try {
    obj = parseJsonObjectStrict(json, { maxDepth: 2 });
  } catch {
    throw invalid("body is not a strict JSON object");
  }
  const fields = checkFields(obj);
  // One spelling per token: member order, whitespace and escapes are fixed by RFC 8785.
  if (canonicalize(fields) !== json) throw invalid("body is not canonical JSON (RFC 8785)");
  return fields;
}

function checkFields(obj: Record<string, unknown>): EnrollmentToken {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw invalid("not an object");
  }
  const members = Object.keys(obj).sort();
  if (members.join(",") !== MEMBERS.join(",")) {
    throw invalid(`members must be exactly ${MEMBERS.join(", ")}; got ${members.join(", ")}`);
  }
  const { url, ca_sha256, root_kid, id, secret } = obj;
  for (const [name, value] of Object.entries({ url, ca_sha256, root_kid, id, secret })) {
    if (typeof value !== "string") throw invalid(`${name} is not a string`, name);
  }
  checkUrl(url as string);
  if (!/^[0-9a-f]{64}$/.test(ca_sha256 as string)) {
    throw invalid("ca_sha256 is not 64 lowercase hex digits", "ca_sha256");
  }
  checkBase64urlBytes(root_kid as string, 32, "root_kid");
  checkBase64urlBytes(id as string, 16, "id");
  checkBase64urlBytes(secret as string, 32, "secret");
  return Object.freeze({
    url: url as string,
    ca_sha256: ca_sha256 as string,
    root_kid: root_kid as string,
    id: id as string,
    secret: secret as string,
  });
}

function checkUrl(url: string): void {
  if (url.length > MAX_URL_CHARS) throw invalid(`url is longer than ${MAX_URL_CHARS}`, "url");
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid("url is not a URL", "url");
  }
  if (parsed.protocol !== "https:") throw invalid("url is not https", "url");
  // Exactly the origin: no credentials, path, query or fragment, and already normalised, so
  // two tokens for one control plane cannot differ in how its address is written.
  if (parsed.origin !== url) {
    throw invalid(`url must be exactly the origin ${JSON.stringify(parsed.origin)}`, "url");
  }
}

function checkBase64urlBytes(value: string, bytes: number, name: string): void {
  let decoded: Buffer;
  try {
    decoded = decodeBase64urlStrict(value, name);
  } catch {
    throw invalid(`${name} is not strict base64url`, name);
  }
  if (decoded.length !== bytes) throw invalid(`${name} is not ${bytes} bytes`, name);
}

export function newTokenId(): string {
  return encodeBase64url(randomBytes(16));
}

export function newTokenSecret(): string {
  return encodeBase64url(randomBytes(32));
}

/** What the control plane stores for a secret: lowercase hex SHA-256 of its 32 bytes. */
export function tokenSecretSha256(secret: string): string {
  checkBase64urlBytes(secret, 32, "secret");
  return createHash("sha256").update(decodeBase64urlStrict(secret, "secret")).digest("hex");
}

/** Constant-time comparison of a presented secret with the stored hash. */
export function tokenSecretMatches(secret: string, storedSha256Hex: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(storedSha256Hex)) return false;
  let presented: string;
  try {
    presented = tokenSecretSha256(secret);
  } catch {
    return false;
  }
  return timingSafeEqual(Buffer.from(presented, "hex"), Buffer.from(storedSha256Hex, "hex"));
}
