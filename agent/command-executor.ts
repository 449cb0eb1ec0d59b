import {
  isActionAllowedByConsent,
  verifyCommand,
} from "../control-plane/protocol/documents/command.ts";
import { resolverFor, type VerifiedKeySet } from "../control-plane/protocol/keyset.ts";
import type {
  CommandArgsByAction,
  CommandPayload,
} from "../control-plane/protocol/schemas/command.ts";
import type { CommandStatus } from "../control-plane/protocol/schemas/command-result.ts";
import { type Clock, unixSeconds } from "../lib/clock.ts";
import { type ErrorCode, isAgentdError } from "../lib/errors.ts";
import type { CommandAction } from "../policy-guard/documents.ts";
import { lastSeqOf, readCommandLedger, withCommand, writeCommandLedger } from "./command-ledger.ts";

/**
 * Signed commands (docs/protocol.md, "Commands"), from the push stream or the poll, executed
 * at most once, in `seq` order, only under the consent they were issued for and only as it
 * allows.
 *
 * Checks, in order, each refusal audited with its reason (`command.refused`):
 * 1. the JWS verifies under one of the pinned key set's `command` keys (a key of another use
 *    or unknown is refused), is for this worker, and has not expired (protocol/documents);
 * 2. its `consent_sha256` is the consent in force on this machine (`command.consent_mismatch`
 *    otherwise): a command captured under an older consent never runs again, and one issued
 *    under a consent this machine has not accepted does not run under this one;
 * 3. its `seq` is above the highest this machine has executed **under that consent**, and its
 *    `cmd_id` was not seen before (kept until the command's `exp`): a replay over any
 *    transport runs nothing. Seqs are counted per consent (command-ledger.ts), so a
 *    seq of 2^53 − 1 signed by a stolen command key blocks nothing after the owner's next
 *    consent (DOCUMENTS.md section 4) — and check 2 keeps that fresh start from reopening
 *    replay;
 * 4. the current consent's `rules.commands` lists the action (no consent: nothing allowed);
 * 5. a handler exists for the action (parts not built yet answer `refused`,
 *    `command.unsupported`, and say which).
 * The `seq` and `cmd_id` are written durably **before** the handler runs (the ledger,
 * command-ledger.ts): a crash during it never runs the command again (at most once; the result
 * may be lost, the control plane then sees the command expire). A verified command gets a
 * signed result, `done`, `failed` or `refused`, through `postResult`, once: one whose `cmd_id`
 * is in the ledger already was answered before and gets none. One that does not verify gets
 * none either (its `cmd_id` cannot be trusted), only the audit record.
 */

export const COMMAND_LEDGER_FILE = "commands.json";

/** Every refusal code, stable (docs/protocol.md lists them; a test keeps the two equal). */
export const COMMAND_REFUSAL_CODES = Object.freeze([
  "command.invalid",
  "command.consent_mismatch",
  "command.replayed",
  "command.not_allowed",
  "command.unsupported",
] as const);

export type CommandHandler<A extends CommandAction> = (
  args: CommandArgsByAction[A],
  command: CommandPayload,
) => Promise<{ readonly status: "done" | "failed"; readonly reason: string }>;

export type CommandHandlers = { readonly [A in CommandAction]?: CommandHandler<A> };

export interface CommandAuditRecord {
  readonly type: "command.executed" | "command.refused";
  readonly cmd_id: string | null;
  readonly action: string | null;
  /** The command's `seq` (named so: `seq` is the audit log's own record number). */
  readonly command_seq: number | null;
  readonly status: CommandStatus;
  readonly reason: string;
}

export interface CommandExecutorOptions {
  readonly workerId: string;
  /** The pinned key set in force (its `command` keys verify commands). */
  readonly keyset: () => VerifiedKeySet;
  /** The current consent's `rules.commands`; null without a valid consent. */
  readonly allowed: () => readonly CommandAction[] | null;
  /** The identity of the consent in force (the same one as `allowed`'s); null without one. */
  readonly consent: () => string | null;
  readonly handlers: CommandHandlers;
  readonly clock: Clock;
  /** The ledger file (COMMAND_LEDGER_FILE in the state directory). */
  readonly ledgerPath: string;
  /** Appends durably; throws when it cannot (then nothing runs). */
  readonly audit: (record: CommandAuditRecord) => void;
  /** Signs and sends the result (protocol client: MachineClient.postCommandResult). */
  readonly postResult: (r: {
    readonly cmdId: string;
    readonly status: CommandStatus;
    readonly reason: string;
  }) => Promise<unknown>;
}

/** Why a command was refused: what callers branch on (the reason text is for people). */
export type CommandRefusal =
  /** It did not verify: `error` is the verification's code (an unknown key means a rotation). */
  | { readonly code: "command.invalid"; readonly error: ErrorCode }
  /** Issued under another consent than the one in force (an older one, or one not yet here). */
  | { readonly code: "command.consent_mismatch" }
  | { readonly code: "command.replayed" }
  | { readonly code: "command.not_allowed" }
  | { readonly code: "command.unsupported"; readonly action: CommandAction };

export type CommandOutcome =
  | { readonly cmdId: string; readonly status: "done" | "failed"; readonly reason: string }
  | {
      /** Null when the command did not verify (its id cannot be trusted). */
      readonly cmdId: string | null;
      readonly status: "refused";
      readonly reason: string;
      readonly refusal: CommandRefusal;
    };

