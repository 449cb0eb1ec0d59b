import { Buffer } from "node:buffer";
import { createHash, type KeyObject } from "node:crypto";
import { AgentdError, fail } from "../errors.ts";
import { canonicalize } from "../json/canonical.ts";
import { parseJsonObjectStrict, parseJsonStrict } from "../json/strict-parse.ts";
import { decodeBase64urlStrict, encodeBase64url } from "./base64url.ts";
import {
  jwkThumbprint,
  publicKeyOf,
  signEd25519,
  verifyEd25519,
  verifyEd25519Async,
} from "./ed25519.ts";

/**
 * JWS compact serialization exactly as DOCUMENTS.md section 1 fixes it: EdDSA only, the
 * protected header exactly {alg, kid, typ}, kid = RFC 7638 thumbprint of the verifying key,
 * strict base64url, payload a strict JSON object of at most 64 KiB, identity =
 * sha256_hex(signing input).
 *
 * verifyJws checks in a fixed order, cheapest and least trusting first, and verifies the
 * signature before the payload is parsed: unauthenticated bytes never reach the JSON parser.
 */

export const DEFAULT_MAX_PAYLOAD_BYTES = 65_536;
/** Room for the header in the early overall bound (a real header is about 100 bytes). */
const MAX_HEADER_BYTES = 1_024;
const SIGNATURE_B64_CHARS = 86; // 64 bytes

export interface JwsHeader {
  readonly alg: "EdDSA";
  readonly kid: string;
  readonly typ: string;
}

export interface VerifiedJws {
  readonly header: JwsHeader;
  readonly payload: Record<string, unknown>;
  /** sha256 hex of the ASCII signing input: the document's identity. */
  readonly identity: string;
  readonly signingInput: string;
}

