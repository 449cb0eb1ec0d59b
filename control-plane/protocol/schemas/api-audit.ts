import { closed, DECIMAL_QUERY, frozen, POSITIVE, root, SHA256_HEX, UNIX_TIME } from "./common.ts";

/**
 * The audit log over HTTP: the control plane's hash-chained events exactly as hashed
 * (control-plane/store/audit-hash.ts), so that a client can verify what it downloaded.
 */

export const AUDIT_TYPE = {
  type: "string",
  minLength: 1,
  maxLength: 64,
  pattern: "^[a-z][a-z0-9_]*(\\.[a-z0-9_]+)*$",
} as const;

/** `system`, or `<kind>:<id>`: `apikey:<key id>`, `worker:<worker id>`, … */
export const AUDIT_ACTOR = {
  type: "string",
  minLength: 1,
  maxLength: 80,
  pattern: "^(system|[a-z_]+:[A-Za-z0-9_-]{1,64})$",
} as const;

/** `<kind>:<id>`: `worker:<id>`, `owner:<id>`, `command:<uuid>`, `apikey:<key id>`, … */
export const AUDIT_OBJECT = {
  type: "string",
  minLength: 1,
  maxLength: 100,
  pattern: "^[a-z_]+(:[A-Za-z0-9_.:-]{1,80})?$",
} as const;

export type AuditValue =
  | string
  | number
  | boolean
  | null
  | readonly AuditValue[]
  | { readonly [k: string]: AuditValue };

/**
 * One record of the control plane's audit chain, with exactly the members that are hashed:
 * `hash` = sha256 hex of the RFC 8785 canonical JSON of {seq, at, actor, type, object, data,
 * prev_hash}; `prev_hash` of seq 1 is 64 zeros.
 */
export interface AuditEvent {
  readonly seq: number;
  readonly at: number;
  readonly actor: string;
  /** What happened, dotted: `owner.created`, `heartbeat.replay`, … */
  readonly type: string;
  readonly object: string;
  /** Details of the event; never secrets (keys, tokens and secrets appear only as hashes). */
  readonly data: { readonly [k: string]: AuditValue };
  readonly prev_hash: string;
  readonly hash: string;
}

export const MAX_AUDIT_PAGE = 1000;

export interface AuditEventsQuery {
  /** Events with seq above this (decimal); absent: from the start. */
  readonly after?: string;
  /** 1 to 1000 (decimal), default 100. */
  readonly limit?: string;
  readonly type?: string;
  readonly actor?: string;
  readonly object?: string;
}

export interface AuditEventsResponse {
  readonly events: readonly AuditEvent[];
  /** Pass as `after` for the next page; null when this page reached the end of the log. */
  readonly next_cursor: string | null;
}

export const auditEventsQuerySchema = frozen(
  root("audit-events-query", "GET /v1/audit/events query", {
    ...closed(
      {
        after: DECIMAL_QUERY,
        limit: { type: "string", minLength: 1, maxLength: 4, pattern: "^([1-9][0-9]{0,2}|1000)$" },
        type: AUDIT_TYPE,
        actor: AUDIT_ACTOR,
        object: AUDIT_OBJECT,
      },
      [],
    ),
  }),
);

/**
 * Any JSON value, bounded at every level (recursive through `$defs`): the data of an event
 * depends on its type, and what was hashed must come back unchanged.
 */
const AUDIT_VALUE = {
  type: ["string", "number", "boolean", "null", "array", "object"],
  maxLength: 4096,
  minimum: -9007199254740991,
  maximum: 9007199254740991,
  maxItems: 256,
  items: { $ref: "#/$defs/value" },
  maxProperties: 64,
  propertyNames: { type: "string", maxLength: 64 },
  additionalProperties: { $ref: "#/$defs/value" },
};

export const auditEventSchema = closed({
  seq: POSITIVE,
  at: UNIX_TIME,
  actor: AUDIT_ACTOR,
  type: AUDIT_TYPE,
  object: AUDIT_OBJECT,
  data: {
    type: "object",
    maxProperties: 64,
    propertyNames: { type: "string", maxLength: 64 },
    additionalProperties: { $ref: "#/$defs/value" },
  },
  prev_hash: SHA256_HEX,
  hash: SHA256_HEX,
});

export const auditEventsResponseSchema = frozen(
  root("audit-events-response", "GET /v1/audit/events response", {
    ...closed({
      events: { type: "array", maxItems: MAX_AUDIT_PAGE, items: auditEventSchema },
      next_cursor: { ...DECIMAL_QUERY, type: ["string", "null"] },
    }),
    $defs: { value: AUDIT_VALUE },
  }),
);
