import type { Rules, ServiceKind, Upstream } from "./documents.ts";
import type { Reason } from "./reasons.ts";

/**
 * The only way enforcement reaches the parts it controls. The Stratum proxy (and later the
 * ASIC drivers) registers a mining gate, the supervisor a services gate; the engine calls
 * `apply` with the verified rules each needs and waits for the acknowledgement, which is
 * when the part has actually stopped or started. policy-guard imports none of those parts.
 */

export interface MiningGateInput {
  /** Whether work may flow. False means: no new jobs, no shares forwarded. */
  readonly allow: boolean;
  readonly reasons: readonly Reason[];
  /** The owner's allowed upstreams (connect only to these, authorize only as their user). */
  readonly upstreams: readonly Upstream[];
  /** The owner's allowed ASIC networks (CIDR). */
  readonly networks: readonly string[];
  readonly maxWatts: number | null;
  readonly maxTempC: number | null;
  readonly jobClasses: Rules["job_classes"] | null;
}

export interface ServicesGateInput {
  /** Exactly the kinds that may run, with exactly these image ids. */
  readonly allowed: Readonly<Partial<Record<ServiceKind, string>>>;
  readonly reasons: readonly Reason[];
  /** A supervised translator may only point at one of these. */
  readonly upstreams: readonly Upstream[];
}

export interface Gate<I> {
  readonly name: string;
  /** Resolves once the part has done what the input says. */
  apply(input: I): Promise<void> | void;
}

export type MiningGate = Gate<MiningGateInput>;
export type ServicesGate = Gate<ServicesGateInput>;
