import { Buffer } from "node:buffer";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  boolean,
  derToPem,
  encodeLength,
  explicit,
  implicitPrimitive,
  namedBitString,
  objectIdentifier,
  pemToDer,
  readChildren,
  readSingle,
  readTlv,
  sequence,
  setOf,
  smallInteger,
  tlv,
  unsignedInteger,
  x509Time,
} from "../../../lib/crypto/der.ts";
import { AgentdError } from "../../../lib/errors.ts";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const h = (s: string): Buffer => Buffer.from(s, "hex");

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) return err.code;
    throw err;
  }
  throw new Error("accepted");
}

describe("DER lengths (X.690 8.1.3)", () => {
  it.each([
    [0, "00"],
    [1, "01"],
    [127, "7f"],
    [128, "8180"],
    [255, "81ff"],
    [256, "820100"],
    [65_535, "82ffff"],
    [65_536, "83010000"],
    [16_777_216, "8401000000"],
  ])("length %i is %s", (n, expected) => {
    expect(hex(encodeLength(n))).toBe(expected);
  });

  it("refuses lengths it cannot write", () => {
    expect(codeOf(() => encodeLength(-1))).toBe("AGENTD_E_INTERNAL");
    expect(codeOf(() => encodeLength(2 ** 32))).toBe("AGENTD_E_INTERNAL");
    expect(codeOf(() => encodeLength(1.5))).toBe("AGENTD_E_INTERNAL");
  });

  it("reads back every length it writes, with the minimal header", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 70_000 }), (n) => {
        const enc = tlv(0x04, Buffer.alloc(n, 7));
        const t = readSingle(enc);
        const header = n < 128 ? 2 : n < 256 ? 3 : n < 65_536 ? 4 : 5;
        return t.tag === 0x04 && t.content.length === n && enc.length === header + n;
      }),
    );
  });

  it.each([
    ["indefinite length", "0480"],
    ["long form below 128", "04810500000000 00"],
    ["leading zero in the long form", "0482007f"],
    ["length of length above 4", "0485"],
    ["content past the end", "040301"],
    ["truncated length", "0482"],
    ["missing length", "04"],
    ["high tag number", "1f0100"],
  ])("refuses %s", (_what, bytes) => {
    expect(codeOf(() => readTlv(h(bytes.replace(/ /g, ""))))).toBe("AGENTD_E_KEY_INVALID");
  });

  it("readSingle refuses trailing bytes; readChildren splits a SEQUENCE", () => {
    expect(codeOf(() => readSingle(h("05000500")))).toBe("AGENTD_E_KEY_INVALID");
    const seq = sequence(smallInteger(1), boolean(true), tlv(0x05));
    expect(readChildren(readSingle(seq)).map((c) => hex(c.encoded))).toEqual([
      "020101",
      "0101ff",
      "0500",
    ]);
  });
});

describe("DER values", () => {
  it("INTEGER: minimal two's complement of a non-negative magnitude", () => {
    expect(hex(unsignedInteger(h("")))).toBe("020100");
    expect(hex(unsignedInteger(h("000001")))).toBe("020101");
    expect(hex(unsignedInteger(h("80")))).toBe("02020080");
    expect(hex(unsignedInteger(h("007f")))).toBe("02017f");
    expect(hex(unsignedInteger(h("0080")))).toBe("02020080");
    expect(hex(smallInteger(0))).toBe("020100");
    expect(hex(smallInteger(2))).toBe("020102");
    expect(hex(smallInteger(256))).toBe("02020100");
  });

  it("OBJECT IDENTIFIER: the encodings RFC 5280 and RFC 5758 list", () => {
    expect(hex(objectIdentifier("1.2.840.10045.4.3.2"))).toBe("06082a8648ce3d040302");
    expect(hex(objectIdentifier("2.5.29.19"))).toBe("0603551d13");
    expect(hex(objectIdentifier("1.3.6.1.5.5.7.3.1"))).toBe("06082b06010505070301");
    expect(hex(objectIdentifier("2.999.3"))).toBe("0603883703");
    expect(codeOf(() => objectIdentifier("1.40"))).toBe("AGENTD_E_INTERNAL");
    expect(codeOf(() => objectIdentifier("1.02"))).toBe("AGENTD_E_INTERNAL");
  });

  it("named BIT STRING drops trailing zero bits (KeyUsage)", () => {
    expect(hex(namedBitString([5, 6]))).toBe("03020106"); // keyCertSign | cRLSign
    expect(hex(namedBitString([0]))).toBe("03020780"); // digitalSignature
    expect(hex(namedBitString([0, 8]))).toBe("0303078080"); // decipherOnly needs a 2nd byte
    expect(hex(namedBitString([]))).toBe("030100");
  });

  it("BOOLEAN TRUE is 0xff, context tags are constructed or primitive", () => {
    expect(hex(boolean(true))).toBe("0101ff");
    expect(hex(boolean(false))).toBe("010100");
    expect(hex(explicit(0, smallInteger(2)))).toBe("a003020102");
    expect(hex(implicitPrimitive(7, h("7f000001")))).toBe("87047f000001");
  });

  it("SET OF sorts its elements by encoding", () => {
    expect(hex(setOf(smallInteger(2), smallInteger(1)))).toBe("3106020101020102");
  });

  it("times: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5)", () => {
    const t = (iso: string): number => Date.parse(iso) / 1000;
    const ascii = (b: Buffer): string => `${b[0]?.toString(16)}:${b.subarray(2).toString("ascii")}`;
    expect(ascii(x509Time(t("2049-12-31T23:59:59Z")))).toBe("17:491231235959Z");
    expect(ascii(x509Time(t("2050-01-01T00:00:00Z")))).toBe("18:20500101000000Z");
    expect(ascii(x509Time(t("1950-01-01T00:00:00Z")))).toBe("17:500101000000Z");
    expect(ascii(x509Time(t("2026-03-04T05:06:07Z")))).toBe("17:260304050607Z");
    expect(codeOf(() => x509Time(t("1949-12-31T23:59:59Z")))).toBe("AGENTD_E_INTERNAL");
    expect(codeOf(() => x509Time(1.5))).toBe("AGENTD_E_INTERNAL");
  });
});

describe("PEM (RFC 7468)", () => {
  it("round-trips with 64-character lines", () => {
    const der = Buffer.alloc(100, 0xab);
    const pem = derToPem(der, "CERTIFICATE");
    const lines = pem.trimEnd().split("\n");
    expect(lines[0]).toBe("-----BEGIN CERTIFICATE-----");
    expect(lines.at(-1)).toBe("-----END CERTIFICATE-----");
    expect(lines.slice(1, -1).every((l) => l.length <= 64)).toBe(true);
    expect(pemToDer(pem, "CERTIFICATE").equals(der)).toBe(true);
  });

  it("refuses another label, a second block and a broken body", () => {
    const pem = derToPem(Buffer.from([1, 2, 3]), "CERTIFICATE");
    expect(codeOf(() => pemToDer(pem, "PRIVATE KEY"))).toBe("AGENTD_E_KEY_INVALID");
    expect(codeOf(() => pemToDer(pem + pem, "CERTIFICATE"))).toBe("AGENTD_E_KEY_INVALID");
    expect(codeOf(() => pemToDer(pem.replace("AQID", "AQ*D"), "CERTIFICATE"))).toBe(
      "AGENTD_E_KEY_INVALID",
    );
    expect(codeOf(() => pemToDer("no pem here", "CERTIFICATE"))).toBe("AGENTD_E_KEY_INVALID");
  });
});