export interface VerifyJwsOptions {
  /** The document type(s) accepted here. */
  readonly typ: string | readonly string[];
  /** The pinned key with this thumbprint, if any; only keys of the right use. */
  readonly resolveKey: (kid: string) => KeyObject | undefined;
  readonly maxPayloadBytes?: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function sha256Hex(ascii: string): string {
  return createHash("sha256").update(ascii, "ascii").digest("hex");
}

function b64len(bytes: number): number {
  return Math.ceil((bytes * 4) / 3);
}

export function signJws(args: {
  typ: string;
  payload: Record<string, unknown>;
  privateKey: KeyObject;
}): string {
  if (typeof args.typ !== "string" || args.typ.length === 0) {
    throw fail("AGENTD_E_INTERNAL", "signJws: typ must be a non-empty string");
  }
  const header: JwsHeader = {
    alg: "EdDSA",
    kid: jwkThumbprint(publicKeyOf(args.privateKey)),
    typ: args.typ,
  };
  // Canonical JSON is not required by verifiers, but it makes our documents reproducible and
  // refuses values with no JSON form (NaN, undefined, class instances).
  const payloadJson = canonicalize(args.payload);
  // Never sign what a verifier would refuse.
  const payloadBytes = Buffer.from(payloadJson, "utf8");
  if (payloadBytes.length > DEFAULT_MAX_PAYLOAD_BYTES) {
    throw fail("AGENTD_E_JWS_TOO_LARGE", `payload is ${payloadBytes.length} bytes`, {
      bytes: payloadBytes.length,
      max: DEFAULT_MAX_PAYLOAD_BYTES,
    });
  }
  parseJsonObjectStrict(payloadJson);
  const signingInput = `${encodeBase64url(Buffer.from(JSON.stringify(header), "utf8"))}.${encodeBase64url(payloadBytes)}`;
  const signature = signEd25519(args.privateKey, Buffer.from(signingInput, "ascii"));
  return `${signingInput}.${encodeBase64url(signature)}`;
}

interface JwsParts {
  readonly header: Buffer;
  readonly payload: Buffer;
  readonly signature: Buffer;
  readonly signingInput: string;
}

/** Size bound, three parts, strict base64url: the form, before anything is interpreted. */
function splitJws(token: unknown, maxPayloadBytes: number): JwsParts {
  if (typeof token !== "string") {
    throw fail("AGENTD_E_JWS_MALFORMED", "a JWS must be a string");
  }
  const maxChars = b64len(MAX_HEADER_BYTES) + 1 + b64len(maxPayloadBytes) + 1 + SIGNATURE_B64_CHARS;
  if (token.length > maxChars) {
    throw fail("AGENTD_E_JWS_TOO_LARGE", `JWS is ${token.length} characters, at most ${maxChars}`, {
      length: token.length,
      max: maxChars,
    });
  }
  const parts = token.split(".");
  if (parts.length !== 3) {
    throw fail("AGENTD_E_JWS_MALFORMED", `JWS has ${parts.length} parts, expected 3`, {
      parts: parts.length,
    });
  }
  const [h, p, s] = parts as [string, string, string];
  return {
    header: decodeBase64urlStrict(h, "header"),
    payload: decodeBase64urlStrict(p, "payload"),
    signature: decodeBase64urlStrict(s, "signature"),
    signingInput: `${h}.${p}`,
  };
}

function parseHeader(bytes: Buffer): JwsHeader {
  let obj: Record<string, unknown>;
  try {
    obj = parseJsonObjectStrict(utf8.decode(bytes));
  } catch (cause) {
    // One code for the whole header step; the parser's finer code stays in the context.
    const jsonCode = cause instanceof AgentdError ? cause.code : "not UTF-8";
    throw fail(
      "AGENTD_E_JWS_HEADER",
      `protected header is not a strict JSON object (${jsonCode})`,
      {
        cause_code: jsonCode,
      },
      cause,
    );
  }
  const members = Object.keys(obj).sort();
  if (members.join(",") !== "alg,kid,typ") {
    throw fail(
      "AGENTD_E_JWS_HEADER",
      `protected header must be exactly alg, kid, typ; has ${members.join(", ")}`,
      {
        members: members.join(","),
      },
    );
  }
  const { alg, kid, typ } = obj;
  if (typeof alg !== "string" || typeof kid !== "string" || typeof typ !== "string") {
    throw fail("AGENTD_E_JWS_HEADER", "protected header members must be strings");
  }
  if (alg !== "EdDSA") {
    throw fail("AGENTD_E_JWS_ALG", `alg ${JSON.stringify(alg)} is not EdDSA`, { alg });
  }
  return { alg, kid, typ };
}

export function verifyJws(token: string, options: VerifyJwsOptions): VerifiedJws {
  const p = checkBeforeSignature(token, options);
  if (!verifyEd25519(p.key, Buffer.from(p.parts.signingInput, "ascii"), p.parts.signature)) {
    throw badSignature(p);
  }
  return checkAfterSignature(p);
}

/**
 * verifyJws with the signature verified on libuv's thread pool, so that a server verifying
 * many documents uses more than its event-loop thread (the control plane's heartbeats).
 * The same checks in the same order, the same errors.
 */
export async function verifyJwsAsync(
  token: string,
  options: VerifyJwsOptions,
): Promise<VerifiedJws> {
  const p = checkBeforeSignature(token, options);
  const ok = await verifyEd25519Async(
    p.key,
    Buffer.from(p.parts.signingInput, "ascii"),
    p.parts.signature,
  );
  if (!ok) throw badSignature(p);
  return checkAfterSignature(p);
}

interface Checked {
  readonly parts: ReturnType<typeof splitJws>;
  readonly header: JwsHeader;
  readonly key: KeyObject;
  readonly maxPayloadBytes: number;
}

function badSignature(p: Checked) {
  return fail("AGENTD_E_JWS_SIGNATURE", "signature does not verify", {
    kid: p.header.kid,
    signature_bytes: p.parts.signature.length,
  });
}

function checkBeforeSignature(token: string, options: VerifyJwsOptions): Checked {
  const maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  if (!Number.isSafeInteger(maxPayloadBytes) || maxPayloadBytes < 0) {
    throw fail("AGENTD_E_INTERNAL", "verifyJws: maxPayloadBytes must be a non-negative integer");
  }
  const parts = splitJws(token, maxPayloadBytes);
  const header = parseHeader(parts.header);
  const allowed: readonly string[] = typeof options.typ === "string" ? [options.typ] : options.typ;
  if (!allowed.includes(header.typ)) {
    throw fail(
      "AGENTD_E_JWS_TYP",
      `typ ${JSON.stringify(header.typ)} is not ${allowed.join(" or ")}`,
      {
        typ: header.typ,
        expected: allowed.join(","),
      },
    );
  }
  const key = options.resolveKey(header.kid);
  if (key === undefined) {
    throw fail("AGENTD_E_JWS_UNKNOWN_KEY", `no key for kid ${JSON.stringify(header.kid)}`, {
      kid: header.kid,
    });
  }
  // Guards against a resolver that looks keys up loosely (prefix, case, default key).
  const thumbprint = jwkThumbprint(key);
  if (thumbprint !== header.kid) {
    throw fail(
      "AGENTD_E_JWS_KID_MISMATCH",
      `kid ${JSON.stringify(header.kid)} is not the thumbprint ${thumbprint} of the resolved key`,
      {
        kid: header.kid,
        thumbprint,
      },
    );
  }
  return { parts, header, key, maxPayloadBytes };
}

function checkAfterSignature({ parts, header, maxPayloadBytes }: Checked): VerifiedJws {
  if (parts.payload.length > maxPayloadBytes) {
    throw fail(
      "AGENTD_E_JWS_TOO_LARGE",
      `payload is ${parts.payload.length} bytes, at most ${maxPayloadBytes}`,
      {
        bytes: parts.payload.length,
        max: maxPayloadBytes,
      },
    );
  }
  const payload = parsePayload(parts.payload);
  return {
    header,
    payload,
    identity: sha256Hex(parts.signingInput),
    signingInput: parts.signingInput,
  };
}

function parsePayload(bytes: Buffer): Record<string, unknown> {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch (cause) {
    throw fail(
      "AGENTD_E_JSON_INVALID",
      "payload is not UTF-8",
      { position: 0, reason: "utf-8" },
      cause,
    );
  }
  const value = parseJsonStrict(text);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw fail("AGENTD_E_JWS_PAYLOAD", "payload is not a JSON object");
  }
  return value as Record<string, unknown>;
}

