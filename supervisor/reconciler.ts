import type { Clock } from "../lib/clock.ts";
import type { Logger } from "../lib/log/logger.ts";
import type { TimerHandle, Timers } from "../lib/timers.ts";
import type { DriverEvent, EventSubscription, ServiceDriver } from "./driver.ts";
import {
  type Actual,
  type Desired,
  type Hold,
  type KindControl,
  type Plan,
  plan,
  type Step,
} from "./plan.ts";
import { SERVICE_KINDS, type ServiceKind, specHash } from "./spec.ts";

/**
 * Keeps the services as the target says, on an injected driver: plan (plan.ts, pure), then
 * apply, one apply at a time; a newer target, an event or a health change while applying
 * makes the running apply stop between two steps and plan again from what runs then.
 *
 * Recovery: the driver's event stream (re-subscribed when it ends) reports a service that
 * died; the supervisor restarts it after a backoff with full jitter, per kind
 * (min·2^n up to max); N failures within the window is a crash loop: an alert, no more
 * restarts until its spec or image changes or an operator starts it. A stop by an operator
 * holds until an operator start. Services wait for the ones they depend on to be healthy, and
 * are stopped and started again around that service's trouble. When the driver's backend (the
 * Docker Engine API's socket) is unreachable the reconciler keeps retrying and, besides,
 * reconciles every `resyncMs` — so it catches up within seconds of its return, and finds
 * anything an event missed. All waiting is on the injected `timers` (lib/timers.ts).
 */

export interface ReconcilerOptions {
  readonly driver: ServiceDriver;
  readonly clock: Clock;
  /** Backoffs, retries, the resync and the health rounds (production: backgroundTimers). */
  readonly timers: Timers;
  readonly logger: Logger;
  /** Whether a kind answers its health probe now (health.ts); a throw counts as unhealthy. */
  readonly probe: (kind: ServiceKind, desired: Desired) => Promise<boolean>;
  readonly random?: () => number;
  /** Reconcile at least this often (default 10 s). */
  readonly resyncMs?: number;
  /** Probe health this often (default 5 s). */
  readonly healthMs?: number;
  /** A crash loop, a restart, a failure to apply: for the audit log, metrics and alerts. */
  readonly onEvent?: (e: SupervisorEvent) => void;
}

export type SupervisorEvent =
  | { readonly type: "service.started"; readonly kind: ServiceKind; readonly reason: string }
  | { readonly type: "service.stopped"; readonly kind: ServiceKind; readonly reason: string }
  | {
      readonly type: "service.exited";
      readonly kind: ServiceKind;
      readonly exitCode: number | null;
    }
  | {
      readonly type: "service.restart_scheduled";
      readonly kind: ServiceKind;
      readonly inMs: number;
      readonly failures: number;
    }
  | {
      readonly type: "service.crashloop";
      readonly kind: ServiceKind;
      readonly failures: number;
      readonly windowMs: number;
    }
  | { readonly type: "service.image_missing"; readonly kind: ServiceKind; readonly image: string }
  | { readonly type: "driver.unreachable"; readonly error: string }
  | { readonly type: "driver.reachable" };

export type ServiceState = "running" | "stopped" | "unhealthy" | "absent";

export interface ServiceStatus {
  readonly kind: ServiceKind;
  readonly allowed: boolean;
  readonly image: string | null;
  readonly state: ServiceState;
  readonly healthy: boolean;
  readonly hold: Hold["why"] | null;
  readonly restarts: number;
  readonly lastExitCode: number | null;
}

interface KindState {
  manualStop: boolean;
  crashloop: boolean;
  /** Failure times within the crash-loop window. */
  failures: number[];
  /** Consecutive failures (for the backoff); reset when it has run a minute. */
  consecutive: number;
  notBefore: number;
  restarts: number;
  lastExitCode: number | null;
  startedAt: number;
  /** The hash it was last wanted with: a change clears the crash loop. */
  hash: string | null;
}

export class Reconciler {
  readonly #o: ReconcilerOptions;
  readonly #timers: Timers;
  #target = new Map<ServiceKind, Desired>();
  readonly #kinds = new Map<ServiceKind, KindState>();
  readonly #healthy = new Map<ServiceKind, boolean>();
  /** Containers the supervisor is stopping or removing itself: their exits are not failures. */
  readonly #intended = new Set<string>();
  #actual: Actual[] = [];
  /** Whether the driver has listed once: before, health is not known, not "down". */
  #listed = false;
  #lastPlan: Plan = { steps: [], holds: [] };
  #generation = 0;
  #running: Promise<void> | null = null;
  #again = false;
  #closed = false;
  #driverUp = true;
  #driverFailures = 0;
  #retryTimer: TimerHandle | null = null;
  #resyncTimer: TimerHandle | null = null;
  #healthTimer: TimerHandle | null = null;
  #eventsTimer: TimerHandle | null = null;
  /**
   * The wake-ups at the end of backoffs, by the instant they wake for: every plan during a
   * backoff asks again, and one timer per instant is enough. Cleared on close like the others.
   */
  readonly #wakeTimers = new Map<number, TimerHandle>();
  #subscription: EventSubscription | null = null;

