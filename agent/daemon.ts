import { join, resolve } from "node:path";
import { createMachineClient } from "../control-plane/protocol/client-machine.ts";
import { fail } from "../lib/errors.ts";
import { Registry } from "../lib/metrics/registry.ts";
import { backgroundTimers } from "../lib/timers.ts";
import type { EnforcementEngine } from "../policy-guard/engine.ts";
import type { AgentBase, AgentContext } from "./agent-context.ts";
import { agentMetrics } from "./agent-metrics.ts";
import { admitStart, agentStates, openAgentState, STATE_FILE } from "./agent-state.ts";
import { startAssignmentSync } from "./assignment-sync.ts";
import { startAttestation } from "./attestation.ts";
import { openAgentAudit } from "./audit-log.ts";
import { agentCommands } from "./commands.ts";
import type { AgentDaemonOptions, RunningAgent } from "./daemon-types.ts";
import { createDataPath } from "./data-path.ts";
import { startDrivers } from "./drivers.ts";
import { createEnforcement } from "./enforcement.ts";
import { readEnrollment } from "./enrollment.ts";
import { type AgentFleet, startFleet } from "./fleet.ts";
import { startHeartbeats } from "./heartbeats.ts";
import { ensureStateDir, loadMachineIdentity } from "./identity.ts";
import { keySetHolder } from "./key-set.ts";
import { writeLocalApiRecord } from "./local-api-record.ts";
import { startLocalEndpoints } from "./local-endpoints.ts";
import { startNodeEligibility } from "./node-eligibility.ts";
import { operatorActions } from "./operator.ts";
import { Parts } from "./parts.ts";
import { openPauseFile, PAUSE_FILE } from "./pause-state.ts";
import { startPolicySync } from "./policy-sync.ts";
import { startPushStream } from "./push-stream.ts";
import { startServices } from "./services.ts";
import { lockStateDir } from "./state-dir-lock.ts";
import { startStateDriver } from "./state-driver.ts";
import { statusView } from "./status-view.ts";

/**
 * `agentd run`: the composition root of an enrolled machine talking to its control plane.
 * Wiring only — each part lives in its own file (ARCHITECTURE.md, agent/README.md) — started
 * in this order, each registering its undoing with `Parts`, which stops them in reverse, once:
 *
 *  1. the state directory lock, the audit log (everything below records into it), the state;
 *  2. the data path (the Stratum proxy behind the local holds) and the enforcement engine on
 *     the stored bundle, with the data path and the supervisor's services as its gates;
 *  3. the protocol client and the control plane's key set;
 *  4. the assignment, the state driver, attestation, the policy sync (bundles, revocations, the
 *     long poll), the operator's actions, the commands, the push stream;
 *  5. eligibility, heartbeats, and what the owner reaches locally: the API and the metrics.
 *
 * The first attestation runs in the background: the agent is ready on its stored policy
 * without waiting for the network (attestation.ts says why).
 */

