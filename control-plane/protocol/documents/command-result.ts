import type { KeyObject } from "node:crypto";
import { type Clock, unixSeconds } from "../../../lib/clock.ts";
import { jwkThumbprint, publicKeyOf } from "../../../lib/crypto/ed25519.ts";
import type { CommandResultPayload, CommandStatus } from "../schemas/command-result.ts";
import {
  checkIat,
  mismatch,
  signDocument,
  type VerifiedDocument,
  type VerifyKey,
  verifyDocument,
} from "./common.ts";

/**
 * Command results (`agentd-command-result+jwt`), signed by the machine key. A result may be
 * sent late (the agent was offline), so only a future `iat` is refused; a second result for
 * the same command is the store's to refuse (AGENTD_E_CP_REPLAY).
 */

export const COMMAND_RESULT_TYP = "agentd-command-result+jwt";

export function signCommandResult(a: {
  readonly privateKey: KeyObject;
  readonly cmdId: string;
  readonly status: CommandStatus;
  readonly reason: string;
  readonly clock: Clock;
}): string {
  const payload: CommandResultPayload = {
    v: 1,
    cmd_id: a.cmdId,
    worker: jwkThumbprint(publicKeyOf(a.privateKey)),
    status: a.status,
    reason: a.reason,
    iat: unixSeconds(a.clock),
  };
  return signDocument("command-result", COMMAND_RESULT_TYP, payload, a.privateKey);
}

/**
 * Signed by the worker's key, about that worker, and (when given) about command `cmdId` and
 * from `worker`.
 */
export function verifyCommandResult(
  token: string,
  o: {
    readonly key: VerifyKey;
    readonly clock: Clock;
    readonly cmdId?: string;
    /** The worker the command was addressed to. */
    readonly worker?: string;
  },
): VerifiedDocument<CommandResultPayload> {
  const doc = verifyDocument(token, "command-result", COMMAND_RESULT_TYP, o.key);
  if (doc.payload.worker !== doc.kid) {
    mismatch("worker", "result worker is not the thumbprint of the key that signed it");
  }
  if (o.worker !== undefined && doc.payload.worker !== o.worker) {
    mismatch("worker", "result is from another worker than the command's");
  }
  if (o.cmdId !== undefined && doc.payload.cmd_id !== o.cmdId) {
    mismatch("cmd_id", "result is for another command");
  }
  checkIat(doc.payload.iat, o.clock);
  return doc;
}
