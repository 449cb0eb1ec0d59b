import { Buffer } from "node:buffer";
import { createHash, type KeyObject, sign, X509Certificate } from "node:crypto";
import { once } from "node:events";
import { createServer as createHttpsServer, get as httpsGet } from "node:https";
import type { AddressInfo } from "node:net";
import {
  type ConnectionOptions,
  connect,
  createServer,
  type Server,
  type TLSSocket,
} from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { issueCa, issueServerCertificate } from "../../../control-plane/keys/server-cert.ts";
import {
  assertPeerPinned,
  caSha256,
  peerChainDer,
  pinnedClientTlsOptions,
  serverTlsOptions,
  verifyBootstrapPeer,
} from "../../../control-plane/protocol/tls.ts";
import {
  bitString,
  derToPem,
  readChildren,
  readSingle,
  sequence,
  type Tlv,
} from "../../../lib/crypto/der.ts";
import {
  createLeafCertificate,
  generateP256KeyPair,
  p256PrivateKeyToPem,
} from "../../../lib/crypto/x509.ts";
import { AgentdError } from "../../../lib/errors.ts";

const NOW = Math.floor(Date.now() / 1000);

function material(hosts = ["127.0.0.1", "localhost"]) {
  const ca = issueCa(NOW);
  const server = issueServerCertificate({
    caCertificate: ca.certificate.pem,
    caPrivateKey: ca.privateKey,
    hosts,
    now: NOW,
  });
  return {
    caPem: ca.certificate.pem,
    caKey: ca.privateKey,
    keyPem: p256PrivateKeyToPem(server.privateKey),
    certPem: server.certificate.pem,
  };
}

/** A leaf that names A's CA as issuer (name and key identifier) but is signed by `signer`. */
function forgedLeaf(ca: ReturnType<typeof material>, signer: KeyObject) {
  const pair = generateP256KeyPair();
  const genuine = createLeafCertificate({
    commonName: "127.0.0.1",
    publicKey: pair.publicKey,
    issuerCertificate: ca.caPem,
    issuerPrivateKey: ca.caKey,
    notBefore: NOW - 60,
    notAfter: NOW + 86_400,
    extKeyUsage: ["serverAuth"],
    ipAddresses: ["127.0.0.1"],
  });
  const [tbs, algorithm] = readChildren(readSingle(genuine.der)) as [Tlv, Tlv];
  const der = sequence(
    tbs.encoded,
    algorithm.encoded,
    bitString(sign("sha256", tbs.encoded, signer)),
  );
  return { keyPem: p256PrivateKeyToPem(pair.privateKey), certPem: derToPem(der, "CERTIFICATE") };
}

const A = material();
const B = material();

const servers: Server[] = [];
const sockets: TLSSocket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function listen(m: { keyPem: string; certPem: string; caPem?: string }): Promise<number> {
  const server = createServer(
    serverTlsOptions({ key: m.keyPem, cert: m.certPem, ...(m.caPem ? { ca: m.caPem } : {}) }),
    (s) => s.end("hello"),
  );
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

/** Resolves with the connected socket, or rejects with the handshake error. */
function dial(port: number, options: ConnectionOptions): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, ...options });
    sockets.push(s);
    s.once("secureConnect", () => resolve(s));
    s.once("error", reject);
  });
}

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) return err.code;
    throw err;
  }
  throw new Error("accepted");
}

describe("TLS 1.3 with a pinned CA", () => {
  it("connects with TLS 1.3 and finds the pinned CA in the chain", async () => {
    const port = await listen({ ...A, caPem: A.caPem });
    const s = await dial(port, pinnedClientTlsOptions(A.caPem));
    expect(s.getProtocol()).toBe("TLSv1.3");
    expect(s.authorized).toBe(true);
    const ca = assertPeerPinned(s, caSha256(A.caPem));
    expect(ca.raw.equals(new X509Certificate(A.caPem).raw)).toBe(true);
    const chain = peerChainDer(s);
    expect(chain.length).toBe(2);
    expect(chain[0]?.equals(new X509Certificate(A.certPem).raw)).toBe(true);
    const [data] = await once(s, "data");
    expect(String(data)).toBe("hello");
  });

  it("finds the pinned CA through the trust store when the server sends only its leaf", async () => {
    const port = await listen(A);
    const s = await dial(port, pinnedClientTlsOptions(A.caPem));
    expect(assertPeerPinned(s, caSha256(A.caPem)).ca).toBe(true);
  });

  it("refuses a TLS 1.2-only client", async () => {
    const port = await listen(A);
    await expect(
      dial(port, { ca: A.caPem, minVersion: "TLSv1.2", maxVersion: "TLSv1.2" }),
    ).rejects.toMatchObject({
      code: expect.stringMatching(/PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL/),
    });
  });

  it("a client pinning another CA's hash is refused with AGENTD_E_ENROLL_PIN_MISMATCH", async () => {
    const port = await listen({ ...A, caPem: A.caPem });
    const s = await dial(port, pinnedClientTlsOptions(A.caPem));
    expect(codeOf(() => assertPeerPinned(s, caSha256(B.caPem)))).toBe(
      "AGENTD_E_ENROLL_PIN_MISMATCH",
    );
  });

  it("a client trusting another CA fails the handshake", async () => {
    const port = await listen({ ...A, caPem: A.caPem });
    await expect(dial(port, pinnedClientTlsOptions(B.caPem))).rejects.toMatchObject({
      code: expect.stringMatching(
        /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED/,
      ),
    });
  });

  it("a certificate for another host fails the handshake", async () => {
    const port = await listen(material(["cp.example"]));
    await expect(dial(port, pinnedClientTlsOptions(A.caPem))).rejects.toBeInstanceOf(Error);
  });

  it("serves HTTPS under the same options", async () => {
    const server = createHttpsServer(
      serverTlsOptions({ key: A.keyPem, cert: A.certPem, ca: A.caPem }),
      (_req, res) => res.end("ok"),
    );
    servers.push(server as unknown as Server);
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    const body = await new Promise<string>((resolve, reject) => {
      const req = httpsGet(
        { host: "127.0.0.1", port, path: "/", agent: false, ...pinnedClientTlsOptions(A.caPem) },
        (res) => {
          const socket = res.socket as TLSSocket;
          try {
            assertPeerPinned(socket, caSha256(A.caPem));
          } catch (err) {
            reject(err);
          }
          res.setEncoding("utf8");
          let text = "";
          res.on("data", (c) => {
            text += c;
          });
          res.on("end", () => resolve(`${socket.getProtocol()} ${text}`));
        },
      );
      req.on("error", reject);
    });
    expect(body).toBe("TLSv1.3 ok");
  });
});

