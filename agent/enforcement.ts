import type { KeyObject } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { EnforcementEngine } from "../policy-guard/engine.ts";
import { GUARD_STATE_FILE } from "../policy-guard/state.ts";
import type { AgentBase } from "./agent-context.ts";
import { ENROLLMENT_FILE } from "./enrollment.ts";
import { MACHINE_KEY_FILE } from "./identity.ts";

/**
 * The policy guard's enforcement engine as `agentd run` runs it: on the stored bundle, the
 * owner key pinned at enrollment and the control plane's publication keys from the pinned key
 * set, reading the data path's facts, recording into the agent's audit log. An owner-signed
 * decommission (DOCUMENTS.md section 5) stops everything and wipes the credentials; then
 * `terminated` resolves and the caller stops the agent.
 */
export function createEnforcement(
  ctx: AgentBase,
  o: {
    readonly owner: KeyObject;
    readonly publication: readonly KeyObject[];
    readonly facts: () => Record<string, unknown>;
  },
): { readonly engine: EnforcementEngine; readonly terminated: Promise<void> } {
  let terminate: () => void = () => {};
  const terminated = new Promise<void>((resolve) => {
    terminate = resolve;
  });
  const engine = new EnforcementEngine({
    stateFile: join(ctx.stateDir, GUARD_STATE_FILE),
    worker: ctx.workerId,
    trust: { owner: o.owner, publication: [...o.publication] },
    clock: ctx.clock,
    timers: ctx.timers,
    facts: o.facts,
    audit: { append: (e) => ctx.audit.append(e) },
    log: ctx.log.child({ component: "policy-guard" }),
    onDecommission: () => {
      for (const f of [MACHINE_KEY_FILE, ENROLLMENT_FILE])
        rmSync(join(ctx.stateDir, f), { force: true });
      ctx.audit.append({ type: "credentials.wiped", files: [MACHINE_KEY_FILE, ENROLLMENT_FILE] });
      terminate();
    },
  });
  return { engine, terminated };
}
