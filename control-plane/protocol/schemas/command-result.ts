import { closed, frozen, root, THUMBPRINT, text, UNIX_TIME, UUID } from "./common.ts";

/** Command result (`agentd-command-result+jwt`, signed by the machine key). */

export const COMMAND_STATUSES = ["done", "refused", "failed"] as const;
export type CommandStatus = (typeof COMMAND_STATUSES)[number];

export interface CommandResultPayload {
  readonly v: 1;
  readonly cmd_id: string;
  readonly worker: string;
  readonly status: CommandStatus;
  /** Why it was refused or failed (a reason code or short text); may be empty when done. */
  readonly reason: string;
  readonly iat: number;
}

export const commandResultSchema = frozen(
  root("command-result", "Command result payload (agentd-command-result+jwt)", {
    ...closed({
      v: { const: 1 },
      cmd_id: UUID,
      worker: THUMBPRINT,
      status: { enum: [...COMMAND_STATUSES] },
      reason: text(200, 0),
      iat: UNIX_TIME,
    }),
  }),
);
