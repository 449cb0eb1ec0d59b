import { join } from "node:path";
import type { Logger } from "../lib/log/logger.ts";
import type { ServicesGate, ServicesGateInput } from "../policy-guard/gates.ts";
import type { Desired } from "./plan.ts";
import type { Reconciler } from "./reconciler.ts";
import type { ServiceKind, ServiceSpec } from "./spec.ts";
import { translatorUpstream, writeTranslatorConfig } from "./translator-config.ts";

/**
 * The supervisor as the policy guard's services gate: exactly the kinds the decision's
 * `services` part allows run, each from exactly the image id it names; a kind no longer
 * allowed is stopped. A mining denial (a schedule, a lost control plane) does not reach this
 * gate: the decision keeps services and mining apart (policy-guard/decision.ts).
 *
 * A kind is refused — not run, and said why — when the services file pins another image than
 * the consent allows, or, for the translator, when the consent names no upstream it can use
 * (translator-config.ts). The translator's upstream goes into its environment as well, so a
 * new upstream is a new spec hash: the running translator is replaced, never left pointing
 * at the old pool.
 *
 * `apply` returns once the reconciler has the new target; it does not wait for containers to
 * stop (bitcoind may take minutes to flush): the policy guard drives every gate at once, and a
 * revocation's mining stop must not queue behind a service's shutdown.
 */
export interface SupervisorGate extends ServicesGate {
  /** Kinds allowed by the consent that do not run, and why. */
  refused(): Readonly<Partial<Record<ServiceKind, string>>>;
}

export function supervisorGate(o: {
  readonly reconciler: Reconciler;
  readonly specs: Readonly<Record<ServiceKind, ServiceSpec>>;
  readonly dataDir: string;
  readonly logger: Logger;
}): SupervisorGate {
  let refused: Partial<Record<ServiceKind, string>> = {};
  return {
    name: "supervisor",
    refused: () => refused,
    apply(input: ServicesGateInput) {
      const target = new Map<ServiceKind, Desired>();
      const why: Partial<Record<ServiceKind, string>> = {};
      for (const [k, image] of Object.entries(input.allowed) as [ServiceKind, string][]) {
        let spec = o.specs[k];
        if (spec.image !== null && spec.image !== image) {
          why[k] = `the services file pins ${spec.image}, the consent allows ${image}`;
          continue;
        }
        if (k === "translator") {
          const u = translatorUpstream(input.upstreams);
          if (u === null) {
            why[k] = "the consent names no sv2+tcp upstream with an authority key";
            continue;
          }
          const elsewhere = translatorPointedElsewhere(spec, o.dataDir);
          if (elsewhere !== null) {
            why[k] = elsewhere;
            continue;
          }
          writeTranslatorConfig(join(o.dataDir, "translator", "config", "translator.toml"), u);
          spec = {
            ...spec,
            env: {
              ...spec.env,
              AGENTD_UPSTREAM: `${u.host}:${u.port}`,
              AGENTD_UPSTREAM_USER: u.user,
            },
          };
        }
        target.set(k, { spec, image });
      }
      refused = why;
      for (const [k, reason] of Object.entries(why))
        o.logger.warn({ kind: k, reason }, "service not run");
      void o.reconciler.setTarget(target);
    },
  };
}

/**
 * A translator may only read the configuration the supervisor writes: its command names that
 * file (`-c`/`--config`) — the host path, or /config/translator.toml with the supervisor's
 * config directory mounted there — and nothing else. Anything else could point it at a pool
 * the consent does not list. Null when it is fine, else why not.
 */
export function translatorPointedElsewhere(spec: ServiceSpec, dataDir: string): string | null {
  const hostDir = join(dataDir, "translator", "config");
  const hostFile = join(hostDir, "translator.toml");
  const mounted = spec.volumes.some((v) => v.target === "/config" && v.source === hostDir);
  const configs: string[] = [];
  spec.command.forEach((a, i) => {
    if (a === "-c" || a === "--config") configs.push(spec.command[i + 1] ?? "");
    else if (a.startsWith("--config=")) configs.push(a.slice("--config=".length));
  });
  const ok =
    configs.length === 1 &&
    (configs[0] === hostFile || (mounted && configs[0] === "/config/translator.toml"));
  if (ok) return null;
  return `the translator must read the configuration agentd writes (-c ${hostFile}, or /config/translator.toml with ${hostDir} mounted at /config)`;
}
