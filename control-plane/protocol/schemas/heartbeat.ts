import { SERVICE_KINDS, type ServiceKind } from "../../../policy-guard/documents.ts";
import {
  AGENT_VERSION,
  closed,
  frozen,
  POSITIVE,
  root,
  SERVICE_STATUSES,
  SHA256_HEX,
  THUMBPRINT,
  UNIX_TIME,
  UPSTREAM_URL,
} from "./common.ts";

/** Heartbeat (`agentd-heartbeat+jwt`, signed by the machine key). */

export const AGENT_STATES = [
  "UNREGISTERED",
  "REGISTERED",
  "ATTESTED",
  "POLICY_SYNCED",
  "ELIGIBLE",
  "ASSIGNED",
  "MINING",
  "PAUSED",
  "REVOKED",
  "QUARANTINED",
  "TERMINATED",
] as const;
export type AgentState = (typeof AGENT_STATES)[number];

export type ServiceStatus = (typeof SERVICE_STATUSES)[number];

export const UPSTREAM_STATES = ["connected", "connecting", "unreachable"] as const;

/** Whether the agent's data path reaches the upstream it uses (stratum-client/reachability.ts). */
export interface HeartbeatUpstream {
  /** The upstream in use, or the one whose attempt failed last. */
  readonly url: string;
  readonly state: (typeof UPSTREAM_STATES)[number];
  /** Unix seconds: when the state began; for unreachable, the first failed attempt. */
  readonly since: number;
  /** The last failure (an errno code such as ECONNREFUSED, or a reason such as unauthorized). */
  readonly last_error: string | null;
}

export interface HeartbeatTelemetry {
  readonly asics: number;
  readonly hashrate_hs: number;
  readonly shares_accepted: number;
  readonly shares_rejected: number;
  /** Seconds since the agent process started. */
  readonly uptime_s: number;
  /** Optional (older agents send none); null while the data path dials no upstream. */
  readonly upstream?: HeartbeatUpstream | null;
}

export interface HeartbeatPayload {
  readonly v: 1;
  readonly worker: string;
  /** Strictly increasing per worker, from 1; persisted by the agent. */
  readonly counter: number;
  readonly iat: number;
  readonly state: AgentState;
  readonly policy: { readonly version: number | null; readonly consent_sha256: string | null };
  readonly decision: { readonly mining: boolean; readonly reasons: readonly string[] };
  readonly telemetry: HeartbeatTelemetry;
  readonly services: Readonly<Partial<Record<ServiceKind, ServiceStatus>>>;
  readonly agent: { readonly version: string; readonly binary_sha256: string };
  /** Hash of the last record of the agent's audit log, or null before the first. */
  readonly audit_head: string | null;
  /**
   * Optional: node-reward eligibility as the agent tracks it (docs/eligibility.md).
   * Self-reported, so advisory like all telemetry.
   */
  readonly eligibility?: {
    readonly eligible: boolean;
    readonly reasons: readonly string[];
    readonly uptime_ratio: number;
  };
  /**
   * Optional: the adopted miners in brief (agent/fleet.ts), sent only while there are any.
   * Self-reported, so advisory like all telemetry.
   */
  readonly fleet?: HeartbeatFleet;
}

export const FLEET_MODES = ["normal", "sleep", "low", "high", "unknown", "unread"] as const;

export interface HeartbeatFleet {
  readonly adopted: number;
  /** How many miners are in each mode as last read (`unread`: never read, or failing). */
  readonly modes: Readonly<Partial<Record<(typeof FLEET_MODES)[number], number>>>;
  /** The measured watts the policy guard saw, or null when the fleet gives none. */
  readonly measured_watts: number | null;
  readonly max_temp_c: number | null;
  /** Actions on the machines not confirmed by a read-back yet. */
  readonly unconfirmed: number;
  /** Miners whose slots the agent cannot own (they may hash elsewhere when denied). */
  readonly slots_not_owned: number;
}

