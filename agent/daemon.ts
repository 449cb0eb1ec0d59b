import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import {
  createMachineClient,
  type MachineClient,
} from "../control-plane/protocol/client-machine.ts";
import type { StreamHandle } from "../control-plane/protocol/client-stream.ts";
import { signHeartbeat } from "../control-plane/protocol/documents/heartbeat.ts";
import { acceptKeySetUpdate } from "../control-plane/protocol/keyset.ts";
import type { WorkerEvent } from "../control-plane/protocol/schemas/api-worker.ts";
import type { HostFacts } from "../control-plane/protocol/schemas/attestation.ts";
import type { Clock } from "../lib/clock.ts";
import type { AgentdConfig } from "../lib/config/schema.ts";
import { decodeJwsUnverified } from "../lib/crypto/jws.ts";
import { fail, isAgentdError } from "../lib/errors.ts";
import { ChainLog, readChainTail } from "../lib/fs/chain-log.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";
import type { Logger } from "../lib/log/logger.ts";
import { Registry } from "../lib/metrics/registry.ts";
import { backgroundTimers } from "../lib/timers.ts";
import { DOC_TYP } from "../policy-guard/documents.ts";
import { EnforcementEngine } from "../policy-guard/engine.ts";
import { GUARD_STATE_FILE } from "../policy-guard/state.ts";
import { createSupervisor } from "../supervisor/create-supervisor.ts";
import type { ServiceDriver } from "../supervisor/driver.ts";
import { SERVICE_KINDS, type ServiceKind } from "../supervisor/spec.ts";
import type { Supervisor } from "../supervisor/supervisor.ts";
import { agentMetrics } from "./agent-metrics.ts";
import { type AgentStateStore, openAgentState, STATE_FILE } from "./agent-state.ts";
import { apiToken } from "./api-token.ts";
import {
  ASSIGNMENT_FILE,
  type Assignment,
  assignmentInForce,
  type ConsentInForce,
  checkAssignment,
  readAssignmentJws,
  writeAssignmentJws,
} from "./assignment.ts";
import { openAuditSink } from "./audit-sink.ts";
import { COMMAND_LEDGER_FILE, createCommandExecutor } from "./command-executor.ts";
import { newCommandsByPolling } from "./command-poll.ts";
import { ELIGIBILITY_FILE, startEligibilityTracker } from "./eligibility.ts";
import { ENROLLMENT_FILE, readEnrollment, storeKeySet } from "./enrollment.ts";
import { createGuardedProxy, proxyFacts, proxyTelemetry } from "./guarded-proxy.ts";
import { COUNTER_FILE, openHeartbeatCounter } from "./heartbeat-counter.ts";
import { createHeartbeatSender, type HeartbeatSender } from "./heartbeat-sender.ts";
import { ensureStateDir, loadMachineIdentity, MACHINE_KEY_FILE } from "./identity.ts";
import { startLocalApi } from "./local-api.ts";
import { startMetricsServer } from "./metrics-server.ts";
import { holdingGate } from "./mining-holds.ts";
import { PAUSE_FILE, readPause, writePause } from "./pause-state.ts";
import { nextEvent } from "./state-follower.ts";
import type { AgentEvent, AgentState } from "./state-machine.ts";
import { STREAM_FILE } from "./stream-state.ts";

/**
 * `agentd run`: the composition root of an enrolled machine talking to its control plane.
 * Starts, in order: the state directory lock and the audit log (everything below records
 * into it; a log that cannot be written holds mining stopped until it can), the agent's
 * state, the heartbeat counter, the enforcement engine (the policy guard, on the stored
 * bundle, the owner key pinned at enrollment and the control plane's publication keys from
 * the pinned key set) with the Stratum proxy for the ASICs as its mining gate behind the local
 * holds (audit unwritable, quarantined, the operator's pause), the protocol client,
 * attestation, the policy long poll, the push stream (publications, revocations,
 * decommissions, commands), the command executor, the heartbeats, the local API and the
 * metrics endpoint. `close` stops them in reverse, once.
 *
 * The state follows the documents and the data path (BRIEF section 6, state-follower.ts):
 * ATTESTED after attestation; POLICY_SYNCED when a bundle is accepted; ELIGIBLE while mining
 * is allowed; ASSIGNED once an allowed pool's session is ready; MINING once the pool accepted
 * forwarded work; PAUSED for a schedule, power or operator stop; back to POLICY_SYNCED when the
 * decision denies otherwise; REVOKED when a revocation covers the consent in force (and
 * POLICY_SYNCED again only with a newer consent); QUARANTINED for a cloned machine id (seen at
 * start or at any attestation) or the control plane's word; TERMINATED after a decommission.
 */

export interface AgentDaemonOptions {
  readonly stateDir: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly agentVersion: string;
  readonly heartbeatIntervalS: number;
  /** The host's facts, collected afresh at every attestation. */
  readonly hostFacts: () => HostFacts;
  /** Longest wait of one policy long poll (default 25 s). */
  readonly longPollS?: number;
  /** The local API's unix socket (config api.socket); its directory is made if missing. */
  readonly apiSocket: string;
  /**
   * The configuration: `stratum.*` and `metrics.max_worker_series` for the Stratum proxy,
   * `api.listen`/`api.token` for the local API's TCP listener, `metrics.listen`.
   */
  readonly config: AgentdConfig;
  /** Where the Stratum proxy listens for ASICs (config stratum.listen; port 0 allowed). */
  readonly stratum: { readonly host: string; readonly port: number };
  /** The agent's last log lines (the local API's /v1/logs); none kept when absent. */
  readonly recentLogs?: (n: number) => string[];
  /**
   * Attestation with fresh host facts at least this often (default 15 min), and a minute
   * before each access token expires.
   */
  readonly attestIntervalMs?: number;
  /**
   * The driver the supervisor runs services on; default from `supervisor.driver` (docker: the
   * Docker Engine API at docker.host). Injected by tests.
   */
  readonly serviceDriver?: ServiceDriver;
  /** How often the audit log is probed while it cannot be written (default 2 s). */
  readonly auditProbeMs?: number;
  /** Free space the audit log's disk needs before mining resumes after it was full (1 MiB). */
  readonly auditMinFreeBytes?: number;
}

