import { Buffer } from "node:buffer";
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  X509Certificate,
} from "node:crypto";
import { isIP } from "node:net";
import { fail } from "../errors.ts";
import {
  bitString,
  boolean,
  derToPem,
  explicit,
  implicitPrimitive,
  namedBitString,
  objectIdentifier,
  octetString,
  pemToDer,
  readChildren,
  readSingle,
  sequence,
  setOf,
  smallInteger,
  type Tlv,
  unsignedInteger,
  utf8String,
  x509Time,
} from "./der.ts";

/**
 * X.509 v3 certificates (RFC 5280) for the control plane's private CA: a self-signed CA and
 * the leaves it issues, ECDSA P-256 with SHA-256 only. Small on purpose: one algorithm, one
 * name attribute (CN), the extensions TLS needs. Node parses and verifies; this only builds.
 */

export interface P256KeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export interface Certificate {
  readonly der: Buffer;
  readonly pem: string;
}

export type ExtendedKeyUsage = "serverAuth" | "clientAuth";

export interface CaCertificateOptions {
  readonly commonName: string;
  readonly privateKey: KeyObject;
  /** Integer Unix seconds. */
  readonly notBefore: number;
  readonly notAfter: number;
}

export interface LeafCertificateOptions {
  readonly commonName: string;
  readonly publicKey: KeyObject;
  /** The issuing CA's certificate (PEM or DER) and private key. */
  readonly issuerCertificate: string | Uint8Array;
  readonly issuerPrivateKey: KeyObject;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly extKeyUsage: readonly ExtendedKeyUsage[];
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
}

const OID = Object.freeze({
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  commonName: "2.5.4.3",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
});

/** KeyUsage bit numbers (RFC 5280 4.2.1.3). */
const KU = Object.freeze({ digitalSignature: 0, keyCertSign: 5, cRLSign: 6 });

// RFC 5758 3.2: the parameters of ecdsa-with-SHA256 MUST be absent.
const SIGNATURE_ALGORITHM = sequence(objectIdentifier(OID.ecdsaWithSha256));

export function generateP256KeyPair(): P256KeyPair {
  return generateKeyPairSync("ec", { namedCurve: "prime256v1" });
}

function assertP256(key: KeyObject, kind: "private" | "public"): void {
  if (
    key?.type !== kind ||
    key.asymmetricKeyType !== "ec" ||
    key.asymmetricKeyDetails?.namedCurve !== "prime256v1"
  ) {
    throw fail("AGENTD_E_KEY_INVALID", `expected an ECDSA P-256 ${kind} key`, {
      expected: kind,
      type: key?.type ?? null,
      algorithm: key?.asymmetricKeyType ?? null,
    });
  }
}

export function p256PrivateKeyToPem(privateKey: KeyObject): string {
  assertP256(privateKey, "private");
  return privateKey.export({ type: "pkcs8", format: "pem" }) as string;
}

export function parseP256PrivateKeyPem(pem: string | Buffer): KeyObject {
  const der = pemToDer(pem, "PRIVATE KEY");
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  } catch (cause) {
    throw fail("AGENTD_E_KEY_INVALID", "not a PKCS#8 private key", { expected: "pkcs8" }, cause);
  }
  assertP256(key, "private");
  return key;
}

/** The DER of a certificate given as PEM text or DER bytes; exactly one, nothing after it. */
export function certificateDer(input: string | Uint8Array): Buffer {
  const der =
    typeof input !== "string" && input[0] === 0x30
      ? Buffer.from(input)
      : pemToDer(typeof input === "string" ? input : Buffer.from(input), "CERTIFICATE");
  readSingle(der);
  try {
    new X509Certificate(der);
  } catch (cause) {
    throw fail("AGENTD_E_KEY_INVALID", "not an X.509 certificate", {}, cause);
  }
  return der;
}

/** A random positive 128-bit serial (RFC 5280 4.1.2.2: positive, at most 20 octets). */
export function randomSerial(): Buffer {
  for (;;) {
    const serial = randomBytes(16);
    if (serial.some((b) => b !== 0)) return serial;
  }
}

