import { Buffer } from "node:buffer";
import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { generateEd25519KeyPair } from "../../../lib/crypto/ed25519.ts";
import {
  type Certificate,
  certificateDer,
  createCaCertificate,
  createLeafCertificate,
  generateP256KeyPair,
  ipAddressBytes,
  type LeafCertificateOptions,
  p256PrivateKeyToPem,
  parseP256PrivateKeyPem,
} from "../../../lib/crypto/x509.ts";
import { AgentdError } from "../../../lib/errors.ts";
import { useTmpDir } from "../../support/tmp.ts";

const NOW = Math.floor(Date.now() / 1000);
const DAY = 86_400;
const tmp = useTmpDir("agentd-x509-");

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) return err.code;
    throw err;
  }
  throw new Error("accepted");
}

function newCa(commonName = "test CA", notAfter = NOW + 365 * DAY) {
  const { privateKey, publicKey } = generateP256KeyPair();
  const cert = createCaCertificate({ commonName, privateKey, notBefore: NOW - DAY, notAfter });
  return { privateKey, publicKey, cert };
}

const CA = newCa();
const OTHER_CA = newCa("other CA");

function newLeaf(overrides: Partial<LeafCertificateOptions> = {}, ca = CA): Certificate {
  return createLeafCertificate({
    commonName: "cp.example",
    publicKey: generateP256KeyPair().publicKey,
    issuerCertificate: ca.cert.pem,
    issuerPrivateKey: ca.privateKey,
    notBefore: NOW - 60,
    notAfter: NOW + 30 * DAY,
    extKeyUsage: ["serverAuth"],
    dnsNames: ["cp.example", "localhost"],
    ipAddresses: ["127.0.0.1", "::1"],
    ...overrides,
  });
}

