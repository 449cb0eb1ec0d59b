import { closeSync, constants, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import {
  generateEd25519KeyPair,
  jwkThumbprint,
  privateKeyToPem,
  publicKeyOf,
} from "../../lib/crypto/ed25519.ts";
import { readPrivateKeyFile } from "../../lib/crypto/key-files.ts";
import { fail } from "../../lib/errors.ts";
import { fsyncDirectory } from "../../lib/fs/atomic.ts";
import { ioError } from "../../lib/fs/trust.ts";
import { KEY_USES, type KeySetEntry, signKeySet, verifyKeySet } from "../protocol/keyset.ts";
import {
  exists,
  FILES,
  pendingKeyFile,
  readPublicText,
  retiredKeyFile,
  useKeyFile,
  writePrivate,
  writePublic,
} from "./files.ts";
import { type ControlPlaneKeys, loadControlPlaneKeys } from "./load.ts";

/**
 * `agentd cp keys rotate`: a new key for every use (never the root), listed in a new key set
 * with seq + 1 signed by the root. By default the previous signing keys stay in the new set
 * (verify-only), so documents signed just before the rotation still verify for agents that
 * fetched the new set; `keepPrevious: false` drops them at once (a suspected compromise).
 *
 * Crash safety: the retired keys are archived and the new ones written as `.next` files
 * first; writing keyset.jws is the commit point; the `.next` files are then renamed into
 * place. loadControlPlaneKeys reads a directory stopped at any step correctly, and the next
 * rotation finishes (or discards) what a stopped one left.
 */
export function rotateKeys(
  dir: string,
  now: number,
  options: { readonly keepPrevious?: boolean } = {},
): ControlPlaneKeys {
  if (!Number.isSafeInteger(now)) {
    throw fail("AGENTD_E_INTERNAL", "rotateKeys: now must be integer Unix seconds");
  }
  const unlock = lock(dir);
  try {
    settlePending(dir);
    const current = loadControlPlaneKeys(dir);
    const seq = current.keyset.seq;
    const entries: KeySetEntry[] = [];
    for (const use of KEY_USES) {
      const old = current.signing[use];
      writePrivate(dir, retiredKeyFile(use, seq), privateKeyToPem(old.privateKey));
      const fresh = generateEd25519KeyPair();
      writePrivate(dir, pendingKeyFile(use), privateKeyToPem(fresh.privateKey));
      entries.push({ use, publicKey: fresh.publicKey });
      if (options.keepPrevious ?? true)
        entries.push({ use, publicKey: publicKeyOf(old.privateKey) });
    }
    const jws = signKeySet({
      rootPrivateKey: current.root.privateKey,
      seq: seq + 1,
      iat: now,
      keys: entries,
    });
    writePublic(dir, FILES.keyset, jws); // the commit point
    settlePending(dir);
    return loadControlPlaneKeys(dir);
  } finally {
    unlock();
  }
}

/** Renames `.next` keys the key set lists into place; deletes those it does not (uncommitted). */
function settlePending(dir: string): void {
  const root = publicKeyOf(readPrivateKeyFile(join(dir, FILES.rootKey)));
  const keyset = verifyKeySet(readPublicText(dir, FILES.keyset).trim(), {
    rootKid: jwkThumbprint(root),
    rootPublicKey: root,
  });
  let changed = false;
  for (const use of KEY_USES) {
    if (!exists(dir, pendingKeyFile(use))) continue;
    const pending = join(dir, pendingKeyFile(use));
    const kid = jwkThumbprint(publicKeyOf(readPrivateKeyFile(pending)));
    try {
      if (Object.hasOwn(keyset.keys[use], kid)) renameSync(pending, join(dir, useKeyFile(use)));
      else unlinkSync(pending);
    } catch (err) {
      throw ioError(pending, "settle", err);
    }
    changed = true;
  }
  if (changed) fsyncDirectory(dir);
}

/** One rotation at a time; a lock left by a crash names its pid and must be removed by hand. */
function lock(dir: string): () => void {
  const path = join(dir, FILES.rotateLock);
  let fd: number;
  try {
    fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") {
      throw fail(
        "AGENTD_E_FILE_EXISTS",
        `${path}: another rotation is running (or crashed: remove the file if no agentd process holds it)`,
        { path },
      );
    }
    throw ioError(path, "create", err);
  }
  try {
    writeSync(fd, `${process.pid}\n`);
  } finally {
    closeSync(fd);
  }
  return () => {
    try {
      unlinkSync(path);
    } catch {
      // already gone: nothing to release
    }
  };
}
