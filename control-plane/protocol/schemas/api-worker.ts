import type { CommandAction } from "../../../policy-guard/documents.ts";
import { COMMAND_ACTIONS } from "../../../policy-guard/documents.ts";
import {
  argsByAction,
  type CommandActionArgs,
  DEFAULT_COMMAND_TTL_S,
  MAX_COMMAND_TTL_S,
  MIN_COMMAND_TTL_S,
} from "./command.ts";
import { COMMAND_STATUSES, type CommandStatus } from "./command-result.ts";
import {
  closed,
  DECIMAL_QUERY,
  frozen,
  is,
  isOneOf,
  type JsonSchema,
  jws,
  POSITIVE,
  requires,
  root,
  SAFE_COUNT,
  SHA256_HEX,
  SMALL_JWS,
  THUMBPRINT,
  UNIX_TIME,
  UUID,
  when,
} from "./common.ts";
import { ANOMALY_FLAGS, type AnomalyFlag } from "./heartbeat.ts";

/** What a machine sends and receives once attested: heartbeats, commands, results, events. */

export { DEFAULT_COMMAND_TTL_S };

// ---- heartbeat -----------------------------------------------------------------------------

export interface HeartbeatRequest {
  readonly heartbeat: string;
}

export interface HeartbeatResponse {
  readonly accepted: true;
  /** The counter now stored (the heartbeat's own). */
  readonly counter: number;
  readonly flags: readonly AnomalyFlag[];
  /** Commands queued for this worker and not yet answered, oldest first. */
  readonly pending_commands: readonly string[];
  /** The control plane's clock, so that an agent can see its own skew. */
  readonly server_time: number;
  /** The latest publication version for this worker, or null: fetch the policy if newer. */
  readonly policy_version: number | null;
}

export const MAX_PENDING_COMMANDS = 100;

export const heartbeatRequestSchema = frozen(
  root("heartbeat-request", "POST /v1/workers/{id}/heartbeat request", {
    ...closed({ heartbeat: SMALL_JWS }),
  }),
);

export const heartbeatResponseSchema = frozen(
  root("heartbeat-response", "POST /v1/workers/{id}/heartbeat response", {
    ...closed({
      accepted: { const: true },
      counter: POSITIVE,
      flags: {
        type: "array",
        maxItems: ANOMALY_FLAGS.length,
        uniqueItems: true,
        items: { enum: [...ANOMALY_FLAGS] },
      },
      pending_commands: { type: "array", maxItems: MAX_PENDING_COMMANDS, items: UUID },
      server_time: UNIX_TIME,
      policy_version: { type: ["integer", "null"], minimum: 1, maximum: 9007199254740991 },
    }),
  }),
);

// ---- commands (operator side) --------------------------------------------------------------

export type CommandCreateRequest = {
  readonly worker: string;
  readonly ttl_s?: number;
} & CommandActionArgs;

export interface CommandCreateResponse {
  readonly cmd_id: string;
  readonly worker: string;
  readonly seq: number;
  /** The consent the command was issued under (its `consent_sha256`). */
  readonly consent_sha256: string;
  readonly exp: number;
  readonly command: string;
  readonly event_id: number;
}

export const commandCreateRequestSchema = frozen(
  root("command-create-request", "POST /v1/commands request", {
    ...closed(
      {
        worker: THUMBPRINT,
        action: { enum: [...COMMAND_ACTIONS] },
        args: { type: "object" },
        ttl_s: { type: "integer", minimum: MIN_COMMAND_TTL_S, maximum: MAX_COMMAND_TTL_S },
      },
      ["worker", "action", "args"],
    ),
    allOf: argsByAction(),
  }),
);

export const commandCreateResponseSchema = frozen(
  root("command-create-response", "POST /v1/commands response", {
    ...closed({
      cmd_id: UUID,
      worker: THUMBPRINT,
      seq: POSITIVE,
      consent_sha256: SHA256_HEX,
      exp: UNIX_TIME,
      command: SMALL_JWS,
      event_id: POSITIVE,
    }),
  }),
);

// ---- events: the stream and its poll twin --------------------------------------------------

