import type { KeyObject } from "node:crypto";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { enroll } from "../control-plane/protocol/client-enroll.ts";
import { type VerifiedKeySet, verifyKeySet } from "../control-plane/protocol/keyset.ts";
import type { HostFacts } from "../control-plane/protocol/schemas/attestation.ts";
import type { Clock } from "../lib/clock.ts";
import { jwkThumbprint, publicJwk, publicKeyFromJwk } from "../lib/crypto/ed25519.ts";
import { fail } from "../lib/errors.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";
import { GUARD_STATE_FILE } from "../policy-guard/state.ts";
import { STATE_FILE } from "./agent-state.ts";
import { COMMAND_LEDGER_FILE } from "./command-executor.ts";
import { initMachineIdentity, loadMachineIdentity } from "./identity.ts";
import { POLLED_FILE } from "./polled-commands.ts";
import { STREAM_FILE } from "./stream-state.ts";

/**
 * `agentd enroll` (docs/protocol.md section 5): the machine registers its key with the control
 * plane named in the owner's enrollment token, and keeps what it will trust from then on.
 *
 * Trust comes from the token and the owner, never from what the control plane says about
 * itself: the protocol client checks the CA the server presents against the token's hash and
 * the key set against the token's root thumbprint before sending anything, and the machine
 * must be registered under the **owner key the owner gave on the command line** — the root of
 * consent, pinned here; a control plane that registers it under another owner is refused.
 *
 * What is kept, in `enrollment.json` (0600, in the state directory): the control plane's URL
 * and CA, the pinned root key thumbprint and the key set it signed, the owner's public key,
 * the worker and owner ids. A second enrollment replaces it only with `force` (a machine moved
 * to another control plane or owner: the old pins go).
 */

export const ENROLLMENT_FILE = "enrollment.json";
const FORMAT = 1;

export interface EnrollmentRecord {
  readonly url: string;
  readonly worker_id: string;
  readonly owner_id: string;
  /** The owner's public key as the owner gave it (JWK). */
  readonly owner_jwk: { readonly kty: "OKP"; readonly crv: "Ed25519"; readonly x: string };
  readonly root_kid: string;
  readonly keyset: string;
  readonly ca_pem: string;
  /** Unix seconds. */
  readonly enrolled_at: number;
  /**
   * The hashed machine id at enrollment: the same key on another machine is a clone, and
   * `agentd run` stops there (daemon.ts) until the machine is enrolled again.
   */
  readonly machine_id_sha256: string;
}

export interface EnrollMachineInput {
  readonly stateDir: string;
  readonly token: string;
  /** The owner's public key, from the owner (a file they gave). */
  readonly ownerPub: KeyObject;
  readonly facts: HostFacts;
  readonly clock: Clock;
  readonly force?: boolean;
  readonly timeoutMs?: number;
}

export async function enrollMachine(input: EnrollMachineInput): Promise<EnrollmentRecord> {
  const path = join(input.stateDir, ENROLLMENT_FILE);
  if (existsSync(path) && input.force !== true) {
    throw fail(
      "AGENTD_E_FILE_EXISTS",
      `${path}: this machine is enrolled already; --force enrolls it again (its pins are replaced)`,
      { path },
    );
  }
  initMachineIdentity(input.stateDir, { force: false });
  const machine = loadMachineIdentity(input.stateDir);
  const e = await enroll({
    token: input.token,
    machineKey: machine.privateKey,
    facts: input.facts,
    ownerPub: input.ownerPub,
    clock: input.clock,
    ...(input.timeoutMs === undefined ? {} : { timeoutMs: input.timeoutMs }),
  });
  const previous = existsSync(path) ? previousWorker(path) : null;
  const record: EnrollmentRecord = {
    url: e.url,
    worker_id: e.workerId,
    owner_id: e.ownerId,
    owner_jwk: { ...publicJwk(input.ownerPub) },
    root_kid: e.keyset.rootKid,
    keyset: e.keyset.jws,
    ca_pem: e.caPem,
    enrolled_at: Math.floor(input.clock.now() / 1000),
    machine_id_sha256: input.facts.machine_id_sha256,
  };
  writeStateFile(path, FORMAT, record);
  // A new enrollment starts the agent's states over (a quarantined clone, enrolled again as
  // the new machine it is, may run); the audit log and the heartbeat counter go on.
  rmSync(join(input.stateDir, STATE_FILE), { force: true });
  // Another worker id (a new machine key): what was kept about the old worker — the policy
  // guard's counters, the command ledger, the stream position, the commands polled — would
  // only refuse the new one's documents or skip its events. The same worker enrolled again
  // keeps them all (DOCUMENTS.md section 5: a revocation survives re-enrollment).
  if (previous !== null && previous !== record.worker_id) {
    for (const f of [GUARD_STATE_FILE, COMMAND_LEDGER_FILE, STREAM_FILE, POLLED_FILE]) {
      rmSync(join(input.stateDir, f), { force: true });
    }
  }
  return record;
}

export interface Enrolled {
  readonly record: EnrollmentRecord;
  readonly ownerKey: KeyObject;
  readonly keyset: VerifiedKeySet;
}

/**
 * The enrollment as stored, checked again: the key set verifies under the pinned root, the
 * owner key is the owner id's. Null when the machine is not enrolled.
 */
export function readEnrollment(stateDir: string): Enrolled | null {
  const path = join(stateDir, ENROLLMENT_FILE);
  const file = readStateFile(path, { format: FORMAT });
  if (file === undefined) return null;
  const r = file.data as EnrollmentRecord;
  try {
    const ownerKey = publicKeyFromJwk(r.owner_jwk);
    if (jwkThumbprint(ownerKey) !== r.owner_id) throw new Error("owner key is not the owner id's");
    const keyset = verifyKeySet(r.keyset, { rootKid: r.root_kid });
    for (const k of ["url", "worker_id", "ca_pem", "machine_id_sha256"] as const) {
      if (typeof r[k] !== "string" || r[k] === "") throw new Error(`${k} is missing`);
    }
    return { record: r, ownerKey, keyset };
  } catch (err) {
    throw fail("AGENTD_E_FILE_CORRUPT", `${path}: not a valid enrollment`, { path }, err);
  }
}

/**
 * Keeps a rotated key set (verified by the caller under the pinned root with a higher seq:
 * control-plane/protocol/keyset.ts acceptKeySetUpdate) in `enrollment.json`, the rest of the record unchanged.
 */
export function storeKeySet(
  stateDir: string,
  record: EnrollmentRecord,
  keysetJws: string,
): EnrollmentRecord {
  const next = { ...record, keyset: keysetJws };
  writeStateFile(join(stateDir, ENROLLMENT_FILE), FORMAT, next);
  return next;
}

/** The worker id of the enrollment being replaced, or null when it cannot be read. */
function previousWorker(path: string): string | null {
  try {
    const file = readStateFile(path, { format: FORMAT });
    const id = (file?.data as { worker_id?: unknown } | undefined)?.worker_id;
    return typeof id === "string" ? id : null;
  } catch {
    return null;
  }
}