/** A policy-guard reason code (policy-guard/reasons.ts), e.g. `publication.expired`. */
const REASON_CODE = {
  type: "string",
  minLength: 1,
  maxLength: 64,
  pattern: "^[a-z][a-z0-9_]*(\\.[a-z0-9_]+)*$",
};

const COUNT = { type: "integer", minimum: 0, maximum: 9007199254740991 };

export const heartbeatSchema = frozen(
  root("heartbeat", "Heartbeat payload (agentd-heartbeat+jwt)", {
    ...closed(
      {
        v: { const: 1 },
        worker: THUMBPRINT,
        counter: POSITIVE,
        iat: UNIX_TIME,
        state: { enum: [...AGENT_STATES] },
        policy: closed({
          version: { type: ["integer", "null"], minimum: 1, maximum: 9007199254740991 },
          consent_sha256: { ...SHA256_HEX, type: ["string", "null"] },
        }),
        decision: closed({
          mining: { type: "boolean" },
          reasons: { type: "array", maxItems: 32, uniqueItems: true, items: REASON_CODE },
        }),
        telemetry: closed(
          {
            asics: { type: "integer", minimum: 0, maximum: 1_000_000 },
            // 1e21 H/s is far beyond the whole Bitcoin network: a bound, not a guess.
            hashrate_hs: { type: "number", minimum: 0, maximum: 1e21 },
            shares_accepted: COUNT,
            shares_rejected: COUNT,
            uptime_s: { type: "integer", minimum: 0, maximum: 3_153_600_000 },
            // Optional (older agents send none); null while the data path dials no upstream.
            upstream: {
              ...closed({
                url: UPSTREAM_URL,
                state: { enum: [...UPSTREAM_STATES] },
                since: UNIX_TIME,
                last_error: {
                  type: ["string", "null"],
                  minLength: 1,
                  maxLength: 64,
                  pattern: "^[A-Za-z0-9_.-]+$",
                },
              }),
              type: ["object", "null"],
            },
          },
          ["asics", "hashrate_hs", "shares_accepted", "shares_rejected", "uptime_s"],
        ),
        services: closed(
          Object.fromEntries(SERVICE_KINDS.map((k) => [k, { enum: [...SERVICE_STATUSES] }])),
          [],
        ),
        agent: closed({ version: AGENT_VERSION, binary_sha256: SHA256_HEX }),
        audit_head: { ...SHA256_HEX, type: ["string", "null"] },
        eligibility: closed({
          eligible: { type: "boolean" },
          reasons: { type: "array", maxItems: 16, uniqueItems: true, items: REASON_CODE },
          uptime_ratio: { type: "number", minimum: 0, maximum: 1 },
        }),
        fleet: closed({
          adopted: { type: "integer", minimum: 1, maximum: 1_000_000 },
          modes: closed(
            Object.fromEntries(
              FLEET_MODES.map((m) => [m, { type: "integer", minimum: 0, maximum: 1_000_000 }]),
            ),
            [],
          ),
          measured_watts: { type: ["number", "null"], minimum: 0, maximum: 1e9 },
          max_temp_c: { type: ["number", "null"], minimum: -100, maximum: 1000 },
          unconfirmed: { type: "integer", minimum: 0, maximum: 1_000_000 },
          slots_not_owned: { type: "integer", minimum: 0, maximum: 1_000_000 },
        }),
      },
      [
        "v",
        "worker",
        "counter",
        "iat",
        "state",
        "policy",
        "decision",
        "telemetry",
        "services",
        "agent",
        "audit_head",
      ],
    ),
  }),
);

/**
 * What the control plane noticed about an accepted heartbeat (docs/protocol.md defines each;
 * documents/heartbeat.ts computes them).
 */
export const ANOMALY_FLAGS = ["counter_gap", "clock_skew", "telemetry_inconsistent"] as const;
export type AnomalyFlag = (typeof ANOMALY_FLAGS)[number];
