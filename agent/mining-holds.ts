import type { MiningGate, MiningGateInput } from "../policy-guard/gates.ts";
import type { Reason } from "../policy-guard/reasons.ts";

/**
 * Reasons on this machine, outside the owner's documents, that stop mining even where the
 * decision allows it: the audit log cannot be written, the machine is quarantined, no
 * assignment, or a pause (the operator's on the machine, or a remote command's). The policy
 * guard's decision stays what the documents say; this gate sits between the engine and the
 * data path and denies while any hold is on. Holds only ever deny: the owner's consent
 * remains the only thing that can allow.
 */
export type HoldReason = Extract<
  Reason,
  | "agent.audit_unwritable"
  | "agent.quarantined"
  | "agent.unassigned"
  | "agent.paused"
  | "agent.paused_remotely"
>;

export interface HeldGate extends MiningGate {
  hold(reason: HoldReason): void;
  release(reason: HoldReason): void;
  holds(): readonly HoldReason[];
  /**
   * The upstream the control plane assigned, tried first (it must be one of the decision's
   * upstreams, exactly; anything else is ignored). Null: the owner's order.
   */
  prefer(upstream: { readonly url: string; readonly user: string } | null): void;
  /** What the data path was last given: the decision with the holds applied. */
  effective(): { readonly allow: boolean; readonly reasons: readonly Reason[] } | null;
}

export function holdingGate(inner: MiningGate, onChange: () => void = () => {}): HeldGate {
  const held = new Set<HoldReason>();
  let last: MiningGateInput | null = null;
  let applied: MiningGateInput | null = null;
  let preferred: { readonly url: string; readonly user: string } | null = null;

  const ordered = (input: MiningGateInput): MiningGateInput => {
    if (preferred === null) return input;
    const p = preferred;
    const i = input.upstreams.findIndex((u) => u.url === p.url && u.user === p.user);
    if (i <= 0) return input;
    const first = input.upstreams[i];
    if (first === undefined) return input;
    return { ...input, upstreams: [first, ...input.upstreams.filter((_, k) => k !== i)] };
  };
  const withHolds = (raw: MiningGateInput): MiningGateInput => {
    const input = ordered(raw);
    return held.size === 0
      ? input
      : {
          ...input,
          allow: false,
          reasons: [...held, ...input.reasons.filter((r) => !held.has(r as HoldReason))],
        };
  };

  const drive = () => {
    if (last === null) return; // fail closed: the data path denies until the first decision
    applied = withHolds(last);
    const r = inner.apply(applied);
    if (r instanceof Promise) r.catch(() => {});
    onChange();
  };

  return {
    name: `${inner.name} (with local holds)`,
    apply(input) {
      last = input;
      applied = withHolds(input);
      return inner.apply(applied);
    },
    hold(reason) {
      if (held.has(reason)) return;
      held.add(reason);
      drive();
    },
    release(reason) {
      if (!held.delete(reason)) return;
      drive();
    },
    holds: () => [...held],
    prefer(upstream) {
      const same =
        upstream === preferred ||
        (upstream !== null &&
          preferred !== null &&
          upstream.url === preferred.url &&
          upstream.user === preferred.user);
      if (same) return;
      preferred = upstream === null ? null : { url: upstream.url, user: upstream.user };
      drive();
    },
    effective: () => (applied === null ? null : { allow: applied.allow, reasons: applied.reasons }),
  };
}
