import type { KeyObject } from "node:crypto";
import { existsSync } from "node:fs";
import { AgentdError, fail } from "../errors.ts";
import { writeFileAtomic } from "../fs/atomic.ts";
import { readTrustedFile, type TrustOptions } from "../fs/trust.ts";
import {
  parsePrivateKeyPem,
  parsePublicKeyPem,
  privateKeyToPem,
  publicKeyOf,
  publicKeyToPem,
} from "./ed25519.ts";

/**
 * Key files on disk: private keys PKCS#8 PEM mode 0600, public keys SPKI PEM mode 0644
 * (DOCUMENTS.md section 2), both readable by openssl. Reading goes through the trusted-file
 * checks: a private key others can read, or any key others can write, is refused.
 */

export function readPrivateKeyFile(path: string, options: TrustOptions = {}): KeyObject {
  const pem = readTrustedFile(path, "private-key", options);
  return withPath(path, () => parsePrivateKeyPem(pem));
}

export function readPublicKeyFile(path: string, options: TrustOptions = {}): KeyObject {
  const pem = readTrustedFile(path, "public-key", options);
  return withPath(path, () => parsePublicKeyPem(pem));
}

export function writePrivateKeyFile(path: string, key: KeyObject): void {
  writeFileAtomic(path, privateKeyToPem(key), { mode: 0o600 });
}

export function writePublicKeyFile(path: string, key: KeyObject): void {
  writeFileAtomic(path, publicKeyToPem(key), { mode: 0o644 });
}

/** Writes a key pair; refuses to replace an existing private key unless `force`. */
export function writeKeyPair(
  privatePath: string,
  publicPath: string,
  privateKey: KeyObject,
  options: { force: boolean },
): void {
  if (!options.force && existsSync(privatePath)) {
    throw fail(
      "AGENTD_E_FILE_EXISTS",
      `${privatePath}: a key already exists (use --force to replace it)`,
      {
        path: privatePath,
      },
    );
  }
  writePrivateKeyFile(privatePath, privateKey);
  writePublicKeyFile(publicPath, publicKeyOf(privateKey));
}

function withPath<T>(path: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof AgentdError && err.code === "AGENTD_E_KEY_INVALID") {
      throw fail("AGENTD_E_KEY_INVALID", `${path}: ${err.message}`, { ...err.context, path }, err);
    }
    throw err;
  }
}
