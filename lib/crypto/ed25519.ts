import { Buffer } from "node:buffer";
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from "node:crypto";
import { fail } from "../errors.ts";
import { decodeBase64urlStrict, encodeBase64url } from "./base64url.ts";

/**
 * Ed25519 keys and signatures on node:crypto KeyObjects (DOCUMENTS.md section 2).
 *
 * Key files are PKCS#8 (private) and SPKI (public) PEM, as `openssl genpkey -algorithm
 * ed25519` writes them. Parsing is narrow on purpose: Node would happily derive a public key
 * from a private PEM, read RSA/EC keys or legacy PEM types, so every entry point checks the
 * PEM label, decodes the DER itself and asks Node for exactly one structure.
 */

export interface Ed25519KeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export interface Ed25519PublicJwk {
  readonly kty: "OKP";
  readonly crv: "Ed25519";
  readonly x: string;
}

/** DER of PKCS#8 PrivateKeyInfo{v0, id-Ed25519, OCTET STRING{OCTET STRING(32)}} before the seed. */
const PKCS8_SEED_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
/** DER of SubjectPublicKeyInfo{id-Ed25519, BIT STRING(32 bytes)} before the key. */
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export function generateEd25519KeyPair(): Ed25519KeyPair {
  return generateKeyPairSync("ed25519");
}

function assertEd25519(key: unknown, kind: "private" | "public"): asserts key is KeyObject {
  const k = key as KeyObject | null | undefined;
  if (
    k === null ||
    typeof k !== "object" ||
    typeof k.asymmetricKeyType !== "string" ||
    k.type !== kind ||
    k.asymmetricKeyType !== "ed25519"
  ) {
    throw fail("AGENTD_E_KEY_INVALID", `expected an Ed25519 ${kind} key`, {
      expected: kind,
      type: k?.type ?? null,
      algorithm: k?.asymmetricKeyType ?? null,
    });
  }
}

export function privateKeyToPem(privateKey: KeyObject): string {
  assertEd25519(privateKey, "private");
  return privateKey.export({ type: "pkcs8", format: "pem" }) as string;
}

export function publicKeyToPem(publicKey: KeyObject): string {
  assertEd25519(publicKey, "public");
  return publicKey.export({ type: "spki", format: "pem" }) as string;
}

/**
 * The DER inside a PEM file holding exactly one block with `label`. Explanatory text around
 * the block (RFC 7468 section 2) is tolerated; a second block is not, so a file cannot show a
 * reader one key and give Node another.
 */
function pemBody(pem: string | Buffer, label: string): Buffer {
  const text = typeof pem === "string" ? pem : pem.toString("latin1");
  const blocks = [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g)];
  const begins = text.match(/-----BEGIN /g)?.length ?? 0;
  const block = blocks[0];
  if (blocks.length !== 1 || begins !== 1 || block === undefined) {
    throw fail("AGENTD_E_KEY_INVALID", `expected exactly one PEM block "${label}"`, {
      expected: label,
      blocks: begins,
    });
  }
  if (block[1] !== label) {
    throw fail("AGENTD_E_KEY_INVALID", `PEM block is "${block[1]}", expected "${label}"`, {
      expected: label,
      found: block[1] ?? null,
    });
  }
  const b64 = (block[2] ?? "").replace(/[\r\n\t ]/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0 || b64.length === 0) {
    throw fail("AGENTD_E_KEY_INVALID", `PEM "${label}" body is not base64`, { expected: label });
  }
  return Buffer.from(b64, "base64");
}

export function parsePrivateKeyPem(pem: string | Buffer): KeyObject {
  const der = pemBody(pem, "PRIVATE KEY");
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  } catch (cause) {
    throw fail("AGENTD_E_KEY_INVALID", "not a PKCS#8 private key", { expected: "pkcs8" }, cause);
  }
  assertEd25519(key, "private");
  return key;
}

export function parsePublicKeyPem(pem: string | Buffer): KeyObject {
  const der = pemBody(pem, "PUBLIC KEY");
  let key: KeyObject;
  try {
    key = createPublicKey({ key: der, format: "der", type: "spki" });
  } catch (cause) {
    throw fail("AGENTD_E_KEY_INVALID", "not an SPKI public key", { expected: "spki" }, cause);
  }
  assertEd25519(key, "public");
  return key;
}

export function publicKeyOf(privateKey: KeyObject): KeyObject {
  assertEd25519(privateKey, "private");
  return createPublicKey(privateKey);
}

