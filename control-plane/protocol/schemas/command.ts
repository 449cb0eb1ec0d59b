import {
  COMMAND_ACTIONS,
  type CommandAction,
  SERVICE_KINDS,
  type ServiceKind,
} from "../../../policy-guard/documents.ts";
import {
  AGENT_VERSION,
  closed,
  frozen,
  is,
  type JsonSchema,
  POSITIVE,
  root,
  SHA256_HEX,
  THUMBPRINT,
  text,
  UNIX_TIME,
  UUID,
  when,
} from "./common.ts";

/**
 * Command (`agentd-command+jwt`, signed by a control-plane `command` key). Each action has
 * its own closed `args`: a command can name a service or a release, never an image, an
 * environment, a path or a shell line.
 */

export type { CommandAction, ServiceKind };

export interface CommandArgsByAction {
  readonly "mining.pause": Readonly<Record<string, never>>;
  readonly "mining.resume": Readonly<Record<string, never>>;
  readonly "service.start": { readonly service: ServiceKind };
  readonly "service.stop": { readonly service: ServiceKind };
  readonly "service.restart": { readonly service: ServiceKind };
  readonly "agent.update": { readonly version: string; readonly manifest_sha256: string };
  readonly "agent.rotate_key": Readonly<Record<string, never>>;
  readonly "worker.quarantine": { readonly reason: string };
}

/** `{action, args}` as a discriminated union: `args` narrows with `action`. */
export type CommandActionArgs = {
  readonly [A in CommandAction]: { readonly action: A; readonly args: CommandArgsByAction[A] };
}[CommandAction];

export type CommandPayload = {
  readonly v: 1;
  readonly cmd_id: string;
  readonly worker: string;
  readonly iat: number;
  readonly exp: number;
  /**
   * The identity of the consent the command was issued under (the consent in force at the
   * control plane). The agent runs it only while that consent is in force on the machine.
   */
  readonly consent_sha256: string;
  /**
   * Strictly increasing per worker and consent: the agent executes a command at most once.
   * A newer consent starts a fresh space (docs/protocol.md, "Commands").
   */
  readonly seq: number;
} & CommandActionArgs;

const NO_ARGS = closed({});
const SERVICE_ARGS = closed({ service: { enum: [...SERVICE_KINDS] } });

export const COMMAND_ARGS_SCHEMAS: Readonly<Record<CommandAction, JsonSchema>> = {
  "mining.pause": NO_ARGS,
  "mining.resume": NO_ARGS,
  "service.start": SERVICE_ARGS,
  "service.stop": SERVICE_ARGS,
  "service.restart": SERVICE_ARGS,
  "agent.update": closed({ version: AGENT_VERSION, manifest_sha256: SHA256_HEX }),
  "agent.rotate_key": NO_ARGS,
  "worker.quarantine": closed({ reason: text(200) }),
};

/**
 * `args` checked against its action: one `if action = X then args: schema X` per action, so a
 * mismatch is reported at the member of `args` that is wrong (not as "no branch matched").
 */
export function argsByAction(): JsonSchema[] {
  return COMMAND_ACTIONS.map((action) =>
    when(is("action", action), { properties: { args: COMMAND_ARGS_SCHEMAS[action] } }),
  );
}

/** Command lifetimes: long enough to cross a poll interval, short enough to go stale. */
export const MIN_COMMAND_TTL_S = 10;
export const MAX_COMMAND_TTL_S = 86_400;
export const DEFAULT_COMMAND_TTL_S = 600;

export const commandSchema = frozen(
  root("command", "Command payload (agentd-command+jwt)", {
    ...closed({
      v: { const: 1 },
      cmd_id: UUID,
      worker: THUMBPRINT,
      action: { enum: [...COMMAND_ACTIONS] },
      args: { type: "object" },
      iat: UNIX_TIME,
      exp: UNIX_TIME,
      consent_sha256: SHA256_HEX,
      seq: POSITIVE,
    }),
    allOf: argsByAction(),
  }),
);