describe("caSha256", () => {
  it("is the lowercase hex SHA-256 of the DER, from PEM or DER", () => {
    const x = new X509Certificate(A.caPem);
    const expected = createHash("sha256").update(x.raw).digest("hex");
    expect(caSha256(A.caPem)).toBe(expected);
    expect(caSha256(x.raw)).toBe(expected);
    expect(expected).toBe(x.fingerprint256.replace(/:/g, "").toLowerCase());
  });

  it("refuses what is not one certificate", () => {
    expect(codeOf(() => caSha256("nothing"))).toBe("AGENTD_E_KEY_INVALID");
    expect(codeOf(() => caSha256(A.caPem + B.caPem))).toBe("AGENTD_E_KEY_INVALID");
  });
});

describe("bootstrap: the first connection of an enrolling agent", () => {
  const insecure: ConnectionOptions = { rejectUnauthorized: false, minVersion: "TLSv1.3" };

  it("returns the pinned CA after checking the leaf against it", async () => {
    const port = await listen({ ...A, caPem: A.caPem });
    const s = await dial(port, insecure);
    const caPem = verifyBootstrapPeer(s, caSha256(A.caPem), "127.0.0.1", NOW);
    expect(caSha256(caPem)).toBe(caSha256(A.caPem));
    // and the CA returned is then enough for a verified connection
    const verified = await dial(port, pinnedClientTlsOptions(caPem));
    expect(verified.authorized).toBe(true);
  });

  it("refuses a wrong pin, a wrong host and an expired leaf", async () => {
    const port = await listen({ ...A, caPem: A.caPem });
    const s = await dial(port, insecure);
    expect(codeOf(() => verifyBootstrapPeer(s, caSha256(B.caPem), "127.0.0.1", NOW))).toBe(
      "AGENTD_E_ENROLL_PIN_MISMATCH",
    );
    expect(codeOf(() => verifyBootstrapPeer(s, caSha256(A.caPem), "10.0.0.1", NOW))).toBe(
      "AGENTD_E_ENROLL_PIN_MISMATCH",
    );
    expect(codeOf(() => verifyBootstrapPeer(s, caSha256(A.caPem), "other.example", NOW))).toBe(
      "AGENTD_E_ENROLL_PIN_MISMATCH",
    );
    expect(
      codeOf(() => verifyBootstrapPeer(s, caSha256(A.caPem), "127.0.0.1", NOW + 3 * 365 * 86_400)),
    ).toBe("AGENTD_E_ENROLL_PIN_MISMATCH");
  });

  it("refuses a leaf of another CA even when the pinned CA is sent along", async () => {
    // An attacker holding any certificate can append the real CA (it is public) to its chain.
    const port = await listen({ keyPem: B.keyPem, certPem: B.certPem, caPem: A.caPem });
    const s = await dial(port, insecure);
    expect(codeOf(() => verifyBootstrapPeer(s, caSha256(A.caPem), "127.0.0.1", NOW))).toBe(
      "AGENTD_E_ENROLL_PIN_MISMATCH",
    );
  });

  it("refuses a leaf naming the pinned CA as issuer but signed by another key", async () => {
    const forged = forgedLeaf(A, B.caKey);
    const port = await listen({ ...forged, caPem: A.caPem });
    const s = await dial(port, insecure);
    // Node links the forged leaf to the pinned CA by name and key identifier alone ...
    expect(assertPeerPinned(s, caSha256(A.caPem)).ca).toBe(true);
    // ... so only the signature check tells them apart.
    expect(codeOf(() => verifyBootstrapPeer(s, caSha256(A.caPem), "127.0.0.1", NOW))).toBe(
      "AGENTD_E_ENROLL_PIN_MISMATCH",
    );
    // and a verifying client refuses it in the handshake
    await expect(dial(port, pinnedClientTlsOptions(A.caPem))).rejects.toBeInstanceOf(Error);
  });
});

describe("options", () => {
  it("server and client options fix TLS 1.3", () => {
    const o = serverTlsOptions({ key: A.keyPem, cert: A.certPem, ca: A.caPem });
    expect(o).toMatchObject({ minVersion: "TLSv1.3", maxVersion: "TLSv1.3" });
    expect(String(o.cert).match(/BEGIN CERTIFICATE/g)?.length).toBe(2);
    expect(pinnedClientTlsOptions(A.caPem)).toMatchObject({
      ca: A.caPem,
      minVersion: "TLSv1.3",
      rejectUnauthorized: true,
    });
    expect(Buffer.isBuffer(A.caPem)).toBe(false);
  });
});
