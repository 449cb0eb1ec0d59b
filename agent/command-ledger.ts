import type { CommandPayload } from "../control-plane/protocol/schemas/command.ts";
import { fail } from "../lib/errors.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";

/**
 * The command ledger (`commands.json` in the state directory): what makes a command run at
 * most once (agent/command-executor.ts). Written atomically before a command's handler runs.
 *
 * Format 2 (issue 15): `{"consents": [{"consent", "last_seq"}, …], "ids": {cmd_id: exp}}` —
 * the highest `seq` executed under each of the last LEDGER_CONSENTS consents (the one in force
 * last), and every command id seen, until its `exp`. Seqs are counted per consent, as the
 * control plane allocates them (DOCUMENTS.md section 4), so a seq of 2^53 − 1 signed by a
 * stolen command key blocks nothing after the owner's next consent. Only the consent in force
 * can match a command, so older entries are kept only in case of a race and dropped first.
 *
 * Format 1 (before): `{"last_seq", "ids"}`, one seq for the machine. It is read with its
 * `last_seq` counted for the consent in force when it is read (the one of the upgrade); with
 * none in force it is dropped, which opens nothing: a command of that time carries no
 * `consent_sha256`, so it no longer verifies.
 */

const FORMAT = 2;
/** Consents whose highest seq is kept: the one in force (last) and the few before it. */
export const LEDGER_CONSENTS = 4;

export interface CommandLedger {
  /** The highest seq per consent identity, the most recently used last. */
  readonly consents: readonly { readonly consent: string; readonly last_seq: number }[];
  /** cmd_id → exp (Unix seconds), pruned once expired. */
  readonly ids: Readonly<Record<string, number>>;
}

/** The highest seq recorded under `consent`; 0 for none. */
export function lastSeqOf(ledger: CommandLedger, consent: string): number {
  return ledger.consents.find((e) => e.consent === consent)?.last_seq ?? 0;
}

/**
 * The ledger with `c` recorded: its id always, its seq under `consent` when given (only the
 * consent in force: another consent's seq counts for nothing here); expired ids pruned.
 */
export function withCommand(
  ledger: CommandLedger,
  c: Pick<CommandPayload, "cmd_id" | "exp" | "seq">,
  consent: string | null,
  now: number,
): CommandLedger {
  const consents =
    consent === null
      ? ledger.consents
      : [
          ...ledger.consents.filter((e) => e.consent !== consent),
          { consent, last_seq: c.seq },
        ].slice(-LEDGER_CONSENTS);
  return {
    consents,
    ids: {
      ...Object.fromEntries(Object.entries(ledger.ids).filter(([, exp]) => exp > now)),
      [c.cmd_id]: c.exp,
    },
  };
}

export function writeCommandLedger(path: string, ledger: CommandLedger): void {
  writeStateFile(path, FORMAT, ledger);
}

/** Reads the ledger (empty when absent); `consentInForce` places a format 1 seq. */
export function readCommandLedger(
  path: string,
  consentInForce: () => string | null,
): CommandLedger {
  const file = readStateFile(path, { format: FORMAT });
  if (file === undefined) return { consents: [], ids: {} };
  const corrupt = () => fail("AGENTD_E_FILE_CORRUPT", `${path}: not a command ledger`, { path });
  const d = file.data as Record<string, unknown> | null;
  if (typeof d !== "object" || d === null) throw corrupt();
  const ids = d.ids as Record<string, unknown> | null | undefined;
  if (
    ids === null ||
    typeof ids !== "object" ||
    Array.isArray(ids) ||
    Object.values(ids).some((v) => typeof v !== "number")
  ) {
    throw corrupt();
  }
  const idsCopy = { ...(ids as Record<string, number>) };
  const seqOk = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
  if (file.format === 1) {
    if (!seqOk(d.last_seq)) throw corrupt();
    const consent = consentInForce();
    const consents =
      consent === null || d.last_seq === 0 ? [] : [{ consent, last_seq: d.last_seq }];
    return { consents, ids: idsCopy };
  }
  if (!Array.isArray(d.consents)) throw corrupt();
  const consents = d.consents.map((e: unknown) => {
    const x = e as { consent?: unknown; last_seq?: unknown } | null;
    if (
      typeof x !== "object" ||
      x === null ||
      typeof x.consent !== "string" ||
      !/^[0-9a-f]{64}$/.test(x.consent) ||
      !seqOk(x.last_seq)
    ) {
      throw corrupt();
    }
    return { consent: x.consent, last_seq: x.last_seq };
  });
  return { consents: consents.slice(-LEDGER_CONSENTS), ids: idsCopy };
}
