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
import { ChainLog } from "../lib/fs/chain-log.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";
import type { Logger } from "../lib/log/logger.ts";
import { Registry } from "../lib/metrics/registry.ts";
import { DOC_TYP } from "../policy-guard/documents.ts";
import { EnforcementEngine } from "../policy-guard/engine.ts";
import { GUARD_STATE_FILE } from "../policy-guard/state.ts";
import { type AgentStateStore, openAgentState, STATE_FILE } from "./agent-state.ts";
import { COMMAND_LEDGER_FILE, createCommandExecutor } from "./command-executor.ts";
import { ENROLLMENT_FILE, readEnrollment, storeKeySet } from "./enrollment.ts";
import { createGuardedProxy, proxyFacts } from "./guarded-proxy.ts";
import { COUNTER_FILE, openHeartbeatCounter } from "./heartbeat-counter.ts";
import { createHeartbeatSender, type HeartbeatSender } from "./heartbeat-sender.ts";
import { ensureStateDir, loadMachineIdentity, MACHINE_KEY_FILE } from "./identity.ts";
import { startLocalApi } from "./local-api.ts";
import { ACTIVE_STATES, type AgentEvent, type AgentState } from "./state-machine.ts";
import { STREAM_FILE } from "./stream-state.ts";

/**
 * `agentd run`, first layer: the composition root of an enrolled machine talking to its
 * control plane. Starts, in order: the state directory and audit log (everything below
 * records into it), the agent's state, the heartbeat counter, the enforcement engine (the
 * policy guard, on the stored bundle, the owner key pinned at enrollment and the control
 * plane's publication keys from the pinned key set) with the Stratum proxy for the ASICs as
 * its mining gate, the protocol client, attestation, the
 * policy long poll, the push stream (publications, revocations, decommissions, commands), the
 * command executor, the heartbeats. `close` stops them in reverse, once.
 *
 * The state follows the documents (BRIEF section 6): attested after attestation; POLICY_SYNCED
 * when a bundle is accepted; ELIGIBLE while the decision allows mining, back to POLICY_SYNCED
 * when it stops allowing it; REVOKED when a revocation is accepted (and POLICY_SYNCED again
 * only with a newer consent); TERMINATED after a decommission; QUARANTINED when the control
 * plane says so at attestation. The local API (local-api.ts, a unix socket) shows the status
 * and takes the owner's revocation without any control plane. Not in this layer yet (issue 6):
 * the ASSIGNED/MINING states (the proxy is gated by the decision itself), telemetry from the
 * proxy's accounting in heartbeats, the local API's other views and its TCP
 * listener, metrics, eligibility, the command handlers (every command is answered
 * `command.unsupported`), host facts for the decision.
 */

export interface AgentDaemonOptions {
  readonly stateDir: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly agentVersion: string;
  readonly heartbeatIntervalS: number;
  readonly hostFacts: () => HostFacts;
  /** Longest wait of one policy long poll (default 25 s). */
  readonly longPollS?: number;
  /** The local API's unix socket (config api.socket); its directory is made if missing. */
  readonly apiSocket: string;
  /** The configuration (`stratum.*`, `metrics.max_worker_series` for the Stratum proxy). */
  readonly config: AgentdConfig;
  /** Where the Stratum proxy listens for ASICs (config stratum.listen; port 0 allowed). */
  readonly stratum: { readonly host: string; readonly port: number };
}

export interface RunningAgent {
  readonly workerId: string;
  readonly url: string;
  readonly apiSocket: string;
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
    const { log: audit } = ChainLog.open(join(o.stateDir, "audit.jsonl"));
    onStop("audit log", () => audit.close());
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
    const move = (event: AgentEvent, reason: string) => {
      try {
        state.apply(event, reason);
        log.info({ event, state: state.current().state, reason }, "state changed");
      } catch (err) {
        if (!isAgentdError(err) || err.code !== "AGENTD_E_STATE_TRANSITION") throw err;
      }
    };
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
    // until the decision allows mining, and stops when it no longer does).
    let engineRef: EnforcementEngine | null = null;
    const proxy = createGuardedProxy({
      host: o.stratum.host,
      port: o.stratum.port,
      config: o.config,
      clock: o.clock,
      logger: log,
      registry: new Registry(),
      audit,
      agentVersion: o.agentVersion,
      engine: () => engineRef,
    });
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
    engine.registerMiningGate(proxy);
    // The state follows every change of the decision, also those time alone brings (a
    // schedule window ending, a publication past its grace): a gate that only records.
    let followDecision: ((why: string) => void) | undefined;
    engine.registerMiningGate({
      name: "agent-state",
      apply: () => followDecision?.("the decision changed"),
    });
    const stratum = await proxy.listen();
    onStop("stratum proxy", () => proxy.close());
    await engine.start();
    onStop("engine", () => engine.close());