export type { AgentDaemonOptions, RunningAgent } from "./daemon-types.ts";
export { LOCK_FILE } from "./state-dir-lock.ts";

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
  const timers = o.timers ?? backgroundTimers;
  const parts = new Parts(log);
  parts.add("state directory lock", lockStateDir(o.stateDir));
  try {
    const registry = new Registry();
    const metrics = agentMetrics(registry);
    const audit = openAgentAudit({
      stateDir: o.stateDir,
      log,
      clock: o.clock,
      timers,
      ...auditProbe(o),
    });
    parts.add("audit log", () => audit.close());
    const store = openAgentState(
      join(o.stateDir, STATE_FILE),
      (r) => audit.append({ ...r }),
      o.clock,
    );
    const states = agentStates(store, { log, onMoved: (s) => metrics.state(s) });
    admitStart(states, {
      stateDir: o.stateDir,
      url: enrolled.record.url,
      enrolledMachineId: enrolled.record.machine_id_sha256,
      machineId: o.hostFacts().machine_id_sha256,
    });
    const base: AgentBase = {
      stateDir: o.stateDir,
      workerId: machine.workerId,
      config: o.config,
      clock: o.clock,
      timers,
      log,
      signal: parts.signal,
      audit,
      metrics,
      states,
    };

    const pause = openPauseFile(join(o.stateDir, PAUSE_FILE), (err) =>
      log.error({ err }, "the pause holds, but could not be saved yet"),
    );
    let engineRef: EnforcementEngine | null = null;
    let fleetRef: AgentFleet | null = null;
    const dataPath = createDataPath(base, {
      stratum: o.stratum,
      agentVersion: o.agentVersion,
      registry,
      pause,
      quarantined: states.current().state === "QUARANTINED",
      engine: () => engineRef,
    });
    const { engine, terminated } = createEnforcement(base, {
      owner: enrolled.ownerKey,
      publication: Object.values(enrolled.keyset.keys.publication),
      // the data path's facts and, once it runs, the fleet's (measured watts, hottest chip)
      facts: () => ({ ...dataPath.facts(), ...fleetRef?.facts() }),
    });
    engineRef = engine;
    dataPath.attach(engine);
    const services = startServices(base, engine, o.serviceDriver);
    parts.add("supervisor", () => services.close());
    const drivers = startDrivers(base, { asInvokingUser: o.driversAsInvokingUser === true });
    parts.add("drivers", () => drivers.stop());
    const stratum = await dataPath.proxy.listen();
    parts.add("stratum proxy", () => dataPath.proxy.close());
    await engine.start();
    parts.add("engine", () => engine.close());

    const client = createMachineClient({
      url: enrolled.record.url,
      caPem: enrolled.record.ca_pem,
      clock: o.clock,
      timers,
      machineKey: machine.privateKey,
    });
    parts.add("client", () => client.close());
    const keys = keySetHolder({ stateDir: o.stateDir, enrolled, client, engine, audit, log });
    const ctx: AgentContext = { ...base, engine, dataPath, client, keys };
    const fleet = startFleet(ctx, { drivers, stratum });
    fleetRef = fleet;
    parts.add("fleet", () => fleet.stop());

    const assignment = startAssignmentSync(ctx);
    parts.add("assignment", () => assignment.stop());
    const driver = startStateDriver(ctx, assignment);
    parts.add("state driver", () => driver.stop());
    const attestation = startAttestation(ctx, {
      hostFacts: o.hostFacts,
      enrolledMachineId: enrolled.record.machine_id_sha256,
      intervalMs: o.attestIntervalMs ?? 15 * 60_000,
      driver,
      assignment,
    });
    parts.add("attestation", () => attestation.stop());
    const attested = attestation.first;
    const policy = startPolicySync(ctx, { driver, attested, longPollS: o.longPollS ?? 25 });
    const operator = operatorActions(ctx, { pause, driver });
    // A remote pause is the control plane's, under the consent it was sent with: the owner's
    // next consent ends it, as it ends everything the control plane's keys did before.
    policy.onNewConsent(() => {
      if (operator.pauses().remote !== null) operator.resume("remote", "the owner's newer consent");
    });
    const commands = agentCommands(ctx, { operator, services, driver });
    const stream = startPushStream(ctx, { attested, policy, commands });
    parts.add("push stream", () => stream.stop());

    const eligibility = startNodeEligibility(ctx, { agentVersion: o.agentVersion, services });
    parts.add("eligibility", () => eligibility.tracker.close());
    const heartbeats = startHeartbeats(ctx, {
      machineKey: machine.privateKey,
      intervalS: o.heartbeatIntervalS,
      agentVersion: o.agentVersion,
      binarySha256: o.hostFacts().binary_sha256,
      attestation,
      commands,
      services,
      eligibility,
      fleet: () => fleet.forHeartbeat(),
    });
    parts.add("heartbeats", () => heartbeats.stop());
    // First of all when stopping: requests in flight end now instead of at their timeouts.
    parts.add("connections", () => client.close());

    const status = statusView(ctx, {
      agentVersion: o.agentVersion,
      stratum,
      attestation,
      heartbeats,
      pauses: () => operator.pauses(),
      drivers: () => drivers.status(),
      fleet: () => fleet.summary(),
    });
    const local = await startLocalEndpoints(ctx, {
      apiSocket: o.apiSocket,
      status,
      policy,
      operator,
      services,
      eligibility,
      heartbeats,
      registry,
      fleet,
      ...(o.recentLogs === undefined ? {} : { recentLogs: o.recentLogs }),
    });
    parts.add("local API", () => local.api.close());
    if (local.metrics !== null) parts.add("metrics", () => local.metrics?.close());
    const metricsAt =
      local.metrics === null ? null : { host: local.metrics.host, port: local.metrics.port };
    parts.add(
      "local API record",
      writeLocalApiRecord(o.stateDir, {
        pid: process.pid,
        socket: resolve(local.api.socket),
        tcp: local.api.tcp,
        metrics: metricsAt,
      }),
    );

    return {
      workerId: machine.workerId,
      url: enrolled.record.url,
      apiSocket: local.api.socket,
      apiTcp: local.api.tcp,
      metrics:
        local.metrics === null ? null : { host: local.metrics.host, port: local.metrics.port },
      stratum,
      status,
      terminated,
      state: () => states.current().state,
      close: () => parts.stopAll(),
    };
  } catch (err) {
    await parts.stopAll();
    throw err;
  }
}

const auditProbe = (o: AgentDaemonOptions) => ({
  ...(o.auditProbeMs === undefined ? {} : { probeMs: o.auditProbeMs }),
  ...(o.auditMinFreeBytes === undefined ? {} : { minFreeBytes: o.auditMinFreeBytes }),
});
