import { Buffer } from "node:buffer";
import { fail } from "../errors.ts";

/**
 * A small DER (ITU-T X.690) writer and a strict reader, enough for X.509 certificates
 * (RFC 5280) and their PEM armor (RFC 7468). Written from the specification so that no npm
 * package sits between the control plane and its own CA.
 *
 * Only the low-tag-number form (tag numbers 0–30) is supported: X.509 needs nothing else, and
 * refusing the rest keeps the reader's surface small.
 */

export const TAG = Object.freeze({
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
});

/** X.690 8.1.3: short form below 128, else 0x80|n followed by n big-endian bytes (minimal). */
export function encodeLength(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) {
    throw fail("AGENTD_E_INTERNAL", `DER length ${n} out of range`);
  }
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, ...content: readonly Uint8Array[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body]);
}

export const sequence = (...items: readonly Uint8Array[]): Buffer => tlv(TAG.SEQUENCE, ...items);

/** DER SET OF: elements sorted by their encodings (X.690 11.6). */
export function setOf(...items: readonly Uint8Array[]): Buffer {
  return tlv(TAG.SET, ...[...items].sort(Buffer.compare));
}

/** A non-negative INTEGER from its unsigned big-endian magnitude, minimally encoded. */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = Buffer.from(magnitude.subarray(i));
  if (m.length === 0) return tlv(TAG.INTEGER, Buffer.from([0]));
  // A set high bit would make the two's-complement value negative: prepend a zero byte.
  return tlv(TAG.INTEGER, (m[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), m]) : m);
}

export function smallInteger(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw fail("AGENTD_E_INTERNAL", `DER integer ${n} is not a non-negative safe integer`);
  }
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return unsignedInteger(Buffer.from(bytes));
}

export const boolean = (v: boolean): Buffer => tlv(TAG.BOOLEAN, Buffer.from([v ? 0xff : 0x00]));

export const octetString = (bytes: Uint8Array): Buffer => tlv(TAG.OCTET_STRING, bytes);

export function bitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  if (!Number.isInteger(unusedBits) || unusedBits < 0 || unusedBits > 7) {
    throw fail("AGENTD_E_INTERNAL", `unused bits ${unusedBits} not in 0..7`);
  }
  if (bytes.length === 0 && unusedBits !== 0) {
    throw fail("AGENTD_E_INTERNAL", "an empty BIT STRING has no unused bits");
  }
  return tlv(TAG.BIT_STRING, Buffer.from([unusedBits]), bytes);
}

/**
 * A named BIT STRING (KeyUsage): bit 0 is the most significant bit of the first byte, and DER
 * drops trailing zero bits (X.690 11.2.2), so the unused-bit count depends on the highest bit.
 */
export function namedBitString(bits: readonly number[]): Buffer {
  if (bits.length === 0) return bitString(Buffer.alloc(0));
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const b of bits) {
    if (!Number.isInteger(b) || b < 0) throw fail("AGENTD_E_INTERNAL", `bad bit number ${b}`);
    bytes[b >> 3] = (bytes[b >> 3] ?? 0) | (0x80 >> (b & 7));
  }
  return bitString(bytes, 7 - (highest & 7));
}

/** OBJECT IDENTIFIER from dotted form: first two arcs in one byte, then base-128 arcs. */
export function objectIdentifier(dotted: string): Buffer {
  if (!/^[0-2]\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/.test(dotted)) {
    throw fail("AGENTD_E_INTERNAL", `bad OID ${dotted}`);
  }
  const arcs = dotted.split(".").map((a) => BigInt(a));
  const [first, second] = arcs as [bigint, bigint];
  if (first < 2n && second > 39n) throw fail("AGENTD_E_INTERNAL", `bad OID ${dotted}`);
  const out: number[] = [];
  for (const arc of [first * 40n + second, ...arcs.slice(2)]) {
    const group: number[] = [Number(arc & 0x7fn)];
    for (let v = arc >> 7n; v > 0n; v >>= 7n) group.unshift(Number(v & 0x7fn) | 0x80);
    out.push(...group);
  }
  return tlv(TAG.OID, Buffer.from(out));
}

export function utf8String(s: string): Buffer {
  if (!s.isWellFormed()) throw fail("AGENTD_E_INTERNAL", "UTF8String holds a lone surrogate");
  return tlv(TAG.UTF8_STRING, Buffer.from(s, "utf8"));
}

export function ia5String(s: string): Buffer {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) throw fail("AGENTD_E_INTERNAL", "IA5String must be ASCII");
  }
  return tlv(TAG.IA5_STRING, Buffer.from(s, "ascii"));
}

/**
 * RFC 5280 4.1.2.5: UTCTime (YYMMDDHHMMSSZ) through 2049, GeneralizedTime (YYYYMMDDHHMMSSZ)
 * from 2050; always UTC with seconds and no fraction. Input: integer Unix seconds.
 */