export const EVENT_KINDS = [
  "command",
  "publication",
  "revocation",
  "decommission",
  "owner_rotation",
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

/**
 * One thing pushed to a worker. Ids increase in the order the control plane committed the
 * events, so "everything after id N" resumes a stream or a poll exactly.
 */
export type WorkerEvent =
  | {
      readonly id: number;
      readonly kind: "publication";
      readonly jws: string;
      /** The consent the publication countersigns, so no second request is needed. */
      readonly consent: string;
    }
  | { readonly id: number; readonly kind: Exclude<EventKind, "publication">; readonly jws: string };

const EVENT_PROPERTIES = {
  id: POSITIVE,
  kind: { enum: [...EVENT_KINDS] },
  jws: SMALL_JWS,
  consent: jws(),
};

/** `consent` comes with, and only with, a publication. */
const EVENT_RULES: JsonSchema[] = [
  when(is("kind", "publication"), requires("consent")),
  when(
    isOneOf(
      "kind",
      EVENT_KINDS.filter((k) => k !== "publication"),
    ),
    { properties: { consent: false } },
  ),
];

export const EVENT_SCHEMA = closed(EVENT_PROPERTIES, ["id", "kind", "jws"], {
  allOf: EVENT_RULES,
});

export const MAX_EVENTS_PER_PAGE = 100;

export interface WorkerCommandsQuery {
  /** The last event id the agent has processed (decimal); 0 or absent for everything. */
  readonly after?: string;
}

export interface WorkerCommandsResponse {
  readonly events: readonly WorkerEvent[];
  /** The highest event id for this worker (pass it as `after` next time). */
  readonly last_event_id: number;
}

export const workerCommandsQuerySchema = frozen(
  root("worker-commands-query", "GET /v1/workers/{id}/commands query", {
    ...closed({ after: DECIMAL_QUERY }, []),
  }),
);

export const workerCommandsResponseSchema = frozen(
  root("worker-commands-response", "GET /v1/workers/{id}/commands response", {
    ...closed({
      events: { type: "array", maxItems: MAX_EVENTS_PER_PAGE, items: EVENT_SCHEMA },
      last_event_id: SAFE_COUNT,
    }),
  }),
);

// ---- command results ------------------------------------------------------------------------

export interface CommandResultRequest {
  readonly result: string;
}

export interface CommandResultResponse {
  readonly cmd_id: string;
  readonly status: CommandStatus;
}

export const commandResultRequestSchema = frozen(
  root("command-result-request", "POST /v1/commands/{id}/result request", {
    ...closed({ result: SMALL_JWS }),
  }),
);

export const commandResultResponseSchema = frozen(
  root("command-result-response", "POST /v1/commands/{id}/result response", {
    ...closed({ cmd_id: UUID, status: { enum: [...COMMAND_STATUSES] } }),
  }),
);

// ---- WebSocket stream messages --------------------------------------------------------------

/**
 * Liveness is WebSocket's own: the control plane sends a ping control frame every 25 s and
 * drops a stream that did not answer the previous one; clients may ping too. The JSON
 * messages below are only the application's.
 */
export const STREAM_PING_INTERVAL_S = 25;
/** The control plane closes a stream whose hello has not arrived by then (code 1008). */
export const STREAM_HELLO_TIMEOUT_S = 10;

export interface StreamClientMessage {
  readonly type: "hello";
  readonly v: 1;
  /** The last event id processed (0: none): the stream resumes after it. */
  readonly after: number;
}

export type StreamServerMessage =
  | { readonly type: "ready"; readonly last_event_id: number }
  | ({ readonly type: "event" } & WorkerEvent);

/** `when type = X`: these members required, every other optional member forbidden. */
function variant(type: string, required: readonly string[], all: readonly string[]): JsonSchema {
  const forbidden = all.filter((p) => p !== "type" && !required.includes(p));
  return when(is("type", type), {
    required,
    properties: Object.fromEntries([
      ...required.map((p) => [p, true]),
      ...forbidden.map((p) => [p, false]),
    ]),
  });
}

export const streamClientMessageSchema = frozen(
  root("stream-client-message", "WS /v1/workers/{id}/stream: agent → control plane", {
    ...closed({ type: { const: "hello" }, v: { const: 1 }, after: SAFE_COUNT }),
  }),
);

const SERVER_PROPERTIES = {
  type: { enum: ["ready", "event"] },
  last_event_id: SAFE_COUNT,
  ...EVENT_PROPERTIES,
};
const SERVER_NAMES = Object.keys(SERVER_PROPERTIES);

export const streamServerMessageSchema = frozen(
  root("stream-server-message", "WS /v1/workers/{id}/stream: control plane → agent", {
    ...closed(SERVER_PROPERTIES, ["type"]),
    allOf: [
      variant("ready", ["last_event_id"], SERVER_NAMES),
      variant(
        "event",
        ["id", "kind", "jws"],
        SERVER_NAMES.filter((n) => n !== "consent"),
      ),
      ...EVENT_RULES,
    ],
  }),
);

export type { CommandAction };
