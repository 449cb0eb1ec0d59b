import { createHash } from "node:crypto";
import { canonicalize } from "../lib/json/canonical.ts";
import { SERVICE_KINDS, type ServiceKind } from "../policy-guard/documents.ts";

/**
 * What one supervised service is: how to run it (command, environment, volumes, ports, user,
 * limits), how to tell it is healthy, what it waits for, and how it is restarted. The image is
 * not here: it comes from the owner's consent (`rules.services`, an image id), and a spec may
 * only pin the same one (`image`, checked by the planner). Secrets (cookies, macaroons, RPC
 * passwords) are files, named here and read when needed, never copied into a spec or a log.
 */

export { SERVICE_KINDS, type ServiceKind };

export type HealthProbe =
  /** bitcoind's JSON-RPC `getblockchaininfo` with cookie auth: healthy when it answers. */
  | {
      readonly type: "bitcoind-rpc";
      readonly port: number;
      readonly cookieFile: string;
    }
  /** lnd's REST `GET /v1/getinfo` with a macaroon (hex in a header): the read-only one is enough. */
  | {
      readonly type: "lnd-rest";
      readonly port: number;
      readonly macaroonFile: string;
      readonly tls: boolean;
    }
  /** Core Lightning's JSON-RPC `getinfo` over its unix socket. */
  | { readonly type: "cln-rpc"; readonly socket: string }
  /** An HTTP endpoint answering 2xx (the template provider's and translator's monitors). */
  | { readonly type: "http"; readonly port: number; readonly path: string }
  /** A TCP port that accepts connections. */
  | { readonly type: "tcp"; readonly port: number }
  | { readonly type: "none" };

export interface VolumeSpec {
  /** A host path (absolute) or a named volume. */
  readonly source: string;
  readonly target: string;
  readonly readOnly: boolean;
}

export interface PortSpec {
  readonly hostIp: string;
  /** 0: none published (reachable only on the container network). */
  readonly host: number;
  readonly container: number;
}

export interface RestartSpec {
  /** First restart delay; doubles per consecutive failure up to maxMs, with full jitter. */
  readonly minMs: number;
  readonly maxMs: number;
  /** This many failures within windowMs: crash loop, no more restarts until a change. */
  readonly crashloopFailures: number;
  readonly crashloopWindowMs: number;
}

export interface ServiceSpec {
  readonly kind: ServiceKind;
  /** An image id the spec insists on; null: whatever id the consent allows. */
  readonly image: string | null;
  readonly command: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly volumes: readonly VolumeSpec[];
  readonly ports: readonly PortSpec[];
  readonly user: string | null;
  readonly memoryBytes: number | null;
  readonly cpus: number | null;
  readonly readOnlyRoot: boolean;
  readonly health: HealthProbe;
  readonly dependsOn: readonly ServiceKind[];
  readonly restart: RestartSpec;
  /** Seconds a stop waits after SIGTERM before SIGKILL. */
  readonly stopTimeoutS: number;
}

export const IMAGE_ID = /^sha256:[0-9a-f]{64}$/;

/**
 * The hash that says whether a running container still matches what is wanted: the spec and
 * the image id. A container labelled with another hash is replaced.
 */
export function specHash(spec: ServiceSpec, image: string): string {
  return createHash("sha256")
    .update(canonicalize({ spec: spec as unknown as Record<string, unknown>, image }))
    .digest("hex")
    .slice(0, 32);
}

/** Labels on every container agentd runs: what marks it as agentd's, and what it is. */
export const LABELS = {
  managed: "dev.agentd.managed",
  kind: "dev.agentd.kind",
  hash: "dev.agentd.spec-hash",
  worker: "dev.agentd.worker",
} as const;
