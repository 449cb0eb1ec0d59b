import type { KeyObject } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { p256PrivateKeyToPem, parseP256PrivateKeyPem } from "../../lib/crypto/x509.ts";
import { writeFileAtomic } from "../../lib/fs/atomic.ts";
import { readTrustedFile } from "../../lib/fs/trust.ts";
import type { KeyUse } from "../protocol/keyset.ts";

/**
 * The control plane's key directory: which file holds what, and how each is written and read.
 * Private keys are 0600 and read through the trusted-file checks (a private key others can
 * read is refused); public material is 0644. The directory itself is 0700.
 */

export const FILES = Object.freeze({
  rootKey: "root.key.pem",
  rootPub: "root.pub.pem",
  keyset: "keyset.jws",
  caKey: "ca.key.pem",
  caCert: "ca.crt.pem",
  serverKey: "server.key.pem",
  serverCert: "server.crt.pem",
  rotateLock: "rotate.lock",
});

/** The signing key of a use. */
export const useKeyFile = (use: KeyUse): string => `${use}.key.pem`;
/** A rotation's new key, written before the key set that lists it (the commit point). */
export const pendingKeyFile = (use: KeyUse): string => `${use}.key.pem.next`;
/** A retired key, named after the last key-set seq that made it the signing key. */
export const retiredKeyFile = (use: KeyUse, seq: number): string => `${use}.key.pem.${seq}`;

export function writePrivate(dir: string, name: string, pem: string): void {
  writeFileAtomic(join(dir, name), pem, { mode: 0o600 });
}

export function writePublic(dir: string, name: string, text: string): void {
  writeFileAtomic(join(dir, name), text, { mode: 0o644 });
}

export function writeP256PrivateKey(dir: string, name: string, key: KeyObject): void {
  writePrivate(dir, name, p256PrivateKeyToPem(key));
}

export function readP256PrivateKey(dir: string, name: string): KeyObject {
  return parseP256PrivateKeyPem(readTrustedFile(join(dir, name), "private-key"));
}

export function readPublicText(dir: string, name: string): string {
  return readTrustedFile(join(dir, name), "public-key").toString("utf8");
}

export function readPrivateText(dir: string, name: string): string {
  return readTrustedFile(join(dir, name), "private-key").toString("utf8");
}

export const exists = (dir: string, name: string): boolean => existsSync(join(dir, name));
