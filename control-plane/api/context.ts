import type { Clock } from "../../lib/clock.ts";
import type { Logger } from "../../lib/log/logger.ts";
import type { Registry } from "../../lib/metrics/registry.ts";
import type { Timers } from "../../lib/timers.ts";
import type { KeyedNotifier } from "../http/notifier.ts";
import type { Route } from "../http/route.ts";
import type { StreamHub } from "../http/stream-hub.ts";
import type { WsRoute } from "../http/ws.ts";
import type { ControlPlaneKeys } from "../keys/load.ts";
import { DEFAULT_COMMAND_TTL_S } from "../protocol/schemas/command.ts";
import type { Store } from "../store/store.ts";
import type { PublicKeyCache } from "./key-cache.ts";

/**
 * What every endpoint group of the control plane receives (control-plane/server.ts builds it
 * once). Groups are functions `(ctx) => Route[]` in control-plane/api/*.ts, so each can be
 * tested with its own store and clock, and nothing is a module-level singleton.
 */

export interface ApiSettings {
  /** This control plane's public origin, `https://host:port` (enrollment tokens carry it). */
  readonly publicUrl: string;
  /** Enrollment token lifetime (default 3600). */
  readonly enrollmentTokenTtlS: number;
  /** Machine access token lifetime (default 900). */
  readonly accessTokenTtlS: number;
  /** Attestation challenge lifetime (default 120). */
  readonly challengeTtlS: number;
  /** Publication lifetime, capped by each consent's max_publication_ttl_s (default 86400). */
  readonly publicationTtlS: number;
  /** Allowed clock skew for proofs and heartbeats (60, DOCUMENTS.md section 1). */
  readonly maxSkewS: number;
  /** Agent binary sha256 allowlist; null: any binary (attestation stays advisory). */
  readonly binaryAllowlist: readonly string[] | null;
  /** Longest `Prefer: wait=N` honoured on the policy endpoint (default 60). */
  readonly longPollMaxS: number;
  /** Default command lifetime when the operator gives none (DEFAULT_COMMAND_TTL_S, 600). */
  readonly commandTtlS: number;
  /** How long heartbeats are kept (default 7 days); each worker's latest is always kept. */
  readonly heartbeatRetentionS: number;
}

export interface ApiContext {
  readonly store: Store;
  /** The keys in force now; `POST /v1/admin/keys/rotate` replaces them through `setKeys`. */
  keys(): ControlPlaneKeys;
  setKeys(keys: ControlPlaneKeys): void;
  readonly clock: Clock;
  /** Every wait of the endpoints and background work (tests: fake time). */
  readonly timers: Timers;
  readonly logger: Logger;
  readonly metrics: Registry;
  /** Keyed by worker id: woken when a worker's publication changes (policy long-poll). */
  readonly policyNotifier: KeyedNotifier;
  /** Open push streams by worker id (control-plane/api/stream.ts feeds it from the store). */
  readonly hub: StreamHub;
  /** Workers' and owners' public keys, built once per JWK (key-cache.ts). */
  readonly publicKeys: PublicKeyCache;
  readonly settings: ApiSettings;
}

export const DEFAULT_SETTINGS = Object.freeze({
  enrollmentTokenTtlS: 3600,
  accessTokenTtlS: 900,
  challengeTtlS: 120,
  publicationTtlS: 86_400,
  maxSkewS: 60,
  binaryAllowlist: null,
  longPollMaxS: 60,
  commandTtlS: DEFAULT_COMMAND_TTL_S,
  heartbeatRetentionS: 7 * 86_400,
} as const satisfies Omit<ApiSettings, "publicUrl">);

/** One endpoint group: its HTTP routes and, if any, its WebSocket routes. */
export interface ApiGroup {
  readonly routes: readonly Route[];
  readonly wsRoutes?: readonly WsRoute[];
  /** Background work the group runs while the server is up (re-issuing publications, push). */
  start?(): Promise<void>;
  stop?(): Promise<void>;
}