export interface CommandExecutor {
  /** One command JWS; commands given together run in `seq` order. One at a time. */
  execute(jws: string): Promise<CommandOutcome>;
  executeAll(jwss: readonly string[]): Promise<CommandOutcome[]>;
  /** The highest seq executed (or refused after verification) under a consent; 0: none. */
  lastSeq(consent: string): number;
  /** Whether this command id is in the ledger (executed or refused after verification). */
  has(cmdId: string): boolean;
}

export function createCommandExecutor(o: CommandExecutorOptions): CommandExecutor {
  let ledger = readCommandLedger(o.ledgerPath, o.consent);
  const lastSeq = (consent: string) => lastSeqOf(ledger, consent);
  /** Records the command durably, before anything else happens (command-ledger.ts). */
  const remember = (c: CommandPayload, consent: string | null, now: number) => {
    const next = withCommand(ledger, c, consent, now);
    writeCommandLedger(o.ledgerPath, next);
    ledger = next;
  };
  let chain: Promise<unknown> = Promise.resolve();

  const audit = (
    status: CommandStatus,
    reason: string,
    c: Pick<CommandPayload, "cmd_id" | "action" | "seq"> | null,
  ) =>
    o.audit({
      type: status === "refused" ? "command.refused" : "command.executed",
      cmd_id: c?.cmd_id ?? null,
      action: c?.action ?? null,
      command_seq: c?.seq ?? null,
      status,
      reason,
    });
  const refuse = (
    refusal: CommandRefusal,
    c: Pick<CommandPayload, "cmd_id" | "action" | "seq"> | null,
  ): CommandOutcome => {
    const reason = reasonOf(refusal);
    audit("refused", reason, c);
    return { cmdId: c?.cmd_id ?? null, status: "refused", reason, refusal };
  };

  const finish = async (outcome: CommandOutcome): Promise<CommandOutcome> => {
    if (outcome.cmdId !== null) {
      try {
        await o.postResult({
          cmdId: outcome.cmdId,
          status: outcome.status,
          reason: outcome.reason,
        });
      } catch {
        // The result is best effort: the command has run (or not) either way, and is recorded.
      }
    }
    return outcome;
  };

  const run = async (jws: string): Promise<CommandOutcome> => {
    let c: CommandPayload;
    try {
      c = verifyCommand(jws, {
        key: resolverFor(o.keyset(), "command"),
        worker: o.workerId,
        clock: o.clock,
      }).payload;
    } catch (err) {
      const error = isAgentdError(err) ? err.code : "AGENTD_E_INTERNAL";
      return refuse({ code: "command.invalid", error }, null);
    }
    const now = unixSeconds(o.clock);
    // Seen before: it was answered then (or its result was lost), and a second answer would
    // misreport what happened, so refusals below post none for it.
    const known = Object.hasOwn(ledger.ids, c.cmd_id);
    const inForce = o.consent();
    if (inForce !== null && c.consent_sha256 !== inForce) {
      if (known) return refuse({ code: "command.consent_mismatch" }, c);
      remember(c, null, now);
      return finish(refuse({ code: "command.consent_mismatch" }, c));
    }
    if (inForce === null) {
      // No consent in force allows nothing, and there is no seq space to count it in.
      if (known) return refuse({ code: "command.not_allowed" }, c);
      remember(c, null, now);
      return finish(refuse({ code: "command.not_allowed" }, c));
    }
    if (c.seq <= lastSeq(inForce) || known) {
      // Audited, but no result is posted (above).
      return refuse({ code: "command.replayed" }, c);
    }
    // From here on this command counts as executed: durably, before anything runs.
    remember(c, inForce, now);
    if (!isActionAllowedByConsent(c.action, o.allowed() ?? undefined)) {
      return finish(refuse({ code: "command.not_allowed" }, c));
    }
    const handler = o.handlers[c.action] as CommandHandler<CommandAction> | undefined;
    if (handler === undefined) {
      return finish(refuse({ code: "command.unsupported", action: c.action }, c));
    }
    let result: { status: "done" | "failed"; reason: string };
    try {
      result = await handler(c.args as never, c);
    } catch (err) {
      result = { status: "failed", reason: isAgentdError(err) ? err.code : "handler error" };
    }
    const reason = result.reason.slice(0, 200);
    audit(result.status, reason, c);
    return finish({ cmdId: c.cmd_id, status: result.status, reason });
  };

  const execute = (jws: string): Promise<CommandOutcome> => {
    const next = chain.then(() => run(jws));
    chain = next.catch(() => {});
    return next;
  };

  return {
    execute,
    async executeAll(jwss) {
      // In seq order; a document whose seq cannot be read goes first (it is refused).
      const withSeq = jwss.map((jws) => ({ jws, seq: peekSeq(jws) }));
      withSeq.sort((a, b) => a.seq - b.seq);
      const out: CommandOutcome[] = [];
      for (const { jws } of withSeq) out.push(await execute(jws));
      return out;
    },
    lastSeq,
    has: (cmdId) => Object.hasOwn(ledger.ids, cmdId),
  };
}

/** The refusal as the audit record and the signed result say it. */
function reasonOf(r: CommandRefusal): string {
  switch (r.code) {
    case "command.invalid":
      return `command.invalid: ${r.error}`;
    case "command.unsupported":
      return `command.unsupported: ${r.action} is not available in this agentd yet`;
    default:
      return r.code;
  }
}

/** The claimed seq, unverified, for ordering only (-1 when it cannot be read). */
function peekSeq(jws: string): number {
  try {
    const payload = JSON.parse(Buffer.from(jws.split(".")[1] ?? "", "base64url").toString("utf8"));
    return Number.isSafeInteger(payload?.seq) ? (payload.seq as number) : -1;
  } catch {
    return -1;
  }
}