function openssl(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync("/usr/bin/openssl", args, { encoding: "utf8" });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("CA certificate", () => {
  it("parses in node:crypto as a self-signed CA", () => {
    const x = new X509Certificate(CA.cert.pem);
    expect(x.subject).toBe("CN=test CA");
    expect(x.issuer).toBe("CN=test CA");
    expect(x.ca).toBe(true);
    expect(x.checkIssued(x)).toBe(true);
    expect(x.verify(CA.publicKey)).toBe(true);
    expect(x.verify(OTHER_CA.publicKey)).toBe(false);
    expect(x.validFromDate.getTime()).toBe((NOW - DAY) * 1000);
    expect(x.publicKey.export({ type: "spki", format: "der" })).toEqual(
      CA.publicKey.export({ type: "spki", format: "der" }),
    );
    expect(x.raw.equals(CA.cert.der)).toBe(true);
  });

  it("has a random positive serial of at most 128 bits", () => {
    const serials = [CA, OTHER_CA].map((c) => new X509Certificate(c.cert.pem).serialNumber);
    expect(serials[0]).not.toBe(serials[1]);
    for (const s of serials) {
      expect(BigInt(`0x${s}`) > 0n).toBe(true);
      expect(BigInt(`0x${s}`) < 2n ** 128n).toBe(true);
    }
  });

  it("openssl shows the CA extensions, critical where RFC 5280 wants them", () => {
    const path = join(tmp(), "ca.pem");
    writeFileSync(path, CA.cert.pem);
    const text = openssl("x509", "-in", path, "-noout", "-text").stdout;
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toMatch(/Subject Key Identifier:\s+[0-9A-F:]{59}/);
    expect(text).toContain("Signature Algorithm: ecdsa-with-SHA256");
    expect(text).toContain("Version: 3 (0x2)");
  });
});

describe("leaf certificate", () => {
  it("parses in node:crypto: subject, SAN, not a CA, issued and signed by the CA", () => {
    const x = new X509Certificate(newLeaf().pem);
    const ca = new X509Certificate(CA.cert.pem);
    expect(x.subject).toBe("CN=cp.example");
    expect(x.issuer).toBe("CN=test CA");
    expect(x.subjectAltName).toBe(
      "DNS:cp.example, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1",
    );
    expect(x.ca).toBe(false);
    expect(x.checkIssued(ca)).toBe(true);
    expect(x.verify(CA.publicKey)).toBe(true);
    expect(x.verify(OTHER_CA.publicKey)).toBe(false);
    expect(x.checkIssued(new X509Certificate(OTHER_CA.cert.pem))).toBe(false);
    expect(x.checkHost("localhost")).toBe("localhost");
    expect(x.checkIP("::1")).toBe("::1");
    expect(x.checkIP("127.0.0.2")).toBeUndefined();
    expect(x.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
  });

  it("openssl verify accepts it under its CA and refuses it under another", () => {
    const d = tmp();
    const file = (name: string, pem: string): string => {
      writeFileSync(join(d, name), pem);
      return join(d, name);
    };
    const ca = file("ca.pem", CA.cert.pem);
    const other = file("other.pem", OTHER_CA.cert.pem);
    const leaf = file("leaf.pem", newLeaf().pem);
    const foreign = file("foreign.pem", newLeaf({}, OTHER_CA).pem);
    expect(openssl("verify", "-CAfile", ca, leaf).status).toBe(0);
    expect(openssl("verify", "-CAfile", ca, "-purpose", "sslserver", leaf).status).toBe(0);
    expect(openssl("verify", "-CAfile", ca, foreign).status).not.toBe(0);
    expect(openssl("verify", "-CAfile", other, leaf).status).not.toBe(0);
    // A server-only certificate is not good for a TLS client.
    expect(openssl("verify", "-CAfile", ca, "-purpose", "sslclient", leaf).status).not.toBe(0);
  });

  it("openssl shows the leaf extensions, and the AKI is the CA's SKI", () => {
    const d = tmp();
    writeFileSync(join(d, "leaf.pem"), newLeaf({ extKeyUsage: ["serverAuth", "clientAuth"] }).pem);
    writeFileSync(join(d, "ca.pem"), CA.cert.pem);
    const text = openssl("x509", "-in", join(d, "leaf.pem"), "-noout", "-text").stdout;
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    expect(text).toMatch(
      /Extended Key Usage:\s*\n\s+TLS Web Server Authentication, TLS Web Client Authentication/,
    );
    expect(text).toMatch(
      /Subject Alternative Name:\s*\n\s+DNS:cp.example, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1/,
    );
    const caText = openssl("x509", "-in", join(d, "ca.pem"), "-noout", "-text").stdout;
    const ski = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(caText)?.[1];
    const aki = /Authority Key Identifier:\s+(?:keyid:)?([0-9A-F:]+)/.exec(text)?.[1];
    expect(ski).toMatch(/^[0-9A-F:]{59}$/);
    expect(aki).toBe(ski);
    expect(/Subject Key Identifier:\s+([0-9A-F:]+)/.exec(text)?.[1]).not.toBe(ski);
  });

  it("writes GeneralizedTime from 2050 and UTCTime before", () => {
    const ca = newCa("long CA", Date.parse("2070-01-01T00:00:00Z") / 1000);
    const leaf = newLeaf({ notAfter: Date.parse("2060-06-01T12:00:00Z") / 1000 }, ca);
    const x = new X509Certificate(leaf.pem);
    expect(x.validToDate.toISOString()).toBe("2060-06-01T12:00:00.000Z");
    const d = tmp();
    writeFileSync(join(d, "leaf.pem"), leaf.pem);
    const asn1 = openssl("asn1parse", "-in", join(d, "leaf.pem")).stdout;
    expect(asn1).toMatch(/UTCTIME\s+:\d{12}Z/);
    expect(asn1).toMatch(/GENERALIZEDTIME\s+:20600601120000Z/);
  });

  it("refuses what would make a bad certificate", () => {
    const ed = generateEd25519KeyPair();
    expect(codeOf(() => newLeaf({ publicKey: ed.publicKey }))).toBe("AGENTD_E_KEY_INVALID");
    expect(codeOf(() => newLeaf({ issuerPrivateKey: OTHER_CA.privateKey }))).toBe(
      "AGENTD_E_KEY_INVALID",
    );
    const leaf = newLeaf();
    expect(codeOf(() => newLeaf({ issuerCertificate: leaf.pem }))).toBe("AGENTD_E_KEY_INVALID");
    expect(codeOf(() => newLeaf({ notAfter: NOW + 400 * DAY }))).toBe("AGENTD_E_INTERNAL");
    expect(codeOf(() => newLeaf({ notAfter: NOW - 120 }))).toBe("AGENTD_E_INTERNAL");
    expect(codeOf(() => newLeaf({ extKeyUsage: [] }))).toBe("AGENTD_E_INTERNAL");
    expect(codeOf(() => newLeaf({ commonName: "x".repeat(65) }))).toBe("AGENTD_E_INTERNAL");
    expect(codeOf(() => newLeaf({ dnsNames: ["bad_name.example"] }))).toBe("AGENTD_E_USAGE");
    expect(codeOf(() => newLeaf({ dnsNames: ["-a.example"] }))).toBe("AGENTD_E_USAGE");
    expect(codeOf(() => newLeaf({ ipAddresses: ["300.1.1.1"] }))).toBe("AGENTD_E_USAGE");
    expect(codeOf(() => newLeaf({ ipAddresses: ["fe80::1%eth0"] }))).toBe("AGENTD_E_USAGE");
    expect(
      codeOf(() =>
        createCaCertificate({
          commonName: "x",
          privateKey: ed.privateKey,
          notBefore: NOW,
          notAfter: NOW + 1,
        }),
      ),
    ).toBe("AGENTD_E_KEY_INVALID");
  });
});

describe("IP addresses in the SAN", () => {
  it.each([
    ["127.0.0.1", "7f000001"],
    ["0.0.0.0", "00000000"],
    ["::1", "00000000000000000000000000000001"],
    ["::", "00000000000000000000000000000000"],
    ["2001:db8::8:800:200c:417a", "20010db8000000000008080020 0c417a".replace(" ", "")],
    ["fe80::", "fe800000000000000000000000000000"],
    ["::ffff:10.0.0.1", "00000000000000000000ffff0a000001"],
    ["1:2:3:4:5:6:7:8", "00010002000300040005000600070008"],
  ])("%s", (ip, expected) => {
    expect(ipAddressBytes(ip).toString("hex")).toBe(expected);
  });

  it("agrees with node's reading of the certificate", () => {
    const x = new X509Certificate(newLeaf({ ipAddresses: ["2001:db8::1", "::ffff:1.2.3.4"] }).pem);
    expect(x.checkIP("2001:db8::1")).toBe("2001:db8::1");
    expect(x.checkIP("2001:db8::2")).toBeUndefined();
  });
});

describe("key and certificate files", () => {
  it("P-256 private keys round-trip through PEM; other keys are refused", () => {
    const { privateKey } = generateP256KeyPair();
    const back = parseP256PrivateKeyPem(p256PrivateKeyToPem(privateKey));
    expect(back.export({ type: "pkcs8", format: "der" })).toEqual(
      privateKey.export({ type: "pkcs8", format: "der" }),
    );
    const ed = generateEd25519KeyPair().privateKey.export({ type: "pkcs8", format: "pem" });
    expect(codeOf(() => parseP256PrivateKeyPem(ed))).toBe("AGENTD_E_KEY_INVALID");
    expect(codeOf(() => p256PrivateKeyToPem(generateEd25519KeyPair().privateKey))).toBe(
      "AGENTD_E_KEY_INVALID",
    );
  });

  it("certificateDer takes PEM or DER, exactly one certificate", () => {
    expect(certificateDer(CA.cert.pem).equals(CA.cert.der)).toBe(true);
    expect(certificateDer(CA.cert.der).equals(CA.cert.der)).toBe(true);
    expect(codeOf(() => certificateDer(CA.cert.pem + OTHER_CA.cert.pem))).toBe(
      "AGENTD_E_KEY_INVALID",
    );
    expect(codeOf(() => certificateDer(Buffer.concat([CA.cert.der, Buffer.from([0])])))).toBe(
      "AGENTD_E_KEY_INVALID",
    );
    expect(codeOf(() => certificateDer(Buffer.from("3003020101", "hex")))).toBe(
      "AGENTD_E_KEY_INVALID",
    );
  });
});
