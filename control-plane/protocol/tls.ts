import { Buffer } from "node:buffer";
import { createHash, timingSafeEqual, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import type { ConnectionOptions, DetailedPeerCertificate, TLSSocket, TlsOptions } from "node:tls";
import { certificateDer } from "../../lib/crypto/x509.ts";
import { fail } from "../../lib/errors.ts";

/**
 * TLS between agents, operators and the control plane: TLS 1.3 only, server certificates from
 * the control plane's own CA, and the CA pinned by the SHA-256 of its DER (the enrollment
 * token's `ca_sha256`). TLS 1.3 only because every client is ours: nothing old must be
 * served, and 1.3 removes renegotiation, static RSA and the CBC suites at once.
 */

export const TLS_VERSION = "TLSv1.3";

export interface ServerTlsMaterial {
  /** PEM private key of the server certificate. */
  readonly key: string | Buffer;
  /** PEM server certificate. */
  readonly cert: string | Buffer;
  /**
   * The PEM CA certificate, sent after the leaf: an enrolling agent has only the CA's hash,
   * so the server must present the CA for the agent to find and pin it.
   */
  readonly ca?: string | Buffer;
}

export function serverTlsOptions(m: ServerTlsMaterial): TlsOptions {
  const chain = m.ca === undefined ? String(m.cert) : `${String(m.cert).trimEnd()}\n${m.ca}`;
  return { key: m.key, cert: chain, minVersion: TLS_VERSION, maxVersion: TLS_VERSION };
}

/** Client options trusting exactly `ca` (not the system store). */
export function pinnedClientTlsOptions(ca: string | Buffer): ConnectionOptions {
  return { ca, minVersion: TLS_VERSION, maxVersion: TLS_VERSION, rejectUnauthorized: true };
}

/** Lowercase hex SHA-256 of a certificate's DER: the pin in an enrollment token. */
export function caSha256(pemOrDer: string | Uint8Array): string {
  return createHash("sha256").update(certificateDer(pemOrDer)).digest("hex");
}

/** The DER of every certificate the peer's chain holds, leaf first, as Node reports it. */
export function peerChainDer(socket: TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let cert: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  // Node links each certificate to its issuer; a self-signed root links to itself.
  while (cert?.raw !== undefined && !out.some((d) => d.equals(cert?.raw as Buffer))) {
    out.push(cert.raw);
    cert = cert.issuerCertificate;
  }
  return out;
}

/**
 * Checks that the connected peer's chain contains the certificate whose DER SHA-256 is `pin`
 * and returns it; else AGENTD_E_ENROLL_PIN_MISMATCH. Call it after the handshake and before
 * sending anything: a TLS connection that a foreign CA's trust made possible is not ours.
 */
export function assertPeerPinned(socket: TLSSocket, pin: string): X509Certificate {
  if (!/^[0-9a-f]{64}$/.test(pin)) {
    throw fail("AGENTD_E_INTERNAL", "a CA pin is 64 lowercase hex digits");
  }
  const want = Buffer.from(pin, "hex");
  for (const der of peerChainDer(socket)) {
    if (timingSafeEqual(createHash("sha256").update(der).digest(), want)) {
      return new X509Certificate(der);
    }
  }
  throw fail(
    "AGENTD_E_ENROLL_PIN_MISMATCH",
    "no certificate in the server's chain has the pinned SHA-256 (ca_sha256)",
    { pin },
  );
}

/**
 * For the first connection of an enrolling agent, which has no CA file yet and so connects
 * with `rejectUnauthorized: false`: finds the pinned CA in the presented chain, then does what
 * the skipped verification would have done against that CA alone — the leaf is issued and
 * signed by it, currently valid, and names `host`. Returns the CA's PEM to store and use with
 * `pinnedClientTlsOptions` from then on.
 */
export function verifyBootstrapPeer(
  socket: TLSSocket,
  pin: string,
  host: string,
  nowSeconds: number,
): string {
  const ca = assertPeerPinned(socket, pin);
  const leafDer = socket.getPeerCertificate(false).raw;
  const leaf = new X509Certificate(leafDer);
  const ok =
    ca.ca &&
    leaf.checkIssued(ca) &&
    leaf.verify(ca.publicKey) &&
    leaf.validFromDate.getTime() / 1000 <= nowSeconds &&
    nowSeconds < leaf.validToDate.getTime() / 1000 &&
    (isIP(host) === 0 ? leaf.checkHost(host) : leaf.checkIP(host)) !== undefined;
  if (!ok) {
    throw fail(
      "AGENTD_E_ENROLL_PIN_MISMATCH",
      `the server certificate is not a currently valid certificate for ${host} issued by the pinned CA`,
      { host },
    );
  }
  return ca.toString();
}
