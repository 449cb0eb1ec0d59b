import type { KeyObject } from "node:crypto";
import { readFileSync, unwatchFile, watchFile } from "node:fs";
import { join } from "node:path";
import type { Clock } from "../lib/clock.ts";
import type { AgentdConfig } from "../lib/config/schema.ts";
import { ChainLog } from "../lib/fs/chain-log.ts";
import { parseHostPort } from "../lib/http/host-port.ts";
import type { Logger } from "../lib/log/logger.ts";
import { Registry } from "../lib/metrics/registry.ts";
import { backgroundTimers } from "../lib/timers.ts";
import { EnforcementEngine } from "../policy-guard/engine.ts";
import { GUARD_STATE_FILE } from "../policy-guard/state.ts";
import type { StratumProxy } from "../stratum-client/proxy.ts";
import { summarizeAudit } from "./audit-summary.ts";
import { createGuardedProxy, proxyFacts } from "./guarded-proxy.ts";
import { ensureStateDir } from "./identity.ts";
import { type MetricsServer, startMetricsServer } from "./metrics-server.ts";

/**
 * Local mode (`agentd stratum proxy`): the Stratum proxy under the policy guard, on a bundle
 * file, with no control plane — for air-gapped farms and tests. Composition, in order: state
 * directory, audit log, enforcement engine (verifies the stored bundle again), proxy listening,
 * the proxy registered as the mining gate, the bundle file applied, then watched. `close`
 * undoes it in reverse, once.
 */

export interface LocalProxyOptions {
  readonly host: string;
  readonly port: number;
  readonly bundlePath: string;
  readonly owner: KeyObject;
  readonly publication: KeyObject;
  readonly worker: string;
  readonly stateDir: string;
  readonly config: AgentdConfig;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly agentVersion: string;
  /** How often the bundle file is checked for a change. */
  readonly watchIntervalMs?: number;
}

export interface LocalProxy {
  readonly host: string;
  readonly port: number;
  readonly metrics: { host: string; port: number } | null;
  readonly proxy: StratumProxy;
  readonly engine: EnforcementEngine;
  close(): Promise<void>;
}

export async function startLocalProxy(o: LocalProxyOptions): Promise<LocalProxy> {
  ensureStateDir(o.stateDir);
  const { log: chain } = ChainLog.open(join(o.stateDir, "audit.jsonl"));
  // Repeats (refused connections…) counted, not written each time (audit-summary.ts).
  const audit = summarizeAudit(chain, { clock: o.clock, timers: backgroundTimers });
  const registry = new Registry();
  let engine: EnforcementEngine | null = null;
  const proxy = createGuardedProxy({
    host: o.host,
    port: o.port,
    config: o.config,
    clock: o.clock,
    logger: o.logger,
    registry,
    audit,
    agentVersion: o.agentVersion,
    engine: () => engine,
  });
  engine = new EnforcementEngine({
    stateFile: join(o.stateDir, GUARD_STATE_FILE),
    worker: o.worker,
    trust: { owner: o.owner, publication: [o.publication] },
    clock: o.clock,
    facts: proxyFacts(proxy, () => engine),
    audit,
    log: o.logger.child({ component: "policy-guard" }),
  });
  engine.registerMiningGate(proxy);
  const address = await proxy.listen();
  await engine.start();

  const apply = async (why: string) => {
    let text: string;
    try {
      text = readFileSync(o.bundlePath, "utf8");
    } catch (err) {
      o.logger.warn({ err, path: o.bundlePath }, "bundle file unreadable");
      return;
    }
    const r = await engine?.submitBundle(text, `file:${why}`);
    o.logger.info({ accepted: r?.accepted, reasons: r?.reasons }, "bundle file applied");
  };
  await apply("start");
  const interval = o.watchIntervalMs ?? 500;
  watchFile(o.bundlePath, { interval, persistent: false }, (cur, prev) => {
    if (cur.mtimeMs !== prev.mtimeMs || cur.size !== prev.size || cur.ino !== prev.ino)
      void apply("change");
  });

  const stop = async () => {
    unwatchFile(o.bundlePath);
    await proxy.close();
    engine?.close();
    audit.close(); // the counts still pending
    chain.close();
  };
  // The agent's metrics server, loopback check included. If it cannot start (a LAN address,
  // a port in use), what started before it is stopped again.
  let metrics: MetricsServer | null = null;
  try {
    if (o.config.metrics.listen !== "") {
      metrics = await startMetricsServer({
        ...parseHostPort(o.config.metrics.listen, "metrics.listen"),
        registry,
      });
    }
  } catch (err) {
    await stop();
    throw err;
  }

  let closing: Promise<void> | null = null;
  return {
    ...address,
    metrics: metrics === null ? null : { host: metrics.host, port: metrics.port },
    proxy,
    engine,
    close: () => {
      closing ??= (async () => {
        await metrics?.close();
        await stop();
      })();
      return closing;
    },
  };
}