export function createCaCertificate(o: CaCertificateOptions): Certificate {
  assertP256(o.privateKey, "private");
  const spki = spkiOf(createPublicKey(o.privateKey));
  const name = nameOf(o.commonName);
  const extensions = [
    // pathLenConstraint 0: this CA issues leaves only, never another CA.
    extension(OID.basicConstraints, true, sequence(boolean(true), smallInteger(0))),
    extension(OID.keyUsage, true, namedBitString([KU.keyCertSign, KU.cRLSign])),
    extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(spki))),
  ];
  return signed(tbs(name, name, spki, o, extensions), o.privateKey);
}

export function createLeafCertificate(o: LeafCertificateOptions): Certificate {
  assertP256(o.publicKey, "public");
  assertP256(o.issuerPrivateKey, "private");
  const issuer = issuerFacts(o.issuerCertificate, o.issuerPrivateKey);
  if (o.notBefore < issuer.notBefore || o.notAfter > issuer.notAfter) {
    throw fail("AGENTD_E_INTERNAL", "leaf validity must lie within the issuer's validity");
  }
  if (o.extKeyUsage.length === 0) throw fail("AGENTD_E_INTERNAL", "leaf needs an extKeyUsage");
  const spki = spkiOf(o.publicKey);
  const names = [
    ...(o.dnsNames ?? []).map((d) => implicitPrimitive(2, Buffer.from(checkDnsName(d), "ascii"))),
    ...(o.ipAddresses ?? []).map((ip) => implicitPrimitive(7, ipAddressBytes(ip))),
  ];
  const extensions = [
    extension(OID.basicConstraints, true, sequence()),
    extension(OID.keyUsage, true, namedBitString([KU.digitalSignature])),
    extension(
      OID.extKeyUsage,
      false,
      sequence(...[...new Set(o.extKeyUsage)].map((u) => objectIdentifier(OID[u]))),
    ),
    ...(names.length === 0 ? [] : [extension(OID.subjectAltName, false, sequence(...names))]),
    extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(spki))),
    extension(
      OID.authorityKeyIdentifier,
      false,
      sequence(implicitPrimitive(0, issuer.keyIdentifier)),
    ),
  ];
  return signed(tbs(issuer.subject, nameOf(o.commonName), spki, o, extensions), o.issuerPrivateKey);
}

// --- building blocks -----------------------------------------------------------------------

function tbs(
  issuer: Buffer,
  subject: Buffer,
  spki: Buffer,
  validity: { readonly notBefore: number; readonly notAfter: number },
  extensions: readonly Buffer[],
): Buffer {
  if (!(validity.notAfter > validity.notBefore)) {
    throw fail("AGENTD_E_INTERNAL", "notAfter must be later than notBefore");
  }
  return sequence(
    explicit(0, smallInteger(2)), // v3
    unsignedInteger(randomSerial()),
    SIGNATURE_ALGORITHM,
    issuer,
    sequence(x509Time(validity.notBefore), x509Time(validity.notAfter)),
    subject,
    spki,
    explicit(3, sequence(...extensions)),
  );
}

function signed(tbsDer: Buffer, privateKey: KeyObject): Certificate {
  // node:crypto's ECDSA signature is the DER ECDSA-Sig-Value X.509 wants (RFC 5758 3.2).
  const signature = sign("sha256", tbsDer, privateKey);
  const der = sequence(tbsDer, SIGNATURE_ALGORITHM, bitString(signature));
  return { der, pem: derToPem(der, "CERTIFICATE") };
}

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  // DER omits a BOOLEAN equal to its DEFAULT (critical DEFAULT FALSE).
  return sequence(objectIdentifier(oid), ...(critical ? [boolean(true)] : []), octetString(value));
}

