import type { KeyObject } from "node:crypto";
import type { Clock } from "../lib/clock.ts";
import { jwkThumbprint } from "../lib/crypto/ed25519.ts";
import { decodeJwsUnverified, documentIdentity, verifyJws } from "../lib/crypto/jws.ts";
import { AgentdError, fail } from "../lib/errors.ts";
import { parseJsonStrict } from "../lib/json/strict-parse.ts";
import type { Logger } from "../lib/log/logger.ts";
import { backgroundTimers, type TimerHandle, type Timers } from "../lib/timers.ts";
import { type Decision, decisionToJson, evaluate, sameDecision } from "./decision.ts";
import {
  type Bundle,
  DOC_TYP,
  parseDecommissionPayload,
  parseOwnerRotationPayload,
  parseRevocationPayload,
} from "./documents.ts";
import type {
  Gate,
  MiningGate,
  MiningGateInput,
  ServicesGate,
  ServicesGateInput,
} from "./gates.ts";
import type { Reason } from "./reasons.ts";
import { afterRotation, newOwnerKey, ownerInForce, refuseRotation } from "./rotation.ts";
import { type GuardState, loadGuardState, saveGuardState } from "./state.ts";
import { type TrustAnchors, type VerifiedDocuments, verifyDocuments } from "./verify.ts";

/**
 * The enforcement engine: holds the current verified documents (persisted atomically),
 * accepts new bundles, revocations, decommissions and owner-key rotations from any source,
 * computes the decision on every change and at `nextChangeAt`, drives the registered gates,
 * measures event-to-acknowledgement latency per gate, and audits every decision change and
 * every refused document with its reason.
 *
 * Operations run one at a time (a promise queue), so a revocation cannot interleave with a
 * bundle being accepted.
 */

export interface AuditSink {
  append(event: Record<string, unknown>): unknown;
}

export interface EngineOptions {
  /** The guard's state file (counters, current bundle, rotated owner key). */
  readonly stateFile: string;
  readonly worker: string;
  /** The owner key pinned at enrollment and the control plane's publication keys. */
  readonly trust: TrustAnchors;
  readonly clock: Clock;
  /** The current facts (DOCUMENTS.md section 6); read at every evaluation. */
  readonly facts: () => unknown;
  readonly audit: AuditSink;
  /**
   * The decision timer (`nextChangeAt`, the clock floor's persistence). `backgroundTimers` by
   * default: a pending re-evaluation must never keep the process alive on its own.
   */
  readonly timers?: Timers;
  readonly log?: Logger;
  readonly factsMaxAgeS?: number;
  /** Called after a verified decommission has been recorded (the agent wipes credentials). */
  readonly onDecommission?: () => void | Promise<void>;
}

export interface SubmitResult {
  readonly accepted: boolean;
  readonly reasons: readonly string[];
}

export interface GateLatency {
  readonly trigger: string;
  readonly gate: string;
  /** From the triggering event's arrival to the gate's acknowledgement. */
  readonly ms: number;
  readonly at: number;
}

const MAX_LATENCIES = 1024;
const MAX_TIMER_MS = 2 ** 31 - 1;
/** The clock floor is persisted at least this often while the engine runs. */
const FLOOR_PERSIST_MS = 5 * 60_000;

export class EnforcementEngine {
  readonly #o: EngineOptions;
  readonly #timers: Timers;
  #state: GuardState;
  #docs: VerifiedDocuments;
  #decision: Decision;
  /** What the gates were last given (serialised), or null when unknown. */
  #applied: string | null = null;
  /** Whether the current decision has been audited once (the first drive audits it). */
  #announced = false;
  #timer: TimerHandle = null;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  #lastFloorWrite = 0;
  /**
   * The latest time (unix s) this engine has seen, in memory. The decision checks the clock
   * against this, not against the floor last persisted (written at most every few minutes):
   * otherwise a clock set back by less than that lag would revive documents that time has
   * already ended.
   */
  #seenFloorS = 0;
  /** Publication keys given after start (setPublicationKeys); null: the options' ones. */
  #publicationKeys: readonly KeyObject[] | null = null;
  readonly #mining: MiningGate[] = [];
  readonly #services: ServicesGate[] = [];
  readonly #latencies: GateLatency[] = [];

