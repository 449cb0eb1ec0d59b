import { type KeyObject, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import {
  type Certificate,
  createCaCertificate,
  createLeafCertificate,
  generateP256KeyPair,
} from "../../lib/crypto/x509.ts";
import { fail } from "../../lib/errors.ts";
import {
  FILES,
  readP256PrivateKey,
  readPublicText,
  writeP256PrivateKey,
  writePublic,
} from "./files.ts";

/**
 * The control plane's TLS material: its own CA (ECDSA P-256, self-signed) and the server
 * certificate it issues for the listen host names and addresses.
 */

export const DEFAULT_HOSTS: readonly string[] = Object.freeze(["127.0.0.1", "::1", "localhost"]);
export const CA_VALIDITY_S = 10 * 365 * 86_400;
export const SERVER_VALIDITY_S = 2 * 365 * 86_400;
/** Certificates start an hour early, so a client whose clock is a little behind accepts them. */
const BACKDATE_S = 3_600;

export interface IssuedCertificate {
  readonly privateKey: KeyObject;
  readonly certificate: Certificate;
}

/** Host names and IP addresses for the subjectAltName; `[::1]` is taken as `::1`. */
export function splitHosts(hosts: readonly string[]): {
  dnsNames: string[];
  ipAddresses: string[];
} {
  if (hosts.length === 0) throw fail("AGENTD_E_USAGE", "at least one host is needed");
  const dnsNames = new Set<string>();
  const ipAddresses = new Set<string>();
  for (const raw of hosts) {
    const h = raw.startsWith("[") && raw.endsWith("]") ? raw.slice(1, -1) : raw;
    if (isIP(h) !== 0) ipAddresses.add(h);
    else dnsNames.add(h.toLowerCase());
  }
  return { dnsNames: [...dnsNames], ipAddresses: [...ipAddresses] };
}

export function issueCa(now: number): IssuedCertificate {
  const { privateKey } = generateP256KeyPair();
  const certificate = createCaCertificate({
    commonName: "agentd control plane CA",
    privateKey,
    notBefore: now - BACKDATE_S,
    notAfter: now + CA_VALIDITY_S,
  });
  return { privateKey, certificate };
}

export function issueServerCertificate(args: {
  readonly caCertificate: string;
  readonly caPrivateKey: KeyObject;
  readonly hosts: readonly string[];
  readonly now: number;
}): IssuedCertificate {
  const { dnsNames, ipAddresses } = splitHosts(args.hosts);
  const { privateKey, publicKey } = generateP256KeyPair();
  const ca = new X509Certificate(args.caCertificate);
  const caNotBefore = ca.validFromDate.getTime() / 1000;
  const caNotAfter = ca.validToDate.getTime() / 1000;
  const commonName = (dnsNames[0] ?? ipAddresses[0] ?? "agentd control plane").slice(0, 64);
  const certificate = createLeafCertificate({
    commonName,
    publicKey,
    issuerCertificate: args.caCertificate,
    issuerPrivateKey: args.caPrivateKey,
    notBefore: Math.max(args.now - BACKDATE_S, caNotBefore),
    // Never beyond the CA: past it, no client would accept the chain anyway.
    notAfter: Math.min(args.now + SERVER_VALIDITY_S, caNotAfter),
    extKeyUsage: ["serverAuth"],
    dnsNames,
    ipAddresses,
  });
  return { privateKey, certificate };
}

/** A new server key and certificate for `hosts`, issued by the CA in `dir`. */
export function renewServerCertificate(
  dir: string,
  args: { readonly hosts?: readonly string[]; readonly now: number },
): void {
  const issued = issueServerCertificate({
    caCertificate: readPublicText(dir, FILES.caCert),
    caPrivateKey: readP256PrivateKey(dir, FILES.caKey),
    hosts: args.hosts ?? DEFAULT_HOSTS,
    now: args.now,
  });
  // Two files: a crash between them leaves a key that does not match the certificate, which
  // loadControlPlaneKeys refuses (fail closed); running the renewal again repairs it.
  writeP256PrivateKey(dir, FILES.serverKey, issued.privateKey);
  writePublic(dir, FILES.serverCert, issued.certificate.pem);
}
