import { chmodSync, lstatSync, mkdirSync, readdirSync } from "node:fs";
import { dirname } from "node:path";
import {
  generateEd25519KeyPair,
  privateKeyToPem,
  publicKeyToPem,
} from "../../lib/crypto/ed25519.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import { fsyncDirectory } from "../../lib/fs/atomic.ts";
import { ioError } from "../../lib/fs/trust.ts";
import { KEY_USES, signKeySet } from "../protocol/keyset.ts";
import { FILES, useKeyFile, writeP256PrivateKey, writePrivate, writePublic } from "./files.ts";
import { type ControlPlaneKeys, loadControlPlaneKeys } from "./load.ts";
import { DEFAULT_HOSTS, issueCa, issueServerCertificate } from "./server-cert.ts";

/**
 * `agentd cp init`: creates the control plane's keys in a new (or empty) directory: the root
 * key, one Ed25519 key per use, the key set (seq 1) signed by the root, the CA and the server
 * certificate. A crash part-way leaves an incomplete directory, which both a second init
 * (not empty) and loadControlPlaneKeys (missing files) refuse: nothing half-made is served.
 */
export function initControlPlaneKeys(
  dir: string,
  options: { readonly hosts?: readonly string[]; readonly now: number },
): ControlPlaneKeys {
  if (!Number.isSafeInteger(options.now)) {
    throw fail("AGENTD_E_INTERNAL", "initControlPlaneKeys: now must be integer Unix seconds");
  }
  // Everything is made in memory first, so bad input (a host name) writes nothing.
  const root = generateEd25519KeyPair();
  const keys = KEY_USES.map((use) => ({ use, ...generateEd25519KeyPair() }));
  const keyset = signKeySet({ rootPrivateKey: root.privateKey, seq: 1, iat: options.now, keys });
  const ca = issueCa(options.now);
  const server = issueServerCertificate({
    caCertificate: ca.certificate.pem,
    caPrivateKey: ca.privateKey,
    hosts: options.hosts ?? DEFAULT_HOSTS,
    now: options.now,
  });

  prepareEmptyDirectory(dir);
  writePrivate(dir, FILES.rootKey, privateKeyToPem(root.privateKey));
  writePublic(dir, FILES.rootPub, publicKeyToPem(root.publicKey));
  for (const k of keys) writePrivate(dir, useKeyFile(k.use), privateKeyToPem(k.privateKey));
  writeP256PrivateKey(dir, FILES.caKey, ca.privateKey);
  writePublic(dir, FILES.caCert, ca.certificate.pem);
  writeP256PrivateKey(dir, FILES.serverKey, server.privateKey);
  writePublic(dir, FILES.serverCert, server.certificate.pem);
  writePublic(dir, FILES.keyset, keyset); // last: loading starts from the key set
  return loadControlPlaneKeys(dir);
}

function prepareEmptyDirectory(dir: string): void {
  let existing: ReturnType<typeof lstatSync> | undefined;
  try {
    existing = lstatSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw ioError(dir, "stat", err);
  }
  try {
    if (existing === undefined) {
      mkdirSync(dir, { mode: 0o700 });
      fsyncDirectory(dirname(dir));
    } else if (!existing.isDirectory() || readdirSync(dir).length !== 0) {
      throw fail("AGENTD_E_FILE_EXISTS", `${dir}: exists and is not an empty directory`, {
        path: dir,
      });
    }
    chmodSync(dir, 0o700); // mkdir's mode is narrowed by the umask, never widened: set it exactly
  } catch (err) {
    if (isAgentdError(err)) throw err;
    throw ioError(dir, "create", err);
  }
}
