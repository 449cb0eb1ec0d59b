import { fail } from "../../../../lib/errors.ts";
import { conflict, notFound } from "../../errors.ts";
import type {
  Command,
  CommandInput,
  CommandResultInput,
  IssueCommandInput,
  StreamEvent,
} from "../../store.ts";
import { all, type Op, type OpContext, one, run } from "../op.ts";
import { COMMAND_COLUMNS, type Row, toCommand, toJsonText } from "../rows.ts";
import { allocateOp, raiseCounterOp } from "./allocate.ts";
import { latestConsentOp } from "./policy.ts";
import { appendStreamEventOp } from "./stream.ts";
import { lockWorker } from "./workers.ts";

export interface Queued {
  command: Command;
  event: StreamEvent;
}

export function* createCommandOp(ctx: OpContext, c: CommandInput): Op<Queued> {
  yield* lockWorker(ctx, c.worker_id);
  const inserted = yield* all<Row>(
    `INSERT INTO commands (cmd_id, worker_id, seq, action, args, jws, iat, exp, consent_identity)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING cmd_id`,
    [
      c.cmd_id,
      c.worker_id,
      c.seq,
      c.action,
      toJsonText(c.args),
      c.jws,
      c.iat,
      c.exp,
      c.consent_identity,
    ],
  );
  if (inserted.length === 0) {
    throw conflict("a command with this cmd_id or seq exists", { cmd_id: c.cmd_id, seq: c.seq });
  }
  yield* raiseCounterOp("last_command_seq", c.worker_id, c.consent_identity, c.seq);
  const event = yield* appendStreamEventOp({
    worker_id: c.worker_id,
    kind: "command",
    ref: c.cmd_id,
    at: ctx.nowSeconds(),
  });
  return { command: { ...c, result: null }, event };
}

/**
 * Under the worker's lock, the command's consent must still be the worker's latest: a command
 * planned under a consent superseded since is refused (CONFLICT, reason `stale_consent`), so
 * the seq counter only ever moves to a newer consent (allocate.ts) and the agent, which runs
 * commands of the consent in force only, is never sent one it must refuse.
 */
export function* issueCommandOp(
  ctx: OpContext,
  input: IssueCommandInput,
  build: (seq: number) => string,
): Op<Queued> {
  yield* lockWorker(ctx, input.worker_id);
  const latest = yield* latestConsentOp(input.worker_id);
  if (latest?.identity !== input.consent_identity) {
    throw conflict("the worker's consent changed since this command was planned", {
      reason: "stale_consent",
    });
  }
  const seq = yield* allocateOp(
    "last_command_seq",
    input.worker_id,
    input.consent_identity,
    input.now_ms,
  );
  return yield* createCommandOp(ctx, {
    cmd_id: input.cmd_id,
    worker_id: input.worker_id,
    action: input.action,
    args: input.args,
    jws: build(seq),
    iat: input.iat,
    exp: input.exp,
    seq,
    consent_identity: input.consent_identity,
  });
}

export function* getCommandOp(cmdId: string): Op<Command | null> {
  const r = yield* one<Row>(`SELECT ${COMMAND_COLUMNS} FROM commands WHERE cmd_id = ?`, [cmdId]);
  return r === undefined ? null : toCommand(r);
}

export function* listPendingCommandsOp(workerId: string, now: number): Op<Command[]> {
  const rows = yield* all<Row>(
    `SELECT ${COMMAND_COLUMNS} FROM commands
     WHERE worker_id = ? AND result_status IS NULL AND exp > ? ORDER BY seq`,
    [workerId, now],
  );
  return rows.map(toCommand);
}

/** Once, by a conditional UPDATE: of concurrent results exactly one is recorded. */
export function* recordCommandResultOp(r: CommandResultInput): Op<Command> {
  const changed = yield* run(
    `UPDATE commands SET result_status = ?, result_jws = ?, result_at = ?
     WHERE cmd_id = ? AND worker_id = ? AND result_status IS NULL`,
    [r.status, r.jws, r.at, r.cmd_id, r.worker_id],
  );
  const command = yield* getCommandOp(r.cmd_id);
  if (command === null || command.worker_id !== r.worker_id) throw notFound("command", r.cmd_id);
  if (changed === 0) {
    throw fail("AGENTD_E_CP_REPLAY", "this command's result is recorded already", {
      cmd_id: r.cmd_id,
    });
  }
  return command;
}
