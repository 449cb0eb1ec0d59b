import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  generateEd25519KeyPair,
  jwkThumbprint,
  publicKeyOf,
  publicKeyToPem,
} from "../lib/crypto/ed25519.ts";
import {
  readPrivateKeyFile,
  readPublicKeyFile,
  writeKeyPair,
  writePublicKeyFile,
} from "../lib/crypto/key-files.ts";
import { AgentdError, fail } from "../lib/errors.ts";
import { checkTrustedDirectory, ioError } from "../lib/fs/trust.ts";

/**
 * The machine's own identity: an Ed25519 key made on the machine that never leaves it.
 * Its RFC 7638 thumbprint is the worker id everywhere (DOCUMENTS.md section 2).
 */

export const MACHINE_KEY_FILE = "machine.key.pem";
export const MACHINE_PUB_FILE = "machine.pub.pem";

export interface MachineIdentity {
  readonly workerId: string;
  readonly keyFile: string;
  readonly pubFile: string;
  /** True when this call generated the key. */
  readonly created: boolean;
}

/** Creates the state directory (0700) if missing and checks nobody else can write it. */
export function ensureStateDir(stateDir: string): void {
  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw ioError(stateDir, "create", err);
  }
  checkTrustedDirectory(stateDir);
}

/**
 * `agentd init`: idempotent. An existing key is kept (after its file passes the trust checks)
 * and its public half rewritten if missing or not matching; `force` replaces the key.
 */
export function initMachineIdentity(
  stateDir: string,
  options: { force: boolean },
): MachineIdentity {
  ensureStateDir(stateDir);
  const keyFile = join(stateDir, MACHINE_KEY_FILE);
  const pubFile = join(stateDir, MACHINE_PUB_FILE);

  if (existsSync(keyFile) && !options.force) {
    const privateKey = readPrivateKeyFile(keyFile);
    const publicKey = publicKeyOf(privateKey);
    if (!publicFileMatches(pubFile, publicKeyToPem(publicKey)))
      writePublicKeyFile(pubFile, publicKey);
    return { workerId: jwkThumbprint(publicKey), keyFile, pubFile, created: false };
  }

  const { privateKey, publicKey } = generateEd25519KeyPair();
  writeKeyPair(keyFile, pubFile, privateKey, { force: true });
  return { workerId: jwkThumbprint(publicKey), keyFile, pubFile, created: true };
}

/** Loads the machine identity; fails if `agentd init` has not been run. */
export function loadMachineIdentity(stateDir: string): MachineIdentity & {
  readonly privateKey: ReturnType<typeof readPrivateKeyFile>;
} {
  const keyFile = join(stateDir, MACHINE_KEY_FILE);
  if (!existsSync(keyFile)) {
    throw fail("AGENTD_E_IO", `${keyFile}: no machine key; run 'agentd init' first`, {
      path: keyFile,
      errno: "ENOENT",
    });
  }
  const privateKey = readPrivateKeyFile(keyFile);
  return {
    workerId: jwkThumbprint(publicKeyOf(privateKey)),
    keyFile,
    pubFile: join(stateDir, MACHINE_PUB_FILE),
    created: false,
    privateKey,
  };
}

function publicFileMatches(pubFile: string, pem: string): boolean {
  if (!existsSync(pubFile)) return false;
  try {
    return publicKeyToPem(readPublicKeyFile(pubFile)) === pem;
  } catch (err) {
    // The public file is derivable from the private key: a damaged, tampered or loosely
    // permitted one is rewritten (atomically, 0644) rather than failing init.
    if (err instanceof AgentdError && err.code !== "AGENTD_E_IO") return false;
    throw err;
  }
}
