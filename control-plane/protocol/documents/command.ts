import { type KeyObject, randomUUID } from "node:crypto";
import { type Clock, unixSeconds } from "../../../lib/clock.ts";
import type { CommandAction } from "../../../policy-guard/documents.ts";
import {
  type CommandActionArgs,
  type CommandPayload,
  DEFAULT_COMMAND_TTL_S,
  MAX_COMMAND_TTL_S,
} from "../schemas/command.ts";
import {
  checkLifetime,
  mismatch,
  signDocument,
  type VerifiedDocument,
  type VerifyKey,
  verifyDocument,
} from "./common.ts";

/**
 * Commands (`agentd-command+jwt`), signed by a control-plane `command` key. The agent
 * executes one only if it verifies here, names the consent in force (`consent_sha256`), its
 * `seq` is above the highest it has executed under that consent (so at most once, in order),
 * it has not expired, and the owner's consent lists its action (`isActionAllowedByConsent`).
 */

export const COMMAND_TYP = "agentd-command+jwt";

export type CommandSignArgs = {
  /** A key whose use is `command` in the key set. */
  readonly privateKey: KeyObject;
  readonly worker: string;
  readonly seq: number;
  /** The identity of the consent in force the command is issued under. */
  readonly consentSha256: string;
  readonly clock: Clock;
  readonly ttlS?: number;
  /** A fresh UUID unless given (tests, idempotent re-signing). */
  readonly cmdId?: string;
} & CommandActionArgs;

export function signCommand(a: CommandSignArgs): { jws: string; payload: CommandPayload } {
  const iat = unixSeconds(a.clock);
  const payload = {
    v: 1,
    cmd_id: a.cmdId ?? randomUUID(),
    worker: a.worker,
    action: a.action,
    args: a.args,
    iat,
    exp: iat + (a.ttlS ?? DEFAULT_COMMAND_TTL_S),
    consent_sha256: a.consentSha256,
    seq: a.seq,
  } as CommandPayload;
  if (payload.exp - payload.iat > MAX_COMMAND_TTL_S || payload.exp <= payload.iat) {
    mismatch("exp", `a command lives 1 to ${MAX_COMMAND_TTL_S} s`);
  }
  return { jws: signDocument("command", COMMAND_TYP, payload, a.privateKey), payload };
}

/**
 * A command signed by one of the pinned `command` keys (`key` resolves only those), for
 * `worker`, not yet expired, living at most a day. The consent binding, seq and
 * at-most-once are the agent's (agent/command-executor.ts: the highest seq executed per
 * consent); the action check is `isActionAllowedByConsent`.
 */
export function verifyCommand(
  token: string,
  o: { readonly key: VerifyKey; readonly worker: string; readonly clock: Clock },
): VerifiedDocument<CommandPayload> {
  const doc = verifyDocument(token, "command", COMMAND_TYP, o.key);
  if (doc.payload.worker !== o.worker) mismatch("worker", "command is for another worker");
  checkLifetime(doc.payload, o.clock, MAX_COMMAND_TTL_S);
  return doc;
}

/**
 * The consent's `rules.commands` is an allowlist (DOCUMENTS.md section 3): absent or empty
 * allows nothing. Stopping needs no command: the control plane stops through a publication
 * with `stop: true`, which the owner's consent always permits.
 */
export function isActionAllowedByConsent(
  action: CommandAction,
  allowed: readonly CommandAction[] | undefined,
): boolean {
  return allowed?.includes(action) === true;
}