/** sha256 hex of `header.payload`, after checking the form (not the signature). */
export function documentIdentity(token: string): string {
  return sha256Hex(splitJws(token, DEFAULT_MAX_PAYLOAD_BYTES).signingInput);
}

export interface UnverifiedJws {
  readonly header: Record<string, unknown>;
  readonly payload: unknown;
}

/**
 * Header and payload WITHOUT verifying anything but the form: for diagnostics and for
 * choosing which key to ask for, never for decisions.
 */
export function decodeJwsUnverified(token: string): UnverifiedJws {
  const parts = splitJws(token, DEFAULT_MAX_PAYLOAD_BYTES);
  let header: Record<string, unknown>;
  try {
    header = parseJsonObjectStrict(utf8.decode(parts.header));
  } catch (cause) {
    throw fail("AGENTD_E_JWS_HEADER", "protected header is not a strict JSON object", {}, cause);
  }
  return { header, payload: parseJsonStrict(utf8.decode(parts.payload)) };
}

/**
 * Validity times, integer Unix seconds (DOCUMENTS.md section 1).
 *
 * - `iat` or `nbf` later than `now + skew` → AGENTD_E_JWS_NOT_YET_VALID; equal to it is
 *   still accepted. The skew absorbs a signer's clock slightly ahead of ours.
 * - `exp` is the first second at which the document is dead: `now >= exp` →
 *   AGENTD_E_JWS_EXPIRED (as RFC 7519 "on or after"). No skew applies to `exp`: DOCUMENTS.md
 *   grants tolerance to iat/nbf only, and a tolerance there would extend a consent or
 *   publication beyond what its signer wrote.
 * - A present claim that is not a safe integer → AGENTD_E_JWS_PAYLOAD.
 * Not-yet-valid is checked before expiry.
 */
export function checkValidityTimes(
  claims: { readonly iat?: number; readonly nbf?: number; readonly exp?: number },
  nowSeconds: number,
  skewSeconds = 60,
): void {
  if (!Number.isSafeInteger(nowSeconds) || !Number.isSafeInteger(skewSeconds) || skewSeconds < 0) {
    throw fail("AGENTD_E_INTERNAL", "checkValidityTimes: now and skew must be integer seconds");
  }
  for (const name of ["iat", "nbf", "exp"] as const) {
    const v = claims[name];
    if (v !== undefined && !Number.isSafeInteger(v)) {
      throw fail("AGENTD_E_JWS_PAYLOAD", `${name} is not integer Unix seconds`, { claim: name });
    }
  }
  for (const name of ["iat", "nbf"] as const) {
    const v = claims[name];
    if (v !== undefined && v > nowSeconds + skewSeconds) {
      throw fail(
        "AGENTD_E_JWS_NOT_YET_VALID",
        `${name} ${v} is later than now ${nowSeconds} + ${skewSeconds} s`,
        {
          claim: name,
          value: v,
          now: nowSeconds,
          skew_s: skewSeconds,
        },
      );
    }
  }
  if (claims.exp !== undefined && nowSeconds >= claims.exp) {
    throw fail("AGENTD_E_JWS_EXPIRED", `expired at ${claims.exp} (now ${nowSeconds})`, {
      claim: "exp",
      value: claims.exp,
      now: nowSeconds,
    });
  }
}