/** The 32-byte encoded point A of RFC 8032. */
export function rawPublicKey(publicKey: KeyObject): Buffer {
  assertEd25519(publicKey, "public");
  const der = publicKey.export({ type: "spki", format: "der" });
  if (
    der.length !== SPKI_PREFIX.length + 32 ||
    !der.subarray(0, SPKI_PREFIX.length).equals(SPKI_PREFIX)
  ) {
    throw fail("AGENTD_E_INTERNAL", "unexpected SPKI encoding of an Ed25519 key");
  }
  return Buffer.from(der.subarray(SPKI_PREFIX.length));
}

export function publicJwk(publicKey: KeyObject): Ed25519PublicJwk {
  return { kty: "OKP", crv: "Ed25519", x: encodeBase64url(rawPublicKey(publicKey)) };
}

/** Strict: exactly `kty`, `crv`, `x` (RFC 8037 section 2), no `d`, no `kid`/`use`/`alg`. */
export function publicKeyFromJwk(jwk: unknown): KeyObject {
  if (jwk === null || typeof jwk !== "object" || Array.isArray(jwk)) {
    throw fail("AGENTD_E_KEY_INVALID", "JWK is not an object");
  }
  const members = Object.keys(jwk).sort();
  if (members.join(",") !== "crv,kty,x") {
    throw fail(
      "AGENTD_E_KEY_INVALID",
      `JWK must have exactly crv, kty, x; has ${members.join(", ")}`,
      {
        members: members.join(","),
      },
    );
  }
  const { kty, crv, x } = jwk as Record<string, unknown>;
  if (kty !== "OKP" || crv !== "Ed25519" || typeof x !== "string") {
    throw fail("AGENTD_E_KEY_INVALID", 'JWK is not {"kty":"OKP","crv":"Ed25519","x":string}');
  }
  let raw: Buffer;
  try {
    raw = decodeBase64urlStrict(x, "jwk.x");
  } catch (cause) {
    throw fail("AGENTD_E_KEY_INVALID", "JWK x is not strict base64url", { member: "x" }, cause);
  }
  if (raw.length !== 32) {
    throw fail("AGENTD_E_KEY_INVALID", `JWK x is ${raw.length} bytes, expected 32`, {
      length: raw.length,
    });
  }
  try {
    return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: "der", type: "spki" });
  } catch (cause) {
    throw fail("AGENTD_E_KEY_INVALID", "JWK x is not an Ed25519 public key", {}, cause);
  }
}

/**
 * RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order with no
 * whitespace, base64url. This is the `kid`, the owner id and the worker id.
 */
// KeyObjects are immutable, so a key's thumbprint can be remembered; exporting the key to
// compute it costs more than an Ed25519 verification.
const thumbprints = new WeakMap<KeyObject, string>();

export function jwkThumbprint(publicKey: KeyObject): string {
  const known = thumbprints.get(publicKey);
  if (known !== undefined) return known;
  const x = encodeBase64url(rawPublicKey(publicKey));
  const input = `{"crv":"Ed25519","kty":"OKP","x":"${x}"}`;
  const t = encodeBase64url(createHash("sha256").update(input, "utf8").digest());
  thumbprints.set(publicKey, t);
  return t;
}

/** The private key whose RFC 8032 secret is `seed32` (for test vectors and key import). */
export function privateKeyFromSeed(seed32: Uint8Array): KeyObject {
  if (seed32.length !== 32) {
    throw fail("AGENTD_E_KEY_INVALID", `Ed25519 seed is ${seed32.length} bytes, expected 32`, {
      length: seed32.length,
    });
  }
  return createPrivateKey({
    key: Buffer.concat([PKCS8_SEED_PREFIX, seed32]),
    format: "der",
    type: "pkcs8",
  });
}

export function signEd25519(privateKey: KeyObject, data: Uint8Array): Buffer {
  assertEd25519(privateKey, "private");
  return sign(null, data, privateKey);
}

/**
 * True only for a valid 64-byte signature of `data` under `publicKey`. A signature of the
 * wrong length is simply invalid (false), not an error: it comes from the untrusted document.
 * A key of the wrong kind is a bug of the caller and throws.
 */
export function verifyEd25519(
  publicKey: KeyObject,
  data: Uint8Array,
  signature: Uint8Array,
): boolean {
  assertEd25519(publicKey, "public");
  if (signature.length !== 64) return false;
  return verify(null, data, publicKey, signature);
}

/** verifyEd25519 on libuv's thread pool: the same answers, off the event-loop thread. */
export function verifyEd25519Async(
  publicKey: KeyObject,
  data: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  assertEd25519(publicKey, "public");
  if (signature.length !== 64) return Promise.resolve(false);
  return new Promise((resolve, reject) => {
    verify(null, data, publicKey, signature, (err, ok) => {
      if (err === null) resolve(ok);
      else reject(err);
    });
  });
}
