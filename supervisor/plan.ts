import { SERVICE_KINDS, type ServiceKind, type ServiceSpec, specHash } from "./spec.ts";

/**
 * The planner: pure. From what should run (the kinds the owner's consent allows, each with
 * its spec and the allowed image id), what runs (agentd's own containers or processes, found
 * by their labels; nothing else is ever passed in, so nothing else is ever touched) and the
 * supervisor's own state per kind (an operator's manual stop, a crash loop, the restart
 * backoff, the health of dependencies), it returns the steps as data. Executors apply them;
 * tests check plans without any driver.
 *
 * Rules, per kind:
 * - not allowed: every container of it is stopped and removed;
 * - allowed: exactly one container, created from the allowed image with the current spec
 *   (a container with another spec hash — a changed spec or image — is replaced; extra ones,
 *   after an agent restart or a driver hiccup, are removed: no duplicates);
 * - it runs unless the operator stopped it by hand, it is in a crash loop, or a service it
 *   depends on is not healthy (then it is stopped, and started again once that service is);
 * - a start waits for its restart backoff.
 * Stops and removals come first, then creates and starts in dependency order (bitcoind before
 * the services that need it).
 */

export interface Actual {
  readonly id: string;
  readonly kind: ServiceKind;
  readonly image: string;
  /** The spec-hash label it was created with. */
  readonly hash: string;
  readonly running: boolean;
  /** When it was created (ms), to keep the newest of duplicates. */
  readonly createdAt: number;
}

export interface Desired {
  readonly spec: ServiceSpec;
  readonly image: string;
}

export interface KindControl {
  /** Stopped by an operator: not started again until an operator starts it. */
  readonly manualStop?: boolean;
  /** Too many failures in the window: no restarts until a change or an operator's start. */
  readonly crashloop?: boolean;
  /** A restart must not happen before this time (ms): the backoff. */
  readonly notBefore?: number;
}

export interface PlanInput {
  readonly desired: ReadonlyMap<ServiceKind, Desired>;
  readonly actual: readonly Actual[];
  readonly control: Readonly<Partial<Record<ServiceKind, KindControl>>>;
  /**
   * Whether a kind is running and healthy (for its dependents); null: not known yet (not
   * probed since the agent started). A dependent waits for a healthy dependency to start, but
   * a running one is stopped only for a dependency known to be unhealthy — so an agent that
   * restarts and adopts its services does not stop them before the first probe.
   */
  readonly healthy: (kind: ServiceKind) => boolean | null;
  readonly now: number;
}

export type Step =
  | {
      readonly op: "stop";
      readonly kind: ServiceKind;
      readonly id: string;
      readonly reason: string;
    }
  | {
      readonly op: "remove";
      readonly kind: ServiceKind;
      readonly id: string;
      readonly reason: string;
    }
  | {
      readonly op: "create";
      readonly kind: ServiceKind;
      readonly spec: ServiceSpec;
      readonly image: string;
      readonly hash: string;
    }
  /** `id` null: the container the `create` before it made. */
  | {
      readonly op: "start";
      readonly kind: ServiceKind;
      readonly id: string | null;
      readonly reason: string;
    };

/** Why a kind does not run now (for status and heartbeats). */
export type Hold =
  | { readonly kind: ServiceKind; readonly why: "manual" | "crashloop" }
  | { readonly kind: ServiceKind; readonly why: "dependency"; readonly on: ServiceKind }
  | { readonly kind: ServiceKind; readonly why: "backoff"; readonly until: number };

export interface Plan {
  readonly steps: readonly Step[];
  readonly holds: readonly Hold[];
}

/** Kinds in an order where each comes after what it depends on (the fixed kinds' order). */
export function dependencyOrder(desired: ReadonlyMap<ServiceKind, Desired>): ServiceKind[] {
  const out: ServiceKind[] = [];
  const visit = (k: ServiceKind, path: readonly ServiceKind[]) => {
    if (out.includes(k) || path.includes(k)) return; // a cycle is cut (specs-file refuses self)
    for (const d of desired.get(k)?.spec.dependsOn ?? []) visit(d, [...path, k]);
    out.push(k);
  };
  for (const k of SERVICE_KINDS) visit(k, []);
  return out;
}

export function plan(input: PlanInput): Plan {
  // Stops per kind, emitted in reverse dependency order (lnd before the bitcoind it needs).
  const stopsByKind: Step[][] = [];
  const starts: Step[] = [];
  // Dependents stopped because what they need is down come last: the dependency's own
  // restart must not wait for them (bench/supervisor.ts measured 0.3–0.7 s of it).
  const holdStops: Step[] = [];
  const holds: Hold[] = [];
  for (const kind of dependencyOrder(input.desired)) {
    const stops: Step[] = [];
    stopsByKind.push(stops);
    const mine = input.actual
      .filter((a) => a.kind === kind)
      // the one to keep first: running, then newest
      .sort((a, b) => Number(b.running) - Number(a.running) || b.createdAt - a.createdAt);
    const want = input.desired.get(kind);
    const retire = (a: Actual, reason: string) => {
      if (a.running) stops.push({ op: "stop", kind, id: a.id, reason });
      stops.push({ op: "remove", kind, id: a.id, reason });
    };
    if (want === undefined) {
      for (const a of mine) retire(a, "not allowed by the consent");
      continue;
    }
    const hash = specHash(want.spec, want.image);
    const keep = mine.find((a) => a.hash === hash && a.image === want.image) ?? null;
    for (const a of mine) {
      if (a !== keep)
        retire(a, a.hash === hash ? "a duplicate" : "outdated (spec or image changed)");
    }
    const c = input.control[kind] ?? {};
    const running = keep?.running === true;
    const missing = want.spec.dependsOn.find(
      (d) =>
        !input.desired.has(d) || (running ? input.healthy(d) === false : input.healthy(d) !== true),
    );
    let hold: Hold | null = null;
    if (c.manualStop === true) hold = { kind, why: "manual" };
    else if (c.crashloop === true) hold = { kind, why: "crashloop" };
    else if (missing !== undefined) hold = { kind, why: "dependency", on: missing };
    if (hold !== null) {
      holds.push(hold);
      if (keep?.running === true) {
        const reason =
          hold.why === "dependency"
            ? `waiting for ${hold.on}`
            : hold.why === "manual"
              ? "stopped by an operator"
              : "crash loop";
        (hold.why === "dependency" ? holdStops : stops).push({
          op: "stop",
          kind,
          id: keep.id,
          reason,
        });
      }
      continue;
    }
    if (keep?.running === true) continue;
    const notBefore = c.notBefore ?? 0;
    if (input.now < notBefore) {
      holds.push({ kind, why: "backoff", until: notBefore });
      continue;
    }
    if (keep === null) {
      starts.push({ op: "create", kind, spec: want.spec, image: want.image, hash });
      starts.push({ op: "start", kind, id: null, reason: "allowed by the consent" });
    } else {
      starts.push({ op: "start", kind, id: keep.id, reason: "not running" });
    }
  }
  return { steps: [...stopsByKind.reverse().flat(), ...starts, ...holdStops.reverse()], holds };
}