    /** The state the documents and the decision call for now. */
    const follow = (why: string) => {
      const current = state.current().state;
      const allow = engine.current().mining.allow;
      if (allow && current === "POLICY_SYNCED") move("eligible", why);
      if (!allow && ACTIVE_STATES.includes(current)) {
        move("ineligible", `${why}: ${engine.current().mining.reasons.join(", ")}`);
      }
    };
    followDecision = follow;
    /** Whether a revocation covers the consent in force (one of older consents does not). */
    const consentRevoked = () => engine.documents().consentReasons.includes("consent.revoked");
    const bundleAccepted = (source: string) => {
      const current = state.current().state;
      if (current === "ATTESTED") move("policy_synced", `bundle accepted (${source})`);
      if (current === "REVOKED" && !consentRevoked()) {
        move("consent_renewed", `a newer consent (${source})`);
      }
      follow(`decision after the bundle (${source})`);
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
    const refreshKeysQuietly = (why: string) =>
      refreshKeys(why).catch((err: unknown) => {
        log.warn({ err }, "fetching the key set failed");
        return false;
      });

    const attest = async () => {
      const a = await client.attest(o.hostFacts());
      if (a.quarantined)
        move("quarantined", `the control plane quarantined this machine (${a.verdict})`);
      else if (state.current().state === "REGISTERED") move("attested", `attestation ${a.verdict}`);
      await refreshKeysQuietly("attestation");
      return a;
    };
    // The control plane may be unreachable when the machine starts (a reboot during an
    // outage): the agent still starts — on its stored bundle the policy guard decides, until
    // the publication's expiry plus the offline grace — and keeps trying to attest.
    let first: { expires_at: number } | null = null;
    try {
      first = await attest();
    } catch (err) {
      log.warn({ err }, "attestation failed at start; running on the stored policy, retrying");
    }
    // Again a minute before the access token expires; never once stopping has begun.
    let attestTimer: ReturnType<typeof setTimeout> | undefined;
    let attesting = true;
    const scheduleAttest = (expiresAt: number) => {
      if (!attesting) return;
      const inMs = Math.max(5_000, expiresAt * 1000 - o.clock.now() - 60_000);
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
    scheduleAttest(first?.expires_at ?? Math.floor(o.clock.now() / 1000) + 70);
    onStop("attestation timer", () => {
      attesting = false;
      clearTimeout(attestTimer);
    });

    const executor = createCommandExecutor({
      workerId,
      keyset: () => keyset,
      // Only under a consent in force: not a revoked, decommissioned or expired one.
      allowed: () => {
        const docs = engine.documents();
        const valid = docs.consent !== null && docs.consentReasons.length === 0;
        return valid ? (docs.consent?.payload.rules.commands ?? null) : null;
      },
      handlers: {},
      clock: o.clock,
      ledgerPath: join(o.stateDir, COMMAND_LEDGER_FILE),
      audit: (r) => audit.append({ ...r }),
      postResult: (r) => client.postCommandResult(r),
    });

    /** A bundle from the push stream or the long poll, through the policy guard. */
    const submitBundle = async (bundle: unknown, source: "push" | "poll") => {
      let r = await engine.submitBundle(bundle, source);
      // Signed by a key not known yet: a rotation; fetch the key set and try again.
      if (!r.accepted && r.reasons.includes("publication.unknown_key")) {
        if (await refreshKeysQuietly("unknown publication key")) {
          r = await engine.submitBundle(bundle, source);
        }
      }
      if (r.accepted) bundleAccepted(source);
    };

    const onEvent = async (e: WorkerEvent) => {
      switch (e.kind) {
        case "publication": {
          await submitBundle({ consent: e.consent, publication: e.jws }, "push");
          return;
        }
        case "revocation": {
          const r = await engine.submitRevocation(e.jws, "push");
          if (r.accepted && consentRevoked()) move("revoked", "owner-signed revocation (push)");
          follow("decision after the revocation");
          return;
        }
        case "decommission": {
          const r = await engine.submitDecommission(e.jws, "push");
          if (r.accepted) move("decommissioned", "owner-signed decommission (push)");
          return;
        }
        case "command": {
          const out = await executor.execute(e.jws);
          if (out.reason === "command.invalid: AGENTD_E_JWS_UNKNOWN_KEY") {
            if (await refreshKeysQuietly("unknown command key")) await executor.execute(e.jws);
          }
          return;
        }
      }
    };
    // Resumed from the last event handled, across restarts: history is not replayed.
    const streamFile = join(o.stateDir, STREAM_FILE);
    const streamState = readStateFile(streamFile, { format: 1 });
    const after = Number((streamState?.data as { after?: unknown } | undefined)?.after ?? 0);
    const stream: StreamHandle = client.openStream({
      after: Number.isSafeInteger(after) && after >= 0 ? after : 0,
      onEvent: async (e) => {
        await onEvent(e);
        writeStateFile(streamFile, 1, { after: e.id });
      },
      onError: (err) => log.warn({ code: err.code, err }, "push stream"),
    });
    onStop("push stream", () => stream.close());

    // The policy long poll: the same bundle the stream pushes, for when push is not possible.
    // Stopping does not wait for a poll in flight: closing the client ends it.
    let polling = true;
    let wake: (() => void) | undefined;
    onStop("policy poll", () => {
      polling = false;
      wake?.();
    });
    const pause = (ms: number) =>
      new Promise<void>((r) => {
        const t = setTimeout(r, ms);
        wake = () => {
          clearTimeout(t);
          r();
        };
      });
    void (async () => {
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
          await pause(5_000);
        }
      }
    })();