  constructor(o: ReconcilerOptions) {
    this.#o = o;
    this.#timers = o.timers;
    for (const k of SERVICE_KINDS) {
      this.#kinds.set(k, {
        manualStop: false,
        crashloop: false,
        failures: [],
        consecutive: 0,
        notBefore: 0,
        restarts: 0,
        lastExitCode: null,
        startedAt: 0,
        hash: null,
      });
    }
  }

  /** Starts watching events, health and the periodic resync; reconciles at once. */
  start(): void {
    this.#subscribe();
    this.#scheduleResync();
    this.#scheduleHealth(0);
    this.kick("start");
  }

  /** What should run: exactly these kinds, each with its spec and allowed image id. */
  setTarget(target: ReadonlyMap<ServiceKind, Desired>): Promise<void> {
    this.#target = new Map(target);
    for (const [kind, d] of this.#target) {
      const st = this.#state(kind);
      const hash = specHash(d.spec, d.image);
      if (st.hash !== hash) {
        // A change of spec or image is a new chance: the crash loop and backoff start over.
        st.hash = hash;
        st.crashloop = false;
        st.failures = [];
        st.consecutive = 0;
        st.notBefore = 0;
      }
    }
    return this.kick("target");
  }

  /** An operator's stop: held until an operator's start. */
  stopService(kind: ServiceKind): Promise<void> {
    this.#state(kind).manualStop = true;
    return this.kick(`operator stop ${kind}`);
  }

  /** An operator's start: lifts a manual stop and a crash loop. */
  startService(kind: ServiceKind): Promise<void> {
    const st = this.#state(kind);
    st.manualStop = false;
    st.crashloop = false;
    st.failures = [];
    st.consecutive = 0;
    st.notBefore = 0;
    return this.kick(`operator start ${kind}`);
  }

  /** An operator's restart: stopped (not a failure), then started by the next plan. */
  async restartService(kind: ServiceKind): Promise<void> {
    const st = this.#state(kind);
    st.manualStop = false;
    st.crashloop = false;
    st.notBefore = 0;
    await this.#settled();
    for (const a of this.#actual.filter((x) => x.kind === kind && x.running)) {
      this.#intended.add(a.id);
      await this.#o.driver.stop(a.id, this.#target.get(kind)?.spec.stopTimeoutS ?? 30);
    }
    await this.kick(`operator restart ${kind}`);
  }

  async logs(kind: ServiceKind, lines: number): Promise<string[]> {
    const a = this.#actual.find((x) => x.kind === kind);
    return a === undefined ? [] : this.#o.driver.logs(a.id, lines);
  }

  status(): ServiceStatus[] {
    return SERVICE_KINDS.map((kind) => {
      const st = this.#state(kind);
      const a =
        this.#actual.find((x) => x.kind === kind && x.running) ??
        this.#actual.find((x) => x.kind === kind);
      const healthy = this.#healthy.get(kind) === true;
      const hold = this.#lastPlan.holds.find((h) => h.kind === kind);
      const state: ServiceState =
        a === undefined ? "absent" : !a.running ? "stopped" : healthy ? "running" : "unhealthy";
      return {
        kind,
        allowed: this.#target.has(kind),
        image: this.#target.get(kind)?.image ?? null,
        state,
        healthy,
        hold: st.crashloop ? "crashloop" : st.manualStop ? "manual" : (hold?.why ?? null),
        restarts: st.restarts,
        lastExitCode: st.lastExitCode,
      };
    });
  }

  /** Whether the driver answered the last time it was asked. */
  get driverUp(): boolean {
    return this.#driverUp;
  }

  /**
   * Plans and applies again; resolves when an apply that started after this call has
   * finished (or failed: the error is logged and retried).
   */
  kick(reason: string): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#generation++;
    if (this.#running !== null) {
      this.#again = true;
      return this.#running.then(() => this.#settled());
    }
    this.#running = this.#loop(reason).finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const t of [this.#retryTimer, this.#resyncTimer, this.#healthTimer, this.#eventsTimer]) {
      if (t !== null) this.#timers.clearTimeout(t);
    }
    for (const t of this.#wakeTimers.values()) this.#timers.clearTimeout(t);
    this.#wakeTimers.clear();
    this.#subscription?.close();
    await this.#running?.catch(() => {});
  }

  // ---- internals ------------------------------------------------------------------------------

  #state(kind: ServiceKind): KindState {
    return this.#kinds.get(kind) as KindState;
  }

  async #settled(): Promise<void> {
    while (this.#running !== null) await this.#running.catch(() => {});
  }

  async #loop(reason: string): Promise<void> {
    let why = reason;
    do {
      this.#again = false;
      await this.#applyOnce(why);
      why = "changed while applying";
    } while (this.#again && !this.#closed);
  }

  async #applyOnce(reason: string): Promise<void> {
    const generation = this.#generation;
    try {
      this.#actual = await this.#o.driver.list();
      this.#listed = true;
      this.#driverReachable();
    } catch (err) {
      this.#driverUnreachable(err);
      return;
    }
    const now = this.#o.clock.now();
    const control: Partial<Record<ServiceKind, KindControl>> = {};
    for (const k of SERVICE_KINDS) {
      const st = this.#state(k);
      control[k] = { manualStop: st.manualStop, crashloop: st.crashloop, notBefore: st.notBefore };
    }
    const p = plan({
      desired: this.#target,
      actual: this.#actual,
      control,
      healthy: (k) => this.#healthy.get(k) ?? null,
      now,
    });
    this.#lastPlan = p;
    for (const h of p.holds) {
      if (h.why === "backoff") this.#wakeAt(h.until);
    }
    let created: string | null = null;
    for (const step of p.steps) {
      if (this.#closed) return;
      if (generation !== this.#generation) {
        this.#o.logger.debug({ reason }, "a newer target: planning again");
        this.#again = true;
        return;
      }
      try {
        created = await this.#apply(step, created);
      } catch (err) {
        this.#o.logger.warn({ err, step: { op: step.op, kind: step.kind } }, "a step failed");
        if (step.op === "start" || step.op === "create")
          this.#failed(step.kind, null, "start failed");
        // the driver's backend may be gone: the next list says; either way plan again
        this.#scheduleRetry();
        return;
      }
    }
    if (p.steps.length > 0) this.#actual = await this.#o.driver.list().catch(() => this.#actual);
  }

  async #apply(step: Step, created: string | null): Promise<string | null> {
    const e = this.#o.driver;
    switch (step.op) {
      case "stop": {
        this.#intended.add(step.id);
        await e.stop(step.id, this.#target.get(step.kind)?.spec.stopTimeoutS ?? 30);
        this.#o.onEvent?.({ type: "service.stopped", kind: step.kind, reason: step.reason });
        return created;
      }
      case "remove":
        this.#intended.add(step.id);
        await e.remove(step.id);
        return created;
      case "create": {
        // Never pulled: an image that is not here is reported, and nothing runs.
        if (!(await e.hasImage(step.image))) {
          this.#o.onEvent?.({ type: "service.image_missing", kind: step.kind, image: step.image });
          throw new Error(`image ${step.image} is not present`);
        }
        return e.create({ kind: step.kind, spec: step.spec, image: step.image, hash: step.hash });
      }
      case "start": {
        const id = step.id ?? created;
        if (id === null) throw new Error("start without a container");
        // Decided meanwhile (an exit made it a crash loop, an operator stopped it): not started.
        const now = this.#state(step.kind);
        if (now.crashloop || now.manualStop) return null;
        // A stop of ours that found it already stopped left no exit to consume: its next
        // exit is a real one.
        this.#intended.delete(id);
        await e.start(id);
        const st = this.#state(step.kind);
        st.startedAt = this.#o.clock.now();
        if (step.id !== null || st.consecutive > 0) st.restarts++;
        this.#o.onEvent?.({ type: "service.started", kind: step.kind, reason: step.reason });
        return null;
      }
    }
  }

  /** A service died on its own (or could not start): backoff, or a crash loop. */
  #failed(kind: ServiceKind, exitCode: number | null, _why: string): void {
    const st = this.#state(kind);
    const spec = this.#target.get(kind)?.spec;
    if (spec === undefined) return;
    const now = this.#o.clock.now();
    // A service that ran a minute counts as healthy again: the backoff starts over.
    if (st.startedAt > 0 && now - st.startedAt > 60_000) st.consecutive = 0;
    st.lastExitCode = exitCode;
    st.consecutive++;
    st.failures = [...st.failures.filter((t) => now - t < spec.restart.crashloopWindowMs), now];
    if (st.failures.length >= spec.restart.crashloopFailures) {
      if (!st.crashloop) {
        st.crashloop = true;
        this.#o.logger.error(
          { kind, failures: st.failures.length },
          "crash loop: no more restarts",
        );
        this.#o.onEvent?.({
          type: "service.crashloop",
          kind,
          failures: st.failures.length,
          windowMs: spec.restart.crashloopWindowMs,
        });
      }
      return;
    }
    const cap = Math.min(
      spec.restart.maxMs,
      spec.restart.minMs * 2 ** Math.min(st.consecutive - 1, 30),
    );
    // full jitter, but never sooner than the minimum
    const inMs = Math.max(spec.restart.minMs, Math.floor((this.#o.random ?? Math.random)() * cap));
    st.notBefore = now + inMs;
    this.#o.onEvent?.({ type: "service.restart_scheduled", kind, inMs, failures: st.consecutive });
    this.#wakeAt(st.notBefore);
  }

  #onDriverEvent(e: DriverEvent): void {
    if (e.action !== "die") return;
    if (this.#intended.delete(e.id)) return; // we stopped it
    const known = this.#actual.find((a) => a.id === e.id);
    if (known === undefined && !this.#target.has(e.kind)) return;
    this.#o.onEvent?.({ type: "service.exited", kind: e.kind, exitCode: e.exitCode });
    this.#failed(e.kind, e.exitCode, "exited");
    void this.kick(`${e.kind} exited`);
  }

  #subscribe(): void {
    if (this.#closed) return;
    this.#subscription = this.#o.driver.events(
      (e) => this.#onDriverEvent(e),
      (err) => {
        this.#subscription = null;
        if (this.#closed) return;
        this.#o.logger.warn({ err }, "the driver's event stream ended; subscribing again");
        this.#eventsTimer = this.#timers.setTimeout(() => {
          this.#eventsTimer = null;
          this.#subscribe();
          void this.kick("events resubscribed"); // what happened meanwhile
        }, 1_000);
      },
    );
  }

  #wakeAt(at: number): void {
    if (this.#closed || this.#wakeTimers.has(at)) return;
    const ms = Math.max(0, at - this.#o.clock.now());
    const t = this.#timers.setTimeout(() => {
      this.#wakeTimers.delete(at);
      void this.kick("backoff over");
    }, ms + 5);
    this.#wakeTimers.set(at, t);
  }

  #scheduleResync(): void {
    if (this.#closed) return;
    this.#resyncTimer = this.#timers.setTimeout(() => {
      this.#resyncTimer = null;
      void this.kick("resync");
      this.#scheduleResync();
    }, this.#o.resyncMs ?? 10_000);
  }

  #scheduleRetry(): void {
    if (this.#closed || this.#retryTimer !== null) return;
    const ms = Math.min(10_000, 500 * 2 ** Math.min(this.#driverFailures, 5));
    this.#retryTimer = this.#timers.setTimeout(() => {
      this.#retryTimer = null;
      void this.kick("retry");
    }, ms);
  }

  #driverUnreachable(err: unknown): void {
    this.#driverFailures++;
    if (this.#driverUp) {
      this.#driverUp = false;
      this.#o.logger.warn({ err }, "the service driver is unreachable; retrying");
      this.#o.onEvent?.({
        type: "driver.unreachable",
        error: err instanceof Error ? err.message : String(err),
      });
    }
    this.#scheduleRetry();
  }

  #driverReachable(): void {
    this.#driverFailures = 0;
    if (!this.#driverUp) {
      this.#driverUp = true;
      this.#o.onEvent?.({ type: "driver.reachable" });
      // the event stream died with the backend: subscribe again
      this.#subscription?.close();
      this.#subscribe();
    }
  }

  #scheduleHealth(ms: number): void {
    if (this.#closed) return;
    this.#healthTimer = this.#timers.setTimeout(() => {
      this.#healthTimer = null;
      void this.#probeAll().finally(() => this.#scheduleHealth(this.#o.healthMs ?? 5_000));
    }, ms);
  }

  async #probeAll(): Promise<void> {
    if (!this.#listed) return; // what runs is not known yet
    let changed = false;
    for (const kind of SERVICE_KINDS) {
      const d = this.#target.get(kind);
      const running = this.#actual.some((a) => a.kind === kind && a.running);
      let ok = false;
      if (d !== undefined && running) {
        try {
          ok = await this.#o.probe(kind, d);
        } catch {
          ok = false;
        }
      }
      if ((this.#healthy.get(kind) === true) !== ok) changed = true;
      this.#healthy.set(kind, ok);
    }
    // dependents wait for, and are restarted around, their dependencies' health
    if (changed) void this.kick("health changed");
  }
}
