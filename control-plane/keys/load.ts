import { createPublicKey, type KeyObject, X509Certificate } from "node:crypto";
import { join } from "node:path";
import { jwkThumbprint, publicKeyOf } from "../../lib/crypto/ed25519.ts";
import { readPrivateKeyFile } from "../../lib/crypto/key-files.ts";
import { certificateDer, parseP256PrivateKeyPem } from "../../lib/crypto/x509.ts";
import { fail } from "../../lib/errors.ts";
import { checkTrustedDirectory } from "../../lib/fs/trust.ts";
import { KEY_USES, type KeyUse, type VerifiedKeySet, verifyKeySet } from "../protocol/keyset.ts";
import { caSha256 } from "../protocol/tls.ts";
import {
  exists,
  FILES,
  pendingKeyFile,
  readPrivateText,
  readPublicText,
  useKeyFile,
} from "./files.ts";

/**
 * Reads and cross-checks the key directory: the key set verifies under the root key, each
 * use's signing key is listed in it under that use, the server certificate was issued by the
 * CA and matches its key. Read-only; the CA's private key is not loaded (serving never needs
 * it). Anything inconsistent is refused rather than served.
 */

export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly kid: string;
}

export interface ControlPlaneKeys {
  readonly dir: string;
  readonly root: SigningKey & { readonly publicKey: KeyObject };
  /** The key each use signs with now. */
  readonly signing: Readonly<Record<KeyUse, SigningKey>>;
  readonly keyset: VerifiedKeySet;
  readonly keysetJws: string;
  readonly caCertPem: string;
  /** The enrollment token's `ca_sha256`. */
  readonly caSha256: string;
  readonly serverKeyPem: string;
  readonly serverCertPem: string;
}

export function loadControlPlaneKeys(dir: string): ControlPlaneKeys {
  checkTrustedDirectory(dir);
  const rootPrivate = readPrivateKeyFile(join(dir, FILES.rootKey));
  const rootPublic = publicKeyOf(rootPrivate);
  const rootKid = jwkThumbprint(rootPublic);
  const keysetJws = readPublicText(dir, FILES.keyset).trim();
  const keyset = verifyKeySet(keysetJws, { rootKid, rootPublicKey: rootPublic });
  const signing = Object.fromEntries(
    KEY_USES.map((use) => [use, Object.freeze(signingKey(dir, use, keyset))]),
  ) as Record<KeyUse, SigningKey>;

  const caCertPem = readPublicText(dir, FILES.caCert);
  const serverCertPem = readPublicText(dir, FILES.serverCert);
  const serverKeyPem = readPrivateText(dir, FILES.serverKey);
  checkServerCertificate(caCertPem, serverCertPem, parseP256PrivateKeyPem(serverKeyPem));

  return Object.freeze({
    dir,
    root: Object.freeze({ privateKey: rootPrivate, publicKey: rootPublic, kid: rootKid }),
    signing: Object.freeze(signing),
    keyset,
    keysetJws,
    caCertPem,
    caSha256: caSha256(caCertPem),
    serverKeyPem,
    serverCertPem,
  });
}

/**
 * A rotation writes the new key as `<use>.key.pem.next` before the key set that lists it; if
 * it stopped after that commit point, the pending key is already the signing key.
 */
function signingKey(dir: string, use: KeyUse, keyset: VerifiedKeySet): SigningKey {
  const listed = keyset.keys[use];
  if (exists(dir, pendingKeyFile(use))) {
    const pending = readPrivateKeyFile(join(dir, pendingKeyFile(use)));
    const kid = jwkThumbprint(publicKeyOf(pending));
    if (Object.hasOwn(listed, kid)) return { privateKey: pending, kid };
  }
  const privateKey = readPrivateKeyFile(join(dir, useKeyFile(use)));
  const kid = jwkThumbprint(publicKeyOf(privateKey));
  if (!Object.hasOwn(listed, kid)) {
    throw fail(
      "AGENTD_E_FILE_CORRUPT",
      `${join(dir, useKeyFile(use))}: key ${kid} is not a ${use} key of the key set (seq ${keyset.seq})`,
      { path: join(dir, useKeyFile(use)), use, kid },
    );
  }
  return { privateKey, kid };
}

function checkServerCertificate(caPem: string, certPem: string, key: KeyObject): void {
  const ca = new X509Certificate(certificateDer(caPem));
  const cert = new X509Certificate(certificateDer(certPem));
  if (!ca.ca || !cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    throw fail("AGENTD_E_KEY_INVALID", `${FILES.serverCert} was not issued by ${FILES.caCert}`);
  }
  const spki = (k: KeyObject): Buffer => k.export({ type: "spki", format: "der" });
  if (!spki(cert.publicKey).equals(spki(createPublicKey(key)))) {
    throw fail("AGENTD_E_KEY_INVALID", `${FILES.serverKey} does not match ${FILES.serverCert}`);
  }
}