    const sender: HeartbeatSender = createHeartbeatSender({
      sign: (body) => signHeartbeat({ privateKey: machine.privateKey, body, clock: o.clock }),
      send: (jws) => client.sendHeartbeat(jws),
      counter,
      snapshot: () => {
        const docs = engine.documents();
        const d = engine.current();
        return {
          state: state.current().state,
          policy: {
            version: docs.publication?.payload.version ?? null,
            consent_sha256: docs.consent?.identity ?? null,
          },
          decision: { mining: d.mining.allow, reasons: d.mining.reasons.slice(0, 32) },
          telemetry: {
            asics: proxy.miners,
            hashrate_hs: 0,
            shares_accepted: 0,
            shares_rejected: 0,
            uptime_s: Math.floor(process.uptime()),
          },
          services: {},
          agent: { version: o.agentVersion, binary_sha256: o.hostFacts().binary_sha256 },
          audit_head: audit.head()?.hash ?? null,
        };
      },
      timers,
      intervalMs: o.heartbeatIntervalS * 1000,
      reauthenticate: async () => {
        await attest();
      },
      onReplay: (c) => audit.append({ type: "heartbeat.replay", counter: c }),
    });
    sender.start();
    onStop("heartbeats", () => sender.stop());
    // First of all when stopping: requests in flight end now instead of at their timeouts.
    onStop("connections", () => client.close());

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
      const r = await engine.submitRevocation(jws, "local");
      if (r.accepted && consentRevoked()) move("revoked", "owner-signed revocation (local API)");
      follow("decision after the revocation");
      return r;
    };
    mkdirSync(dirname(o.apiSocket), { recursive: true, mode: 0o750 });
    const api = await startLocalApi({
      socket: o.apiSocket,
      logger: log.child({ component: "local-api" }),
      handlers: {
        status: () => statusOf(),
        revoke: applyLocally,
      },
    });
    onStop("local API", () => api.close());

    const statusOf = (): Record<string, unknown> => {
      const s = state.current();
      const d = engine.current();
      const docs = engine.documents();
      return {
        worker_id: workerId,
        url: record.url,
        owner_id: record.owner_id,
        state: s.state,
        since: s.since,
        reason: s.reason,
        decision: { mining: d.mining.allow, reasons: d.mining.reasons },
        policy: {
          version: docs.publication?.payload.version ?? null,
          consent_sha256: docs.consent?.identity ?? null,
        },
        keyset_seq: keyset.seq,
        heartbeats: sender.stats(),
        miners: proxy.miners,
        audit_head: audit.head(),
      };
    };

    let closed: Promise<void> | undefined;
    return {
      workerId,
      url: record.url,
      apiSocket: api.socket,
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
