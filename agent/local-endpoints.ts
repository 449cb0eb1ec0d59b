import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { fail } from "../lib/errors.ts";
import { readChainTail } from "../lib/fs/chain-log.ts";
import { parseHostPort } from "../lib/http/host-port.ts";
import type { Registry } from "../lib/metrics/registry.ts";
import { FAMILIES } from "../plugins/driver.ts";
import type { AgentContext } from "./agent-context.ts";
import { apiToken } from "./api-token.ts";
import { type AgentFleet, isFamilyOrAuto } from "./fleet.ts";
import type { Heartbeats } from "./heartbeats.ts";
import { type LocalApi, type LocalApiHandlers, startLocalApi } from "./local-api.ts";
import { type MetricsServer, startMetricsServer } from "./metrics-server.ts";
import type { NodeEligibility } from "./node-eligibility.ts";
import type { OperatorActions } from "./operator.ts";
import type { PolicySync } from "./policy-sync.ts";
import type { AgentServices } from "./services.ts";

/**
 * What the machine's owner and operator reach on the machine itself: the local API (local-api.ts:
 * the unix socket and, with api.listen, loopback TCP with a bearer token) answering from the
 * running parts, and the Prometheus endpoint (metrics.listen). Every action goes through the
 * part that owns it: documents through the policy sync (the policy guard's checks), the pause
 * through the operator actions, services through the supervisor, maintenance recorded first.
 */
export async function startLocalEndpoints(
  ctx: AgentContext,
  o: {
    readonly apiSocket: string;
    readonly status: () => Record<string, unknown>;
    readonly policy: PolicySync;
    readonly operator: OperatorActions;
    readonly services: AgentServices;
    readonly eligibility: NodeEligibility;
    readonly heartbeats: Heartbeats;
    readonly registry: Registry;
    readonly recentLogs?: (n: number) => string[];
    readonly fleet: AgentFleet;
  },
): Promise<{ readonly api: LocalApi; readonly metrics: MetricsServer | null }> {
  const { engine, dataPath } = ctx;
  const supervisor = o.services.supervisor;
  const eligibility = o.eligibility.tracker;
  const handlers: LocalApiHandlers = {
    status: () => o.status(),
    policy: () => {
      const docs = engine.documents();
      return {
        // The key the owner's documents must be signed by now: the enrolled one, or the key
        // the last owner-key rotation named.
        owner_key: engine.ownerId(),
        consent:
          docs.consent === null
            ? null
            : {
                identity: docs.consent.identity,
                payload: docs.consent.payload,
                reasons: docs.consentReasons,
              },
        publication: docs.publication === null ? null : { payload: docs.publication.payload },
        decision: engine.current(),
        effective: dataPath.effective(),
        holds: dataPath.gate.holds(),
      };
    },
    miners: () => ({ count: dataPath.proxy.miners, miners: dataPath.proxy.minerViews(1000) }),
    shares: () => ({
      totals: { ...dataPath.proxy.accounting.totals },
      telemetry: dataPath.telemetry(),
      workers: Object.fromEntries([...dataPath.proxy.accounting.workers].slice(0, 1000)),
    }),
    services: () =>
      supervisor === null
        ? { supervisor: "off", services: [] }
        : { supervisor: "on", ...supervisor.status() },
    // The service as the supervisor sees it after the action, and what came of the action
    // (service-outcome.ts: the same truth as a command's result), recorded.
    serviceAction: async (kind, action) => {
      if (supervisor !== null) {
        ctx.audit.append({ type: `service.${action}_requested`, kind, by: "local API" });
      }
      const r = await o.services.act(kind, action);
      try {
        ctx.audit.append({
          type: `service.${action}_result`,
          kind,
          by: "local API",
          status: r.status,
          reason: r.reason,
        });
      } catch {
        // counted lost by the audit sink, which holds mining meanwhile
      }
      return { ...(r.service ?? {}), result: { status: r.status, reason: r.reason } };
    },
    serviceLogs: async (kind, n) => ({
      kind,
      lines: supervisor === null ? [] : await supervisor.reconciler.logs(kind, n),
    }),
    eligibility: () => ({ ...eligibility.current(), maintenance: eligibility.maintenance() }),
    maintenance: (windows) => {
      // A claim that affects rewards: recorded first, like every operator action.
      ctx.audit.append({
        type: "eligibility.maintenance",
        windows: windows.map((w) => ({ ...w })),
      });
      eligibility.setMaintenance(windows);
      return { ...eligibility.current(), maintenance: eligibility.maintenance() };
    },
    audit: (n) => ({
      writable: ctx.audit.writable,
      records: readChainTail(ctx.audit.path, n).map((l) => JSON.parse(l) as unknown),
    }),
    // `kept`: whether this agent keeps its log lines at all (a log ring); `level`: the lowest
    // level it logs, so that "no lines" can be told apart from "nothing worth a line yet".
    logs: (n) => ({
      lines: o.recentLogs?.(n) ?? [],
      kept: o.recentLogs !== undefined,
      level: ctx.config.log.level,
    }),
    revoke: (jws) => o.policy.applyOwnerDocument(jws, "local"),
    bundle: (b) => o.policy.submitBundle(b, "local"),
    rotateOwner: (jws) => o.policy.rotateOwner(jws, "local"),
    // The machine's own pause: set and lifted only here (operator.ts). The answer is the
    // status, whose `pause` says whether a remote pause remains.
    pause: async () => {
      o.operator.pause("local", "local API");
      return o.status();
    },
    resume: async () => {
      o.operator.resume("local", "local API");
      return o.status();
    },
    fleet: () => o.fleet.view(),
    fleetAdopt: async (b) => {
      if (!isFamilyOrAuto(b.firmware)) {
        throw fail("AGENTD_E_SCHEMA", `firmware: auto or one of ${FAMILIES.join(", ")}`);
      }
      return await o.fleet.adopt({
        address: b.address,
        firmware: b.firmware,
        credentialsFile: b.credentials,
        ...(b.api_port === undefined ? {} : { apiPort: b.api_port }),
        ...(b.web_port === undefined ? {} : { webPort: b.web_port }),
        ...(b.grpc_port === undefined ? {} : { grpcPort: b.grpc_port }),
      });
    },
    fleetForget: (id) => o.fleet.forget(id),
  };

  mkdirSync(dirname(o.apiSocket), { recursive: true, mode: 0o750 });
  const listen = ctx.config.api.listen;
  const api = await startLocalApi({
    socket: o.apiSocket,
    clock: ctx.clock,
    logger: ctx.log.child({ component: "local-api" }),
    handlers,
    ...(listen === ""
      ? {}
      : {
          tcp: {
            ...parseHostPort(listen, "api.listen"),
            token: apiToken(ctx.stateDir, ctx.config.api.token),
          },
        }),
  });
  if (ctx.config.metrics.listen === "") return { api, metrics: null };
  try {
    const metrics = await startMetricsServer({
      ...parseHostPort(ctx.config.metrics.listen, "metrics.listen"),
      registry: o.registry,
      beforeRender: () => {
        const st = o.heartbeats.stats();
        ctx.metrics.heartbeats(
          st.sent,
          st.failures,
          o.heartbeats.lastAcceptedAt(),
          ctx.clock.now(),
        );
      },
    });
    return { api, metrics };
  } catch (err) {
    await api.close();
    throw err;
  }
}