  constructor(options: EngineOptions) {
    this.#o = options;
    this.#timers = options.timers ?? backgroundTimers;
    this.#state = loadGuardState(options.stateFile);
    this.#docs = this.#verify(this.#state.bundle, this.#state);
    this.#decision = this.#evaluate();
  }

  registerMiningGate(gate: MiningGate): void {
    this.#mining.push(gate);
  }

  registerServicesGate(gate: ServicesGate): void {
    this.#services.push(gate);
  }

  /** Drives every gate with the current decision and arms the timer. */
  start(): Promise<void> {
    return this.#enqueue("start", this.#o.clock.now(), async (t0) => {
      await this.#recompute("start", t0, true);
    });
  }

  current(): Decision {
    return this.#decision;
  }

  /** The decision, the documents it rests on and the counters, for status and heartbeats. */
  snapshot(): Record<string, unknown> {
    const c = this.#docs.consent?.payload;
    return {
      decision: decisionToJson(this.#decision),
      consent:
        c === undefined
          ? null
          : {
              identity: this.#docs.consent?.identity,
              seq: c.seq,
              policy_id: c.policy_id,
              owner: c.owner,
            },
      publication:
        this.#docs.publication === null
          ? null
          : {
              identity: this.#docs.publication.identity,
              version: this.#docs.publication.payload.version,
            },
      counters: { ...this.#state.counters },
    };
  }

  /** Current rules for gates registered late, and for the CLI. */
  documents(): VerifiedDocuments {
    return this.#docs;
  }

  latencies(): readonly GateLatency[] {
    return this.#latencies;
  }

  /** A new bundle from anywhere (control plane, local API, file). */
  submitBundle(bundle: unknown, source: string): Promise<SubmitResult> {
    return this.#enqueue("bundle", this.#o.clock.now(), async (t0) => {
      const candidate = asBundle(bundle);
      const docs = this.#verify(candidate, this.#state);
      const probe = evaluate(docs, this.#o.facts(), t0, this.#evalOptions());
      // Only document problems refuse a bundle; rules and facts are for the decision.
      const refused = probe.mining.reasons.filter(
        (r) =>
          (r.startsWith("consent.") || r.startsWith("publication.")) && r !== "publication.stop",
      );
      if (
        candidate === null ||
        refused.length > 0 ||
        docs.consent === null ||
        docs.publication === null
      ) {
        this.#refuse("bundle", source, refused.length > 0 ? refused : ["consent.missing"]);
        return { accepted: false, reasons: refused };
      }
      const nowS = Math.floor(t0 / 1000);
      const counters = {
        ...this.#state.counters,
        highestSeq: docs.consent.payload.seq,
        highestSeqId: docs.consent.identity,
        highestVersion: docs.publication.payload.version,
        highestVersionId: docs.publication.identity,
        // The version counts for this consent only: the owner's next one starts afresh
        // (DOCUMENTS.md section 4), whatever a stolen publication key spent on this one.
        versionConsentId: docs.consent.identity,
        clockFloorS: Math.max(this.#state.counters.clockFloorS, nowS),
      };
      const unchanged =
        counters.highestSeqId === this.#state.counters.highestSeqId &&
        counters.highestVersionId === this.#state.counters.highestVersionId;
      this.#persist({ ...this.#state, counters, bundle: candidate });
      if (!unchanged) {
        this.#audit("policy.accepted", {
          source,
          consent: docs.consent.identity,
          seq: docs.consent.payload.seq,
          publication: docs.publication.identity,
          version: docs.publication.payload.version,
        });
      }
      await this.#recompute(`bundle:${source}`, t0, false);
      return { accepted: true, reasons: [] };
    });
  }

  /** An owner-signed revocation: every consent with seq ≤ through_seq is dead forever. */
  submitRevocation(jws: string, source: string): Promise<SubmitResult> {
    return this.#ownerDocument("revocation", jws, source, async (raw, t0) => {
      const p = parseRevocationPayload(raw);
      this.#checkOwnerDoc(p.owner, p.worker);
      const counters = {
        ...this.#state.counters,
        revokedThroughSeq: Math.max(this.#state.counters.revokedThroughSeq, p.through_seq),
      };
      this.#persist({ ...this.#state, counters }, "best-effort");
      this.#auditStop("revocation.accepted", { source, through_seq: p.through_seq });
      await this.#recompute(`revocation:${source}`, t0, false);
      return undefined;
    });
  }

  /** An owner-signed decommission: everything stops, for good. */
  submitDecommission(jws: string, source: string): Promise<SubmitResult> {
    return this.#ownerDocument("decommission", jws, source, async (raw, t0) => {
      const p = parseDecommissionPayload(raw);
      this.#checkOwnerDoc(p.owner, p.worker);
      this.#persist(
        { ...this.#state, counters: { ...this.#state.counters, decommissioned: true } },
        "best-effort",
      );
      this.#auditStop("decommission.accepted", { source });
      await this.#recompute(`decommission:${source}`, t0, false);
      await this.#o.onDecommission?.();
      return undefined;
    });
  }

  /**
   * An owner-key rotation signed by the current owner key (DOCUMENTS.md section 5), accepted
   * once and in `iat` order (rotation.ts). The new key signs everything from now on; the
   * consent in force stays in force (it was signed by the owner key of its time).
   */
  submitOwnerRotation(jws: string, source: string): Promise<SubmitResult> {
    return this.#ownerDocument(
      "rotation",
      jws,
      source,
      async (raw, t0, identity) => {
        const p = parseOwnerRotationPayload(raw);
        this.#checkOwnerDoc(p.owner, p.worker);
        const current = this.#trust(this.#state);
        const key = newOwnerKey(p.new_owner_jwk, current.owner);
        const history = this.#state.rotation;
        const nowS = Math.floor(t0 / 1000);
        const refused = refuseRotation(history, { identity, iat: p.iat, nowS });
        if (refused !== null) return refused;
        // The consent in force verified under the owner key of its time (or was retained by
        // an earlier rotation): that one document keeps its signer.
        const c = this.#docs.consent;
        const retained =
          c === null
            ? null
            : current.retained?.identity === c.identity
              ? current.retained
              : { identity: c.identity, key: current.owner };
        const rotation = afterRotation(history, {
          identity,
          iat: p.iat,
          enrolled: this.#o.trust.owner,
          retained,
        });
        this.#persist({ ...this.#state, rotatedOwner: key, rotation }, "best-effort");
        this.#auditStop("owner.rotated", {
          source,
          from: p.owner,
          to: jwkThumbprint(key),
          identity,
          iat: p.iat,
          consent_retained: retained?.identity ?? null,
        });
        await this.#recompute(`rotation:${source}`, t0, false);
        return undefined;
      },
      // Before the signature: a replay is named as one even once its signer is retired.
      (identity) => (this.#state.rotation.seen.includes(identity) ? "rotation.replayed" : null),
    );
  }

  /** The thumbprint of the owner key in force (the enrolled one, or the last rotation's). */
  ownerId(): string {
    return jwkThumbprint(this.#trust(this.#state).owner);
  }

  /**
   * Whether a rotation needs no submitting: accepted before, or not later than the last one
   * accepted. Read without verifying, only to skip what a poll brings again; a rotation is
   * never accepted on this.
   */
  knowsRotation(jws: string): boolean {
    const h = this.#state.rotation;
    try {
      if (h.seen.includes(documentIdentity(jws))) return true;
      const iat = (decodeJwsUnverified(jws).payload as { iat?: unknown }).iat;
      return typeof iat === "number" && iat <= h.lastIat;
    } catch {
      return false; // malformed: submitting it has it refused, and audited
    }
  }

  /**
   * The control plane's publication keys after a key-set rotation the agent verified under
   * its pinned root (control-plane/protocol/keyset.ts acceptKeySetUpdate): the stored bundle
   * is verified again under them and the decision recomputed. The owner key is not touched.
   */
  setPublicationKeys(keys: readonly KeyObject[]): Promise<void> {
    return this.#enqueue("keys", this.#o.clock.now(), async (t0) => {
      this.#publicationKeys = keys;
      this.#docs = this.#verify(this.#state.bundle, this.#state);
      await this.#recompute("keys", t0, false);
    });
  }

  /** Facts changed (power, temperature, upstream): evaluate again. */
  refresh(trigger: string): Promise<void> {
    return this.#enqueue("refresh", this.#o.clock.now(), (t0) =>
      this.#recompute(trigger, t0, false),
    );
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
  }

  // ---- internals -------------------------------------------------------------------------

  #trust(state: GuardState): TrustAnchors {
    const base =
      this.#publicationKeys === null
        ? this.#o.trust
        : { ...this.#o.trust, publication: this.#publicationKeys };
    const { owner, retained } = ownerInForce(
      this.#o.trust.owner,
      state.rotatedOwner,
      state.rotation,
    );
    return retained === null ? { ...base, owner } : { ...base, owner, retained };
  }

  #verify(bundle: Bundle | null, state: GuardState): VerifiedDocuments {
    const clockFloorS = Math.max(state.counters.clockFloorS, this.#seenFloorS);
    return verifyDocuments({
      bundle,
      trust: this.#trust(state),
      worker: this.#o.worker,
      counters: { ...state.counters, clockFloorS },
    });
  }

  #evalOptions() {
    return this.#o.factsMaxAgeS === undefined ? {} : { factsMaxAgeS: this.#o.factsMaxAgeS };
  }

  #evaluate(): Decision {
    return evaluate(this.#docs, this.#o.facts(), this.#o.clock.now(), this.#evalOptions());
  }

  /**
   * Writes the state. `stop-direction` changes (revocation, decommission, rotation, the clock
   * floor) take effect in memory even when the write fails — a full disk must not keep a
   * revoked consent mining — and the failure is audited; a bundle that cannot be persisted
   * is not accepted (the error propagates).
   */
  #persist(state: GuardState, mode: "required" | "best-effort" = "required"): void {
    // Every write carries the clock floor forward, as #lastFloorWrite says it does.
    const now = this.#o.clock.now();
    const floorS = Math.max(state.counters.clockFloorS, Math.floor(now / 1000));
    const next = { ...state, counters: { ...state.counters, clockFloorS: floorS } };
    try {
      saveGuardState(this.#o.stateFile, next);
    } catch (err) {
      if (mode === "required") throw err;
      this.#o.log?.error({ err }, "guard state could not be written; applied in memory");
      try {
        this.#audit("state.write_failed", {
          error: err instanceof Error ? err.message : String(err),
        });
      } catch {
        // The audit log may share the failing disk; the log line above is all we can do.
      }
    }
    this.#state = next;
    this.#lastFloorWrite = now;
  }

  /**
   * An audit record for something that stops (or may stop) mining: it takes effect even when
   * it cannot be recorded — a full disk must not keep a revoked consent mining; the failure
   * is logged, and the agent holds mining while its log is unwritable. True if recorded.
   */
  #auditStop(type: string, data: Record<string, unknown>): boolean {
    try {
      this.#audit(type, data);
      return true;
    } catch (err) {
      this.#o.log?.error({ err, type }, "audit record lost; the change takes effect");
      return false;
    }
  }

  #audit(type: string, data: Record<string, unknown>): void {
    this.#o.audit.append({
      type,
      actor: "policy-guard",
      at: new Date(this.#o.clock.now()).toISOString(),
      data,
    });
  }

  #refuse(kind: string, source: string, reasons: readonly string[], detail?: string): void {
    this.#auditStop("document.refused", {
      kind,
      source,
      reasons: [...reasons],
      ...(detail === undefined ? {} : { detail }),
    });
    this.#o.log?.warn({ kind, source, reasons }, "document refused");
  }

  #checkOwnerDoc(owner: string, worker: string): void {
    if (worker !== this.#o.worker)
      throw fail("AGENTD_E_JWS_PAYLOAD", "worker does not match this machine", { worker });
    if (owner !== jwkThumbprint(this.#trust(this.#state).owner)) {
      throw fail("AGENTD_E_JWS_PAYLOAD", "owner does not match the pinned owner key", { owner });
    }
  }

  #ownerDocument(
    kind: "revocation" | "decommission" | "rotation",
    jws: string,
    source: string,
    // A reason returned refuses the document (audited like any refusal); a throw does too.
    accept: (
      payload: Record<string, unknown>,
      t0: number,
      identity: string,
    ) => Promise<Reason | undefined>,
    before?: (identity: string) => Reason | null,
  ): Promise<SubmitResult> {
    return this.#enqueue(kind, this.#o.clock.now(), async (t0) => {
      const owner = this.#trust(this.#state).owner;
      const ownerKid = jwkThumbprint(owner);
      const refuse = (reason: string, detail?: string): SubmitResult => {
        this.#refuse(kind, source, [reason], detail);
        return { accepted: false, reasons: [reason] };
      };
      try {
        const early = before?.(documentIdentity(jws)) ?? null;
        if (early !== null) return refuse(early);
        const v = verifyJws(jws, {
          typ: DOC_TYP[kind],
          resolveKey: (kid) => (kid === ownerKid ? owner : undefined),
        });
        const refused = await accept(v.payload, t0, v.identity);
        return refused === undefined ? { accepted: true, reasons: [] } : refuse(refused);
      } catch (err) {
        if (!(err instanceof AgentdError)) throw err;
        return refuse(err.code, err.message);
      }
    });
  }

  #enqueue<T>(_what: string, t0: number, op: (t0: number) => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => op(t0));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #recompute(trigger: string, t0: number, force: boolean): Promise<void> {
    if (this.#closed) return;
    try {
      this.#docs = this.#verify(this.#state.bundle, this.#state);
      const previous = this.#decision;
      this.#decision = this.#evaluate();
      this.#bumpFloor(!sameDecision(previous, this.#decision));
      // The gates are driven when what they are given changes, not only allow/deny: a new
      // consent with another upstream user or other networks must reach the proxy at once.
      const inputs = this.#gateInputs();
      if (force || this.#applied === null || this.#applied !== inputs.key) {
        if (!sameDecision(previous, this.#decision) || !this.#announced) {
          // Recorded if it can be; driven in any case (an unwritable log must not keep a
          // stop from the data path: the agent holds mining while it cannot record).
          this.#announced = this.#auditStop("decision.changed", {
            trigger,
            ...decisionToJson(this.#decision),
          });
        }
        // A gate that failed has not done it: what the gates hold is then unknown (null) until
        // every gate acknowledges, so the next event or wake-up drives them all again.
        this.#applied = (await this.#drive(inputs, trigger, t0)) ? inputs.key : null;
      }
    } finally {
      // Whatever failed above, the next change in time is still watched for.
      this.#arm();
    }
  }

  #gateInputs(): { mining: MiningGateInput; services: ServicesGateInput; key: string } {
    const d = this.#decision;
    const rules = this.#docs.consent?.payload.rules;
    // Time-based consent problems (expired, not yet valid) count too: the decision has them.
    const consentOk = !d.services.reasons.some((r) => r.startsWith("consent."));
    const upstreams = consentOk ? (rules?.upstreams ?? []) : [];
    const mining: MiningGateInput = {
      allow: d.mining.allow,
      reasons: d.mining.reasons,
      upstreams,
      networks: consentOk ? (rules?.networks ?? []) : [],
      maxWatts: rules?.max_watts ?? null,
      maxTempC: rules?.max_temp_c ?? null,
      jobClasses: rules?.job_classes ?? null,
    };
    const services: ServicesGateInput = {
      allowed: d.services.allowed,
      reasons: d.services.reasons,
      upstreams,
    };
    return { mining, services, key: JSON.stringify([mining, services]) };
  }

  async #drive(
    inputs: { mining: MiningGateInput; services: ServicesGateInput },
    trigger: string,
    t0: number,
  ): Promise<boolean> {
    // Stopping matters most: all gates are driven at once, each acknowledgement timed.
    const acked = await Promise.all([
      ...this.#mining.map((g) => this.#applyGate(g, inputs.mining, trigger, t0)),
      ...this.#services.map((g) => this.#applyGate(g, inputs.services, trigger, t0)),
    ]);
    return acked.every((ok) => ok);
  }

  async #applyGate<I>(gate: Gate<I>, input: I, trigger: string, t0: number): Promise<boolean> {
    try {
      await gate.apply(input);
    } catch (err) {
      this.#auditStop("gate.failed", {
        gate: gate.name,
        trigger,
        error: err instanceof Error ? err.message : String(err),
      });
      this.#o.log?.error({ err, gate: gate.name }, "gate failed to apply the decision");
      return false;
    }
    const at = this.#o.clock.now();
    this.#latencies.push({ trigger, gate: gate.name, ms: at - t0, at });
    if (this.#latencies.length > MAX_LATENCIES) this.#latencies.shift();
    return true;
  }

  /**
   * The clock floor follows the clock forward: at once in memory, on disk at most every few
   * minutes — and whenever the decision changed, so that a restart cannot bring back what
   * time just ended (a grace run out) by setting the clock back across the write lag.
   */
  #bumpFloor(decisionChanged = false): void {
    const now = this.#o.clock.now();
    const nowS = Math.floor(now / 1000);
    this.#seenFloorS = Math.max(this.#seenFloorS, nowS);
    const due = decisionChanged || now - this.#lastFloorWrite >= FLOOR_PERSIST_MS;
    if (nowS > this.#state.counters.clockFloorS && due) {
      this.#persist(
        { ...this.#state, counters: { ...this.#state.counters, clockFloorS: nowS } },
        "best-effort",
      );
    }
  }

  #arm(): void {
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#closed) return;
    const now = this.#o.clock.now();
    const next = this.#decision.nextChangeAt;
    // Wake at the next change, and at least every FLOOR_PERSIST_MS to carry the floor forward.
    const wake = Math.min(next === null ? Number.POSITIVE_INFINITY : next, now + FLOOR_PERSIST_MS);
    const delay = Math.min(Math.max(0, wake - now), MAX_TIMER_MS);
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = null;
      this.refresh("time").catch((err: unknown) => {
        this.#o.log?.error({ err }, "timed re-evaluation failed");
      });
    }, delay);
  }
}

function asBundle(v: unknown): Bundle | null {
  if (typeof v === "string") {
    try {
      return asBundle(parseJsonStrict(v));
    } catch {
      return null;
    }
  }
  if (typeof v !== "object" || v === null) return null;
  const b = v as Record<string, unknown>;
  const keys = Object.keys(b);
  if (keys.length !== 2 || typeof b.consent !== "string" || typeof b.publication !== "string")
    return null;
  return { consent: b.consent, publication: b.publication };
}

export type { Reason };