function nameOf(commonName: string): Buffer {
  // ub-common-name is 64 characters (RFC 5280 appendix A.1).
  if (commonName.length === 0 || commonName.length > 64) {
    throw fail("AGENTD_E_INTERNAL", "commonName must have 1 to 64 characters");
  }
  return sequence(setOf(sequence(objectIdentifier(OID.commonName), utf8String(commonName))));
}

function spkiOf(publicKey: KeyObject): Buffer {
  return publicKey.export({ type: "spki", format: "der" });
}

/**
 * RFC 7093 section 2 method 1: the leftmost 160 bits of SHA-256 of the subjectPublicKey BIT
 * STRING's value (without tag, length and unused-bits byte). Same length as RFC 5280's SHA-1
 * method, without SHA-1.
 */
function keyIdentifier(spki: Buffer): Buffer {
  const [, bits] = readChildren(readSingle(spki)) as [Tlv, Tlv];
  return createHash("sha256").update(bits.content.subarray(1)).digest().subarray(0, 20);
}

interface IssuerFacts {
  readonly subject: Buffer;
  readonly keyIdentifier: Buffer;
  readonly notBefore: number;
  readonly notAfter: number;
}

function issuerFacts(certificate: string | Uint8Array, privateKey: KeyObject): IssuerFacts {
  const der = certificateDer(certificate);
  const x509 = new X509Certificate(der);
  if (!x509.ca) throw fail("AGENTD_E_KEY_INVALID", "the issuer certificate is not a CA");
  const certSpki = spkiOf(x509.publicKey);
  if (!certSpki.equals(spkiOf(createPublicKey(privateKey)))) {
    throw fail("AGENTD_E_KEY_INVALID", "the issuer private key does not match its certificate");
  }
  const [tbsTlv] = readChildren(readSingle(der)) as [Tlv];
  const fields = readChildren(tbsTlv);
  // version [0], serial, signature, issuer, validity, subject, ...
  const subject = fields[0]?.tag === 0xa0 ? fields[5] : undefined;
  if (subject === undefined) throw fail("AGENTD_E_KEY_INVALID", "issuer is not a v3 certificate");
  return {
    subject: Buffer.from(subject.encoded),
    // Recomputed as we wrote it; the CAs this builds carry exactly this value in their SKI.
    keyIdentifier: keyIdentifier(certSpki),
    notBefore: x509.validFromDate.getTime() / 1000,
    notAfter: x509.validToDate.getTime() / 1000,
  };
}

const DNS_NAME =
  /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

function checkDnsName(name: string): string {
  if (!DNS_NAME.test(name)) {
    throw fail("AGENTD_E_USAGE", `${JSON.stringify(name)} is not a DNS host name`, { name });
  }
  return name.toLowerCase();
}

/** The 4 or 16 network-order bytes of an IP address (RFC 5280 4.2.1.6 iPAddress). */
export function ipAddressBytes(ip: string): Buffer {
  const family = isIP(ip);
  if (family === 4) return ipv4Bytes(ip);
  if (family === 6 && !ip.includes("%")) return ipv6Bytes(ip);
  throw fail("AGENTD_E_USAGE", `${JSON.stringify(ip)} is not an IP address`, { ip });
}

function ipv4Bytes(ip: string): Buffer {
  return Buffer.from(ip.split(".").map((p) => Number.parseInt(p, 10)));
}

function ipv6Bytes(ip: string): Buffer {
  let s = ip;
  const lastColon = s.lastIndexOf(":");
  const tail = s.slice(lastColon + 1);
  if (tail.includes(".")) {
    // An embedded IPv4 address (::ffff:1.2.3.4) is the last two 16-bit groups.
    const v4 = ipv4Bytes(tail);
    s = `${s.slice(0, lastColon + 1)}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const halves = s.split("::");
  const split = (h: string | undefined): string[] => (h ? h.split(":") : []);
  const head = split(halves[0]);
  const rest = split(halves[1]);
  const zeros = halves.length === 2 ? 8 - head.length - rest.length : 0;
  const groups = [...head, ...Array<string>(zeros).fill("0"), ...rest];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => {
    out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  });
  return out;
}