export interface RunningAgent {
  readonly workerId: string;
  readonly url: string;
  readonly apiSocket: string;
  /** The local API's TCP listener, when api.listen is set. */
  readonly apiTcp: { readonly host: string; readonly port: number } | null;
  /** The metrics endpoint, when metrics.listen is set. */
  readonly metrics: { readonly host: string; readonly port: number } | null;
  /** The Stratum proxy's bound address. */
  readonly stratum: { readonly host: string; readonly port: number };
  /** What `GET /v1/status` of the local API answers. */
  status(): Record<string, unknown>;
  /**
   * Resolves after an owner-signed decommission was accepted and the credentials wiped:
   * the caller then stops the agent (`agentd run` exits 0).
   */
  readonly terminated: Promise<void>;
  state(): AgentState;
  close(): Promise<void>;
}

/** Held while an agent runs on the state directory (its pid inside). */
export const LOCK_FILE = "agentd.lock";

const timers = {
  setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms),
  clearTimeout: (h: unknown) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export async function startAgent(o: AgentDaemonOptions): Promise<RunningAgent> {
  const log = o.logger;
  ensureStateDir(o.stateDir);
  const enrolled = readEnrollment(o.stateDir);
  if (enrolled === null) {
    throw fail("AGENTD_E_NOT_ENROLLED", "this machine is not enrolled: run agentd enroll first", {
      path: o.stateDir,
    });
  }
  const machine = loadMachineIdentity(o.stateDir);
  if (machine.workerId !== enrolled.record.worker_id) {
    throw fail(
      "AGENTD_E_NOT_ENROLLED",
      "the machine key is not the one that was enrolled: run agentd enroll --force",
      { path: o.stateDir },
    );
  }
  const workerId = machine.workerId;
  const stops: { readonly name: string; readonly stop: () => void | Promise<void> }[] = [];
  const onStop = (name: string, stop: () => void | Promise<void>) => stops.push({ name, stop });
  const stopAll = async () => {
    for (const { name, stop } of stops.splice(0).reverse()) {
      try {
        await stop();
        log.debug({ part: name }, "stopped");
      } catch (err) {
        log.error({ err, part: name }, "stopping a part failed");
      }
    }
  };

  onStop("state directory lock", lockStateDir(o.stateDir));
  let endTerminated: () => void = () => {};
  const terminated = new Promise<void>((resolve) => {
    endTerminated = resolve;
  });
  try {
    const registry = new Registry();
    const metrics = agentMetrics(registry);
    // The holds are given the gate once it exists; an audit failure before that (at start)
    // fails the start itself.
    let onAuditChange: (writable: boolean, lost: number) => void = () => {};
    const auditPath = join(o.stateDir, "audit.jsonl");
    // A torn tail repaired on opening (a power loss mid-write) is recorded once the log is
    // open, so that the chain itself says where it was cut.
    let repaired: number | null = null;
    const audit = openAuditSink({
      path: auditPath,
      open: () => {
        const { log: chain, recovery } = ChainLog.open(auditPath);
        if (recovery.recovered) repaired = recovery.tornBytes;
        return chain;
      },
      onUnwritable: (err) => {
        log.error({ err }, "the audit log cannot be written: mining is held until it can");
        onAuditChange(false, 0);
      },
      onWritable: (lost) => {
        log.warn({ lost }, "the audit log can be written again");
        onAuditChange(true, lost);
      },
      ...(o.auditProbeMs === undefined ? {} : { probeMs: o.auditProbeMs }),
      ...(o.auditMinFreeBytes === undefined ? {} : { minFreeBytes: o.auditMinFreeBytes }),
    });
    onStop("audit log", () => audit.close());
    if (repaired !== null) {
      log.warn({ torn_bytes: repaired }, "the audit log's torn tail was cut on opening");
      audit.append({ type: "audit.tail_repaired", torn_bytes: repaired });
    }
    const state: AgentStateStore = openAgentState(
      join(o.stateDir, STATE_FILE),
      (r) => audit.append({ ...r }),
      o.clock,
    );
    if (state.current().state === "TERMINATED") {
      throw fail(
        "AGENTD_E_NOT_ENROLLED",
        "this machine was decommissioned by its owner: enroll it again to use it",
        { path: o.stateDir },
      );
    }
    const move = (event: AgentEvent, reason: string): boolean => {
      try {
        state.apply(event, reason);
      } catch (err) {
        // Not allowed here (a race of two sources), or the audit log failed: either way the
        // state stays where it was, recorded or not at all.
        if (isAgentdError(err) && err.code === "AGENTD_E_STATE_TRANSITION") return false;
        log.error({ err, event }, "a state change could not be recorded; the state stays");
        return false;
      }
      log.info({ event, state: state.current().state, reason }, "state changed");
      metrics.state(state.current().state);
      return true;
    };
    metrics.state(state.current().state);
    if (state.current().state === "UNREGISTERED") {
      move("registered", `enrolled with ${enrolled.record.url}`);
    }
    // The same key on another machine is a clone: stop here, recorded, until enrolled again.
    if (o.hostFacts().machine_id_sha256 !== enrolled.record.machine_id_sha256) {
      move("quarantined", "the machine id is not the one enrolled: a cloned identity");
    }
    if (state.current().state === "QUARANTINED") {
      throw fail(
        "AGENTD_E_IDENTITY_CLONED",
        "this machine's identity is quarantined (its key is in use on another machine, or the control plane said so): enroll it again as a new machine",
        { path: o.stateDir },
      );
    }
    const counter = openHeartbeatCounter(join(o.stateDir, COUNTER_FILE), o.clock);

    // The data path: the Stratum proxy, gated by the policy guard (it forwards nothing
    // until the decision allows mining, and stops when it no longer does), behind the holds.
    let engineRef: EnforcementEngine | null = null;
    const proxy = createGuardedProxy({
      host: o.stratum.host,
      port: o.stratum.port,
      config: o.config,
      clock: o.clock,
      logger: log,
      registry,
      audit,
      agentVersion: o.agentVersion,
      engine: () => engineRef,
    });
    const telemetry = proxyTelemetry(proxy, o.clock);
    let followDecision: ((why: string) => void) | undefined;
    const gate = holdingGate(proxy, () => followDecision?.("a local hold changed"));
    onAuditChange = (writable, lost) => {
      metrics.auditWritable(writable);
      if (!writable) {
        gate.hold("agent.audit_unwritable");
        return;
      }
      // Writable again: what was decided meanwhile (a grace ended, a revocation) reaches the
      // gate first, and a pause that could not be saved is saved; only then the hold lifts.
      void (async () => {
        try {
          await engineRef?.refresh("audit log writable");
        } catch (err) {
          log.error({ err }, "re-evaluating after the audit log came back failed");
        }
        savePauseIfUnsaved();
        gate.release("agent.audit_unwritable");
        try {
          audit.append({ type: "mining.hold_released", hold: "agent.audit_unwritable", lost });
        } catch {
          // unwritable again: the sink has put the hold back
        }
      })();
    };
    // Until an assignment for the consent in force is verified (below), nothing mines.
    gate.hold("agent.unassigned");
    const pausePath = join(o.stateDir, PAUSE_FILE);
    if (readPause(pausePath)?.paused === true) gate.hold("agent.paused");
    /** A pause held but not on disk yet (the disk was full): saved as soon as it can be. */
    let pauseUnsaved: { by: string; at: number } | null = null;
    const savePauseIfUnsaved = () => {
      if (pauseUnsaved === null) return;
      try {
        writePause(pausePath, { paused: true, ...pauseUnsaved });
        pauseUnsaved = null;
      } catch (err) {
        log.error({ err }, "the pause holds, but could not be saved yet");
      }
    };

    const publicationKeys = Object.values(enrolled.keyset.keys.publication);
    const engine = new EnforcementEngine({
      stateFile: join(o.stateDir, GUARD_STATE_FILE),
      worker: workerId,
      trust: { owner: enrolled.ownerKey, publication: publicationKeys },
      clock: o.clock,
      facts: proxyFacts(proxy, () => engineRef),
      audit: { append: (e) => audit.append(e) },
      log: log.child({ component: "policy-guard" }),
      // DOCUMENTS.md section 5: a decommission stops everything and wipes the credentials.
      onDecommission: () => {
        for (const f of [MACHINE_KEY_FILE, ENROLLMENT_FILE]) {
          rmSync(join(o.stateDir, f), { force: true });
        }
        audit.append({ type: "credentials.wiped", files: [MACHINE_KEY_FILE, ENROLLMENT_FILE] });
        endTerminated();
      },
    });
    engineRef = engine;
    engine.registerMiningGate(gate);
    // The state follows every change of the decision, also those time alone brings (a
    // schedule window ending, a publication past its grace): a gate that only records.
    engine.registerMiningGate({
      name: "agent-state",
      apply: () => followDecision?.("the decision changed"),
    });
    // The services: the supervisor as the policy guard's services gate (before the engine
    // starts, so the first decision reaches it too).
    const supervisor: Supervisor | null = createSupervisor(o.config, {
      workerId,
      stateDir: o.stateDir,
      clock: o.clock,
      timers: backgroundTimers,
      logger: log,
      onEvent: (e) => {
        metrics.serviceEvent(e);
        if (e.type === "service.restart_scheduled") return; // a log line is enough
        try {
          audit.append({ ...e, actor: "supervisor" });
        } catch {
          // counted lost by the audit sink, which holds mining meanwhile
        }
      },
      ...(o.serviceDriver === undefined ? {} : { driver: o.serviceDriver }),
    });
    if (supervisor !== null) {
      engine.registerServicesGate(supervisor.gate);
      onStop("supervisor", () => supervisor.close());
    }
    const stratum = await proxy.listen();
    onStop("stratum proxy", () => proxy.close());
    await engine.start();
    onStop("engine", () => engine.close());

    /** What the data path was given: the decision with the holds applied. */
    const effective = () => {
      const e = gate.effective();
      const d = engine.current().mining;
      return e ?? { allow: false, reasons: d.reasons };
    };
    /** The consent in force: verified, not revoked, expired or decommissioned. */
    const consentInForce = (): ConsentInForce | null => {
      const d = engine.documents();
      if (d.consent === null || d.consentReasons.length > 0) return null;
      return { identity: d.consent.identity, payload: d.consent.payload };
    };
    // The control plane's assignment (assignment.ts): kept across restarts, verified again.
    const assignmentPath = join(o.stateDir, ASSIGNMENT_FILE);
    let assignment: Assignment | null = null;
    // Nothing fetched yet counts as a failed fetch: a kept assignment holds until one answers.
    let assignmentFetchFailed = true;
    const kept = readAssignmentJws(assignmentPath);
    const consentAtStart = consentInForce();
    if (kept !== null && consentAtStart !== null) {
      const c = checkAssignment(kept, {
        keyset: enrolled.keyset,
        worker: workerId,
        consent: consentAtStart,
        clock: o.clock,
        acceptExpired: true,
      });
      if (c.ok) assignment = c.assignment;
    }
    const assigned = (): boolean => {
      const consent = consentInForce()?.identity ?? null;
      const expired = assignment !== null && o.clock.now() >= assignment.exp * 1000;
      if (expired && assignment?.consent === consent && !assignmentFetchFailed) {
        // Just expired: a renewal is fetched, and until it answers the kept one counts, as it
        // does when none can be fetched (no gap at each renewal).
        if (assignmentFetch === null && !assignmentStopped) void fetchAssignment("expired");
        return assignmentFetch !== null;
      }
      return assignmentInForce(assignment, consent, o.clock.now(), assignmentFetchFailed);
    };
    /** Holds or releases the data path by the assignment, and points it at the assigned pool. */
    const applyAssignment = () => {
      if (assigned() && assignment !== null) {
        gate.prefer(assignment.upstream);
        gate.release("agent.unassigned");
      } else {
        gate.hold("agent.unassigned");
      }
    };

    // Forwarded shares the pool accepted when the machine was assigned: MINING after more.
    let acceptedAtAssign = proxy.accounting.totals.forwardAccepted;
    const follow = (why: string) => {
      // A new consent makes the assignment of the old one count no more, at once.
      applyAssignment();
      for (let step = 0; step < 4; step++) {
        const e = effective();
        // Eligibility is the decision with the other holds; the assignment is its own step.
        const others = e.reasons.filter((r) => r !== "agent.unassigned");
        const current = state.current().state;
        const event = nextEvent(current, {
          allow: e.allow || (e.reasons.length > 0 && others.length === 0),
          reasons: others,
          assigned: assigned(),
          sharesAccepted: proxy.accounting.totals.forwardAccepted > acceptedAtAssign,
        });
        if (event === null) break;
        if (event === "assigned") acceptedAtAssign = proxy.accounting.totals.forwardAccepted;
        const detail =
          event === "assigned"
            ? `assigned to ${assignment?.upstream.url ?? "a pool"} as ${assignment?.upstream.user ?? "?"}`
            : event === "mining_started"
              ? "the pool accepted forwarded work"
              : event === "ineligible" && others.length === 0
                ? `${why}: no assignment in force`
                : others.length === 0
                  ? why
                  : `${why}: ${others.join(", ")}`;
        if (!move(event, detail)) break;
      }
      const now = effective();
      metrics.decision(now.allow, now.reasons);
    };
    followDecision = follow;
    follow("start");
    // The data path changes without the decision changing (the first share is accepted, an
    // assignment expires): looked at every second, cheaply.
    const followTimer = setInterval(() => follow("the data path"), 1_000);
    followTimer.unref();
    onStop("state follower", () => clearInterval(followTimer));

    /** Whether a revocation covers the consent in force (one of older consents does not). */
    const consentRevoked = () => engine.documents().consentReasons.includes("consent.revoked");
    const bundleAccepted = (source: string) => {
      const current = state.current().state;
      if (current === "ATTESTED") move("policy_synced", `bundle accepted (${source})`);
      if (current === "REVOKED" && !consentRevoked()) {
        move("consent_renewed", `a newer consent (${source})`);
      }
      follow(`decision after the bundle (${source})`);
      void fetchAssignment(`bundle (${source})`);
    };
    /** Stops mining for good on this enrollment (the state is persisted: restarts refuse). */
    const quarantine = (why: string) => {
      gate.hold("agent.quarantined");
      move("quarantined", why);
    };
    /** A revocation from any source; the time from its arrival to the gate's ack measured. */
    const revoke = async (jws: string, source: "push" | "local") => {
      const t0 = performance.now();
      const r = await engine.submitRevocation(jws, source);
      if (r.accepted) metrics.revokeToStop((performance.now() - t0) / 1000);
      const label = source === "push" ? "push" : "local API";
      if (r.accepted && consentRevoked()) move("revoked", `owner-signed revocation (${label})`);
      follow("decision after the revocation");
      return r;
    };

    const client: MachineClient = createMachineClient({
      url: enrolled.record.url,
      caPem: enrolled.record.ca_pem,
      clock: o.clock,
      machineKey: machine.privateKey,
    });
    onStop("client", () => client.close());

    /**
     * The control plane's key set, rotated: fetched at every attestation and whenever a
     * document names a key this machine does not know; accepted only if the pinned root
     * signed it with a higher seq (acceptKeySetUpdate), then kept in enrollment.json and given
     * to the policy guard and the command executor. True when it changed.
     */
    let keyset = enrolled.keyset;
    let record = enrolled.record;
    const refreshKeys = async (why: string): Promise<boolean> => {
      const { keyset: jws } = await client.getKeys();
      if (jws === keyset.jws) return false;
      let next: typeof keyset;
      try {
        next = acceptKeySetUpdate(keyset, jws);
      } catch (err) {
        audit.append({
          type: "keys.refused",
          reason: isAgentdError(err) ? err.code : "invalid",
          why,
        });
        log.warn({ err }, "the control plane's key set was refused");
        return false;
      }
      record = storeKeySet(o.stateDir, record, jws);
      keyset = next;
      audit.append({ type: "keys.updated", keyset_seq: next.seq, why });
      await engine.setPublicationKeys(Object.values(next.keys.publication));
      log.info({ seq: next.seq, why }, "accepted a rotated key set");
      return true;
    };
    /**
     * True when the key set in force is newer than `seenSeq` (the one in force when the caller
     * met the unknown key) after refreshing: also when another
     * path (the assignment, a command, the poll) fetched the rotation first, so every path
     * that met an unknown key retries once the new keys are in.
     */
    let keysRefresh: Promise<boolean> | null = null;
    const refreshKeysQuietly = async (why: string, seenSeq: number): Promise<boolean> => {
      keysRefresh ??= refreshKeys(why)
        .catch((err: unknown) => {
          log.warn({ err }, "fetching the key set failed");
          return false;
        })
        .finally(() => {
          keysRefresh = null;
        });
      await keysRefresh;
      return keyset.seq > seenSeq;
    };

    /**
     * Fetches the assignment for the consent in force: after every accepted bundle, after
     * attestation, and a minute before the one held expires. One fetch at a time. A fetch that
     * fails keeps the one held (assignment.ts says why); one that answers replaces it, and an
     * answer that does not verify leaves none (fail closed), audited.
     */
    let assignmentFetch: Promise<void> | null = null;
    let assignmentTimer: ReturnType<typeof setTimeout> | undefined;
    let assignmentStopped = false;
    const fetchAssignment = (why: string): Promise<void> => {
      assignmentFetch ??= (async () => {
        // Yield first: the `finally` below must not run before this promise is assigned.
        await Promise.resolve();
        try {
          if (assignmentStopped) return;
          const consent = consentInForce();
          if (consent === null) return;
          let jws: string;
          try {
            jws = (await client.getAssignment()).assignment;
          } catch (err) {
            const status = isAgentdError(err) ? err.context.status : undefined;
            if (status === 403 || status === 404) {
              // The control plane answered that there is none for this machine (nothing
              // published, the consent expired, quarantined): the one kept counts no more. A
              // 409 (the publication is being re-issued, or stop) and anything else is
              // transient: the kept one holds while the decision allows.
              assignment = null;
              assignmentFetchFailed = false;
            } else {
              assignmentFetchFailed = true;
            }
            if (!assignmentStopped) log.warn({ err, why }, "fetching the assignment failed");
            return;
          }
          const check = () =>
            checkAssignment(jws, { keyset, worker: workerId, consent, clock: o.clock });
          const seq0 = keyset.seq;
          let c = check();
          if (!c.ok && c.reason === "AGENTD_E_JWS_UNKNOWN_KEY") {
            if (await refreshKeysQuietly("unknown assignment key", seq0)) c = check();
          }
          // Already expired by this machine's clock (the clocks disagree, or the control
          // plane answers with an old one): everything else verified, it is kept as if no
          // fresh one could be fetched — it counts while the decision, which owns time
          // (publication, offline grace, clock floor), allows mining.
          let stale = false;
          if (!c.ok && c.reason === "AGENTD_E_JWS_EXPIRED") {
            const again = checkAssignment(jws, {
              keyset,
              worker: workerId,
              consent,
              clock: o.clock,
              acceptExpired: true,
            });
            if (again.ok) {
              c = again;
              stale = true;
            }
          }
          assignmentFetchFailed = stale;
          if (!c.ok) {
            assignment = null;
            audit.append({ type: "assignment.refused", reason: c.reason, why });
            log.warn({ reason: c.reason }, "the control plane's assignment was refused");
            return;
          }
          if (assignment?.jws !== c.assignment.jws) {
            assignment = c.assignment;
            writeAssignmentJws(assignmentPath, jws);
            audit.append({
              type: "assignment.accepted",
              upstream: { ...c.assignment.upstream },
              exp: c.assignment.exp,
              why,
              ...(stale ? { stale: true } : {}),
            });
          }
        } finally {
          assignmentFetch = null;
          follow(`assignment (${why})`);
          scheduleAssignment();
          // The consent changed while this fetch was out: fetch for the new one.
          if (!assignmentStopped && !assigned() && consentInForce() !== null) {
            const c = consentInForce();
            if (c !== null && assignment?.consent !== c.identity && why !== "consent changed") {
              void fetchAssignment("consent changed");
            }
          }
        }
      })();
      return assignmentFetch;
    };
    const scheduleAssignment = () => {
      clearTimeout(assignmentTimer);
      if (assignmentStopped) return;
      const held = assignment?.exp;
      const left = held === undefined ? 0 : held * 1000 - o.clock.now();
      // Renewed a minute before it expires, or halfway for short-lived ones.
      const inMs =
        held === undefined || assignmentFetchFailed || !assigned()
          ? 30_000
          : Math.max(1_000, Math.min(left - 60_000, left / 2));
      assignmentTimer = setTimeout(
        () => void fetchAssignment("renewal"),
        Math.min(inMs, 3_600_000),
      );
      assignmentTimer.unref();
    };
    onStop("assignment", () => {
      assignmentStopped = true;
      clearTimeout(assignmentTimer);
    });

    let lastAttestation: { at: number; verdict: string } | null = null;
    const attest = async () => {
      // Fresh facts every time: a disk image cloned onto another machine while this agent
      // runs shows up at the next attestation, not only at the next start.
      const facts = o.hostFacts();
      if (facts.machine_id_sha256 !== enrolled.record.machine_id_sha256) {
        quarantine("the machine id changed under the running agent: a cloned identity");
        throw fail("AGENTD_E_IDENTITY_CLONED", "the machine id is not the one enrolled", {
          path: o.stateDir,
        });
      }
      const a = await client.attest(facts);
      lastAttestation = { at: o.clock.now(), verdict: a.verdict };
      if (a.quarantined) quarantine(`the control plane quarantined this machine (${a.verdict})`);
      else if (state.current().state === "REGISTERED") move("attested", `attestation ${a.verdict}`);
      await refreshKeysQuietly("attestation", keyset.seq);
      void fetchAssignment("attestation");
      return a;
    };
    // Again every attestIntervalMs, and a minute before the access token expires; never once
    // stopping has begun.
    const attestEveryMs = o.attestIntervalMs ?? 15 * 60_000;
    let attestTimer: ReturnType<typeof setTimeout> | undefined;
    let attesting = true;
    const scheduleAttest = (expiresAt: number) => {
      if (!attesting) return;
      const beforeExpiry = expiresAt * 1000 - o.clock.now() - 60_000;
      const inMs = Math.max(Math.min(5_000, attestEveryMs), Math.min(attestEveryMs, beforeExpiry));
      attestTimer = setTimeout(() => {
        attest().then(
          (a) => scheduleAttest(a.expires_at),
          (err: unknown) => {
            if (!attesting) return;
            log.warn({ err }, "attestation failed; retrying");
            scheduleAttest(Math.floor(o.clock.now() / 1000) + 90);
          },
        );
      }, inMs);
      attestTimer.unref();
    };
    // The first attestation runs in the background: the agent is ready — its stored policy
    // enforced, the proxy listening, the local API up — without waiting for the network. The
    // control plane may be unreachable when the machine starts (a reboot during an outage):
    // on its stored bundle the policy guard decides, until the publication's expiry plus the
    // offline grace, and the agent keeps trying to attest. What needs a session (the long
    // poll, the push stream, the assignment) starts once this has settled.
    const firstAttestation: Promise<void> = (async () => {
      let first: { expires_at: number } | null = null;
      // A few quick tries first (a connection reset, the control plane restarting): what
      // needs a session waits for this. Then the timer goes on trying.
      for (let attempt = 0; attempt < 3 && attesting && first === null; attempt++) {
        try {
          first = await attest();
        } catch (err) {
          if (!attesting) return;
          if (isAgentdError(err) && err.code === "AGENTD_E_IDENTITY_CLONED") break;
          log.warn({ err, attempt }, "attestation failed at start; running on the stored policy");
          await new Promise((r) => setTimeout(r, 250 * 2 ** attempt).unref());
        }
      }
      if (!attesting) return;
      void fetchAssignment("start");
      scheduleAttest(first?.expires_at ?? Math.floor(o.clock.now() / 1000) + 70);
    })();
    onStop("attestation timer", () => {
      attesting = false;
      clearTimeout(attestTimer);
    });

    /**
     * The operator's pause. A stop: held first, at once, even if it cannot be recorded or
     * persisted (a full disk must not keep a machine mining that its operator stopped; the
     * audit hold then stops it anyway).
     */
    const pause = (by: string) => {
      gate.hold("agent.paused");
      pauseUnsaved = { by, at: o.clock.now() };
      try {
        audit.append({ type: "mining.paused", by });
      } catch (err) {
        log.error({ err }, "the pause holds, but could not be recorded");
      }
      savePauseIfUnsaved();
      follow(`paused by ${by}`);
    };
    /** Lifts only the operator's own hold (the decision still decides); recorded first. */
    const resume = (by: string) => {
      audit.append({ type: "mining.resumed", by });
      writePause(pausePath, { paused: false, by, at: o.clock.now() });
      pauseUnsaved = null;
      gate.release("agent.paused");
      follow(`resumed by ${by}`);
    };
    const done = (reason: string) => ({ status: "done" as const, reason });

    const executor = createCommandExecutor({
      workerId,
      keyset: () => keyset,
      // Only under a consent in force: not a revoked, decommissioned or expired one.
      allowed: () => {
        const docs = engine.documents();
        const valid = docs.consent !== null && docs.consentReasons.length === 0;
        return valid ? (docs.consent?.payload.rules.commands ?? null) : null;
      },
      handlers: {
        "mining.pause": async (_args, c) => {
          pause(`command ${c.cmd_id}`);
          return done("mining paused");
        },
        "mining.resume": async (_args, c) => {
          resume(`command ${c.cmd_id}`);
          const e = effective();
          return done(
            e.allow ? "mining resumed" : `resumed; still denied: ${e.reasons.join(", ")}`,
          );
        },
        ...(supervisor === null
          ? {}
          : {
              "service.start": async (args: { service: ServiceKind }) => {
                await serviceAction(supervisor as Supervisor, args.service, "start");
                return done(`${args.service} started`);
              },
              "service.stop": async (args: { service: ServiceKind }) => {
                await serviceAction(supervisor as Supervisor, args.service, "stop");
                return done(`${args.service} stopped (until started again)`);
              },
              "service.restart": async (args: { service: ServiceKind }) => {
                await serviceAction(supervisor as Supervisor, args.service, "restart");
                return done(`${args.service} restarted`);
              },
            }),
        "worker.quarantine": async (args) => {
          quarantine(`quarantined by command: ${args.reason}`);
          // Held in memory in any case; reported done only once it is on disk (a restart
          // would otherwise mine again).
          return state.current().state === "QUARANTINED"
            ? done("quarantined")
            : { status: "failed" as const, reason: "quarantined until restart: not recorded" };
        },
      },
      clock: o.clock,
      ledgerPath: join(o.stateDir, COMMAND_LEDGER_FILE),
      audit: (r) => audit.append({ ...r }),
      postResult: (r) => client.postCommandResult(r),
    });

    /** The fallback to push for commands: one poll at a time, only commands not yet seen. */
    let commandPoll: Promise<void> | null = null;
    // Commands polled once already (also those refused before verification, which the ledger
    // cannot hold): not fetched and refused again at every heartbeat.
    const polledIds = new Set<string>();
    const pollCommands = (): Promise<void> => {
      commandPoll ??= (async () => {
        await Promise.resolve();
        try {
          const fresh = await newCommandsByPolling({
            poll: (after) => client.pollCommands({ after }),
            handled: (id) => executor.has(id),
            seen: polledIds,
          });
          if (fresh.length > 0) {
            log.info({ count: fresh.length }, "commands fetched by polling");
            await executor.executeAll(fresh);
          }
        } catch (err) {
          log.warn({ err }, "polling commands failed");
        } finally {
          commandPoll = null;
        }
      })();
      return commandPoll;
    };

    /** A bundle from the push stream, the long poll or the local API, through the guard. */
    const submitBundle = async (bundle: unknown, source: "push" | "poll" | "local") => {
      const seq0 = keyset.seq;
      let r = await engine.submitBundle(bundle, source);
      // Signed by a key not known yet: a rotation; fetch the key set and try again.
      if (!r.accepted && r.reasons.includes("publication.unknown_key")) {
        if (await refreshKeysQuietly("unknown publication key", seq0)) {
          r = await engine.submitBundle(bundle, source);
        }
      }
      if (r.accepted) bundleAccepted(source);
      return r;
    };

    const onEvent = async (e: WorkerEvent) => {
      switch (e.kind) {
        case "publication": {
          await submitBundle({ consent: e.consent, publication: e.jws }, "push");
          return;
        }
        case "revocation": {
          await revoke(e.jws, "push");
          return;
        }
        case "decommission": {
          const r = await engine.submitDecommission(e.jws, "push");
          if (r.accepted) move("decommissioned", "owner-signed decommission (push)");
          return;
        }
        case "command": {
          const seq0 = keyset.seq;
          const out = await executor.execute(e.jws);
          if (out.reason === "command.invalid: AGENTD_E_JWS_UNKNOWN_KEY") {
            if (await refreshKeysQuietly("unknown command key", seq0))
              await executor.execute(e.jws);
          }
          return;
        }
      }
    };
    // Resumed from the last event handled, across restarts: history is not replayed.
    const streamFile = join(o.stateDir, STREAM_FILE);
    const streamState = readStateFile(streamFile, { format: 1 });
    const after = Number((streamState?.data as { after?: unknown } | undefined)?.after ?? 0);
    let stream: StreamHandle | null = null;
    let streaming = true;
    void firstAttestation.then(() => {
      if (!streaming) return;
      stream = client.openStream({
        after: Number.isSafeInteger(after) && after >= 0 ? after : 0,
        onEvent: async (e) => {
          await onEvent(e);
          writeStateFile(streamFile, 1, { after: e.id });
        },
        onError: (err) => log.warn({ code: err.code, err }, "push stream"),
      });
    });
    onStop("push stream", () => {
      streaming = false;
      stream?.close();
    });

    // The policy long poll: the same bundle the stream pushes, for when push is not possible.
    // Stopping does not wait for a poll in flight: closing the client ends it.
    let polling = true;
    let wake: (() => void) | undefined;
    onStop("policy poll", () => {
      polling = false;
      wake?.();
    });
    const sleep = (ms: number) =>
      new Promise<void>((r) => {
        const t = setTimeout(r, ms);
        wake = () => {
          clearTimeout(t);
          r();
        };
      });
    void (async () => {
      await firstAttestation;
      let etag: string | null = null;
      while (polling) {
        try {
          const a = await client.getPolicy({ etag, waitS: o.longPollS ?? 25 });
          if (!polling) return;
          if (a.changed) {
            etag = a.etag;
            await submitBundle(a.bundle, "poll");
          }
        } catch (err) {
          if (!polling) return;
          if (!(isAgentdError(err) && err.code === "AGENTD_E_CP_NOT_FOUND")) {
            log.warn({ err }, "policy poll failed");
          }
          await sleep(5_000);
        }
      }
    })();

    const binarySha256 = o.hostFacts().binary_sha256;
    // Given once the tracker below exists (it reports through a heartbeat).
    let eligibilityNow:
      | (() => { eligible: boolean; reasons: string[]; uptime_ratio: number })
      | null = null;
    let lastAcceptedAt: number | null = null;
    const sender: HeartbeatSender = createHeartbeatSender({
      sign: (body) => signHeartbeat({ privateKey: machine.privateKey, body, clock: o.clock }),
      send: (jws) => client.sendHeartbeat(jws),
      counter,
      snapshot: () => {
        const docs = engine.documents();
        const e = effective();
        return {
          state: state.current().state,
          policy: {
            version: docs.publication?.payload.version ?? null,
            consent_sha256: docs.consent?.identity ?? null,
          },
          decision: { mining: e.allow, reasons: [...new Set(e.reasons)].slice(0, 32) },
          telemetry: { ...telemetry(), uptime_s: Math.floor(process.uptime()) },
          services: supervisor?.heartbeatServices() ?? {},
          agent: { version: o.agentVersion, binary_sha256: binarySha256 },
          audit_head: audit.head()?.hash ?? null,
          ...(eligibilityNow === null ? {} : { eligibility: eligibilityNow() }),
        };
      },
      timers,
      intervalMs: o.heartbeatIntervalS * 1000,
      reauthenticate: async () => {
        await attest();
      },
      onReply: (reply) => {
        lastAcceptedAt = o.clock.now();
        // Commands the control plane still waits for that the stream has not brought (it is
        // down, or behind a proxy that cuts it): fetched by polling instead.
        if (reply.pending_commands.some((id) => !executor.has(id))) void pollCommands();
      },
      onReplay: (c) => audit.append({ type: "heartbeat.replay", counter: c }),
    });
    // Heartbeats need a session: they start once the first attestation has settled.
    let beating = true;
    let senderStarted = false;
    void firstAttestation.then(() => {
      if (!beating) return;
      sender.start();
      senderStarted = true;
    });
    onStop("heartbeats", () => {
      beating = false;
      return sender.stop();
    });
    // First of all when stopping: requests in flight end now instead of at their timeouts.
    onStop("connections", () => client.close());

    /**
     * Node-reward eligibility (eligibility.ts): uptime sampled every 5 s into a persisted
     * 7-day window. Up means the agent runs on a live enrollment (not revoked, quarantined or
     * decommissioned) with a writable audit log. Lightning and bitcoind are "unknown" until
     * the supervisor's adapters report them, so no node is eligible before then (fail closed).
     * A change is audited, logged and sent in a heartbeat at once.
     */
    const eligibility = startEligibilityTracker({
      path: join(o.stateDir, ELIGIBILITY_FILE),
      clock: o.clock,
      timers,
      agentVersion: o.agentVersion,
      up: () =>
        audit.writable && !["REVOKED", "QUARANTINED", "TERMINATED"].includes(state.current().state),
      lightning: () => supervisor?.lightning(o.config.eligibility.treasury_pubkey) ?? "unknown",
      bitcoind: () => supervisor?.bitcoind() ?? "unknown",
      onReport: (r) => {
        try {
          audit.append({
            type: "eligibility.report",
            eligible: r.eligible,
            reasons: [...r.reasons],
            uptime_ratio: Math.round(r.uptime_ratio * 1e6) / 1e6,
          });
        } catch {
          // recorded as unwritable by the sink; the report itself is only informative
        }
        log.info({ eligible: r.eligible, reasons: r.reasons }, "eligibility");
        // Reported at once, when heartbeats have started (else the first one carries it).
        if (senderStarted) {
          sender.beat();
          void sender.flush();
        }
      },
      onError: (err, during) => log.warn({ err, during }, "eligibility tracker"),
    });
    onStop("eligibility", () => eligibility.close());
    eligibilityNow = () => {
      const c = eligibility.current();
      return {
        eligible: c.eligible,
        reasons: [...c.reasons].slice(0, 16),
        uptime_ratio: Math.min(1, Math.max(0, c.uptime_ratio)),
      };
    };

    /** A revocation or decommission from the owner on this machine (local API). */
    const applyLocally = async (jws: string) => {
      let typ: unknown;
      try {
        typ = decodeJwsUnverified(jws).header.typ;
      } catch {
        typ = undefined;
      }
      if (typ === DOC_TYP.decommission) {
        const r = await engine.submitDecommission(jws, "local");
        if (r.accepted) move("decommissioned", "owner-signed decommission (local API)");
        return r;
      }
      return revoke(jws, "local");
    };

    const statusOf = (): Record<string, unknown> => {
      const s = state.current();
      const d = engine.current();
      const e = effective();
      const docs = engine.documents();
      return {
        worker_id: workerId,
        url: record.url,
        owner_id: record.owner_id,
        agent_version: o.agentVersion,
        state: s.state,
        since: s.since,
        reason: s.reason,
        // What the data path was given (the holds applied) and what the documents decide.
        decision: { mining: e.allow, reasons: e.reasons },
        policy_decision: { mining: d.mining.allow, reasons: d.mining.reasons },
        holds: gate.holds(),
        policy: {
          version: docs.publication?.payload.version ?? null,
          consent_sha256: docs.consent?.identity ?? null,
        },
        keyset_seq: keyset.seq,
        attestation: lastAttestation,
        heartbeats: { ...sender.stats(), last_accepted_at: lastAcceptedAt },
        miners: proxy.miners,
        telemetry: telemetry(),
        stratum,
        audit: { writable: audit.writable, head: audit.head() },
        memory: memoryMib(),
      };
    };

    mkdirSync(dirname(o.apiSocket), { recursive: true, mode: 0o750 });
    const listen = o.config.api.listen;
    const tcp =
      listen === ""
        ? undefined
        : {
            ...hostPort(listen),
            token: apiToken(o.stateDir, o.config.api.token),
          };
    const api = await startLocalApi({
      socket: o.apiSocket,
      logger: log.child({ component: "local-api" }),
      ...(tcp === undefined ? {} : { tcp }),
      handlers: {
        status: () => statusOf(),
        policy: () => {
          const docs = engine.documents();
          const d = engine.current();
          return {
            consent:
              docs.consent === null
                ? null
                : {
                    identity: docs.consent.identity,
                    payload: docs.consent.payload,
                    reasons: docs.consentReasons,
                  },
            publication: docs.publication === null ? null : { payload: docs.publication.payload },
            decision: d,
            effective: effective(),
            holds: gate.holds(),
          };
        },
        miners: () => ({ count: proxy.miners, miners: proxy.minerViews(1000) }),
        shares: () => ({
          totals: { ...proxy.accounting.totals },
          telemetry: telemetry(),
          workers: Object.fromEntries([...proxy.accounting.workers].slice(0, 1000)),
        }),
        services: () =>
          supervisor === null
            ? { supervisor: "off", services: [] }
            : { supervisor: "on", ...supervisor.status() },
        serviceAction: async (kind, action) => {
          if (supervisor === null) {
            throw fail(
              "AGENTD_E_USAGE",
              "no services are supervised here (supervisor.driver is off)",
            );
          }
          audit.append({ type: `service.${action}_requested`, kind, by: "local API" });
          await serviceAction(supervisor, kind, action);
          return supervisor.status().services.find((x) => x.kind === kind) ?? {};
        },
        serviceLogs: async (kind, n) => ({
          kind,
          lines: supervisor === null ? [] : await supervisor.reconciler.logs(kind, n),
        }),
        eligibility: () => ({ ...eligibility.current(), maintenance: eligibility.maintenance() }),
        maintenance: (windows) => {
          // A claim that affects rewards: recorded first, like every operator action.
          audit.append({
            type: "eligibility.maintenance",
            windows: windows.map((w) => ({ ...w })),
          });
          eligibility.setMaintenance(windows);
          return { ...eligibility.current(), maintenance: eligibility.maintenance() };
        },
        audit: (n) => ({
          writable: audit.writable,
          records: readChainTail(auditPath, n).map((l) => JSON.parse(l) as unknown),
        }),
        logs: (n) => ({ lines: o.recentLogs?.(n) ?? [] }),
        revoke: applyLocally,
        bundle: (b) => submitBundle(b, "local"),
        pause: async () => {
          pause("local API");
          return statusOf();
        },
        resume: async () => {
          resume("local API");
          return statusOf();
        },
      },
    });
    onStop("local API", () => api.close());

    let metricsAddress: { host: string; port: number } | null = null;
    if (o.config.metrics.listen !== "") {
      const m = await startMetricsServer({
        ...hostPort(o.config.metrics.listen),
        registry,
        beforeRender: () => {
          const st = sender.stats();
          metrics.heartbeats(st.sent, st.failures, lastAcceptedAt, o.clock.now());
        },
      });
      metricsAddress = { host: m.host, port: m.port };
      onStop("metrics", () => m.close());
    }

    let closed: Promise<void> | undefined;
    return {
      workerId,
      url: record.url,
      apiSocket: api.socket,
      apiTcp: api.tcp,
      metrics: metricsAddress,
      stratum,
      status: statusOf,
      terminated,
      state: () => state.current().state,
      close: () => {
        closed ??= stopAll();
        return closed;
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** An operator's (or an owner-allowed command's) action on one service. */
async function serviceAction(
  s: Supervisor,
  kind: ServiceKind,
  action: "start" | "stop" | "restart",
): Promise<void> {
  if (!(SERVICE_KINDS as readonly string[]).includes(kind)) {
    throw fail("AGENTD_E_USAGE", `no service kind ${JSON.stringify(kind)}`);
  }
  if (action === "start") await s.reconciler.startService(kind);
  else if (action === "stop") await s.reconciler.stopService(kind);
  else await s.reconciler.restartService(kind);
}

/** The process's memory in MiB (status and doctor; the goal is an idle RSS under 80 MB). */
function memoryMib(): Record<string, number> {
  const m = process.memoryUsage();
  const mib = (n: number) => Math.round((n / 1048576) * 10) / 10;
  return {
    rss: mib(m.rss),
    heap_used: mib(m.heapUsed),
    heap_total: mib(m.heapTotal),
    external: mib(m.external),
    array_buffers: mib(m.arrayBuffers),
  };
}

function hostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(":");
  return {
    host: listen.slice(0, i).replace(/^\[(.*)\]$/, "$1"),
    port: Number(listen.slice(i + 1)),
  };
}

/**
 * One agent per state directory: two would each keep their own command ledger in memory (a
 * command could run twice), race for heartbeat epochs and interleave the audit chain. The
 * lock is a file made with O_EXCL holding the pid; one left by a process that is gone is
 * taken over. Returns the release.
 */
function lockStateDir(stateDir: string): () => void {
  const path = join(stateDir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
      return () => rmSync(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number(readFileSync(path, "utf8").trim());
      if (Number.isSafeInteger(pid) && pid > 0 && isAlive(pid)) {
        throw fail("AGENTD_E_FILE_EXISTS", `another agentd (pid ${pid}) runs on ${stateDir}`, {
          path,
        });
      }
      rmSync(path, { force: true });
    }
  }
  throw fail("AGENTD_E_FILE_EXISTS", `cannot lock ${stateDir}`, { path });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
