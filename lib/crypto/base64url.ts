import { Buffer } from "node:buffer";
import { fail } from "../errors.ts";

/**
 * Base64url without padding (RFC 4648 section 5, RFC 7515 section 2), strict on input.
 *
 * Node's decoder is lenient: it skips characters outside the alphabet, accepts padding and
 * ignores the unused low bits of the last character. A verifier built on it would accept many
 * spellings of one signature, so the same signed document could circulate under several
 * byte strings (and several identities). DOCUMENTS.md section 1 therefore wants exactly one
 * spelling per byte string, which is what `decodeBase64urlStrict` enforces.
 */

const ALPHABET = /^[A-Za-z0-9_-]*$/;

export function encodeBase64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url");
}

/**
 * Decodes `s`, refusing anything but the one canonical unpadded spelling.
 * `what` names the part in errors ("signature", "header", ...).
 */
export function decodeBase64urlStrict(s: string, what: string): Buffer {
  if (typeof s !== "string") {
    throw fail("AGENTD_E_JWS_BASE64URL", `${what}: not a string`, { what });
  }
  if (!ALPHABET.test(s)) {
    const position = s.search(/[^A-Za-z0-9_-]/);
    const reason = s[position] === "=" ? "padding" : "character outside the base64url alphabet";
    throw fail("AGENTD_E_JWS_BASE64URL", `${what}: ${reason} at position ${position}`, {
      what,
      reason,
      position,
    });
  }
  // A length of 4n+1 leaves 6 bits for the last group: no byte can end there.
  if (s.length % 4 === 1) {
    throw fail("AGENTD_E_JWS_BASE64URL", `${what}: impossible length ${s.length}`, {
      what,
      reason: "length",
      length: s.length,
    });
  }
  const bytes = Buffer.from(s, "base64url");
  // With the alphabet and length checked, the only remaining freedom is in the unused low
  // bits of the last character; re-encoding sets them to zero, so a mismatch means they were
  // not zero (RFC 4648 section 3.5 allows decoders to refuse this, and we must).
  if (bytes.toString("base64url") !== s) {
    throw fail("AGENTD_E_JWS_BASE64URL", `${what}: non-canonical trailing bits`, {
      what,
      reason: "non-canonical",
    });
  }
  return bytes;
}