export function x509Time(unixSeconds: number): Buffer {
  if (!Number.isSafeInteger(unixSeconds)) {
    throw fail("AGENTD_E_INTERNAL", `time ${unixSeconds} is not integer Unix seconds`);
  }
  const d = new Date(unixSeconds * 1000);
  const year = d.getUTCFullYear();
  if (!(year >= 1950 && year <= 9999)) {
    throw fail("AGENTD_E_INTERNAL", `year ${year} cannot be written in a certificate`);
  }
  const two = (n: number): string => String(n).padStart(2, "0");
  const rest = `${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`;
  return year < 2050
    ? tlv(TAG.UTC_TIME, Buffer.from(`${two(year % 100)}${rest}`, "ascii"))
    : tlv(TAG.GENERALIZED_TIME, Buffer.from(`${year}${rest}`, "ascii"));
}

/** [n] EXPLICIT: a constructed context-specific wrapper around a whole TLV. */
export const explicit = (n: number, ...inner: readonly Uint8Array[]): Buffer =>
  tlv(0xa0 | contextNumber(n), ...inner);

/** [n] IMPLICIT on a primitive type: the context tag replaces the type's own tag. */
export const implicitPrimitive = (n: number, content: Uint8Array): Buffer =>
  tlv(0x80 | contextNumber(n), content);

function contextNumber(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 30) throw fail("AGENTD_E_INTERNAL", `bad tag [${n}]`);
  return n;
}

// --- reading -------------------------------------------------------------------------------

export interface Tlv {
  readonly tag: number;
  /** The whole encoding (tag, length and content). */
  readonly encoded: Buffer;
  readonly content: Buffer;
}

function derError(reason: string, offset: number): Error {
  return fail("AGENTD_E_KEY_INVALID", `DER: ${reason} at offset ${offset}`, { reason, offset });
}

/** One TLV at `offset`, strictly DER: low tag numbers, definite minimal lengths, in bounds. */
export function readTlv(buf: Buffer, offset = 0): Tlv {
  const tag = buf[offset];
  if (tag === undefined) throw derError("truncated tag", offset);
  if ((tag & 0x1f) === 0x1f) throw derError("high tag numbers are not supported", offset);
  const first = buf[offset + 1];
  if (first === undefined) throw derError("truncated length", offset + 1);
  let length = first;
  let headerLength = 2;
  if (first === 0x80) throw derError("indefinite length is not DER", offset + 1);
  if (first > 0x80) {
    const n = first & 0x7f;
    if (n > 4) throw derError("length of length above 4", offset + 1);
    if (offset + 2 + n > buf.length) throw derError("truncated length", offset + 1);
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + (buf[offset + 2 + i] ?? 0);
    // DER: the shortest form only (no leading zero byte, no long form below 128).
    if (length < 0x80 || buf[offset + 2] === 0) throw derError("non-minimal length", offset + 1);
    headerLength = 2 + n;
  }
  const end = offset + headerLength + length;
  if (end > buf.length) throw derError("content runs past the end", offset);
  return {
    tag,
    encoded: buf.subarray(offset, end),
    content: buf.subarray(offset + headerLength, end),
  };
}

/** The TLV filling all of `buf` (nothing may follow it). */
export function readSingle(buf: Buffer): Tlv {
  const t = readTlv(buf, 0);
  if (t.encoded.length !== buf.length) throw derError("trailing bytes", t.encoded.length);
  return t;
}

/** The consecutive TLVs making up a constructed value's content. */
export function readChildren(parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let off = 0; off < parent.content.length; ) {
    const child = readTlv(parent.content, off);
    out.push(child);
    off += child.encoded.length;
  }
  return out;
}

// --- PEM (RFC 7468) ------------------------------------------------------------------------

export function derToPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/**
 * The DER of the one PEM block labelled `label`. A second block of any label is refused, so a
 * file cannot show a reader one object and give the program another.
 */
export function pemToDer(pem: string | Buffer, label: string): Buffer {
  const text = typeof pem === "string" ? pem : pem.toString("latin1");
  const begins = text.match(/-----BEGIN /g)?.length ?? 0;
  const m = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/.exec(text);
  if (m === null || begins !== 1) {
    throw fail("AGENTD_E_KEY_INVALID", `expected exactly one PEM block "${label}"`, {
      expected: label,
      blocks: begins,
    });
  }
  if (m[1] !== label) {
    throw fail("AGENTD_E_KEY_INVALID", `PEM block is "${m[1]}", expected "${label}"`, {
      expected: label,
      found: m[1] ?? null,
    });
  }
  const b64 = (m[2] ?? "").replace(/[\r\n\t ]/g, "");
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) {
    throw fail("AGENTD_E_KEY_INVALID", `PEM "${label}" body is not base64`, { expected: label });
  }
  return Buffer.from(b64, "base64");
}
