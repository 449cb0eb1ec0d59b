import type { Clock } from "../lib/clock.ts";
import type { RateLimitConfig } from "../lib/http/rate-limit.ts";
import type { Logger } from "../lib/log/logger.ts";
import { Registry } from "../lib/metrics/registry.ts";
import { backgroundTimers, type Timers } from "../lib/timers.ts";
import {
  type ApiContext,
  type ApiGroup,
  type ApiSettings,
  DEFAULT_SETTINGS,
} from "./api/context.ts";
import { PublicKeyCache } from "./api/key-cache.ts";
import { apiKeyFinder, machineAuthenticator } from "./api/machine-auth.ts";
import { createHttpMetrics } from "./http/metrics.ts";
import { KeyedNotifier } from "./http/notifier.ts";
import { type ApiServer, createApiServer } from "./http/server.ts";
import { StreamHub } from "./http/stream-hub.ts";
import { createWsEndpoint } from "./http/ws.ts";
import type { ControlPlaneKeys } from "./keys/load.ts";
import type { Store } from "./store/store.ts";

/**
 * The control plane's composition root: context → endpoint groups → HTTPS server → listen →
 * groups' background work; `close` undoes it in reverse order, exactly once. The store and
 * the keys are opened by the caller (the CLI, or a test), which also closes the store.
 */

export interface ControlPlaneOptions {
  readonly store: Store;
  readonly keys: ControlPlaneKeys;
  readonly clock: Clock;
  /** Every wait of the control plane (default: Node's timers, unref'd); fake time in tests. */
  readonly timers?: Timers;
  readonly logger: Logger;
  readonly listen: { readonly host: string; readonly port: number };
  /** Builds the endpoint groups (control-plane/api/index.ts `allGroups` in production). */
  readonly groups: (ctx: ApiContext) => readonly ApiGroup[];
  /** The origin clients use; default `https://<listen host>:<bound port>`. */
  readonly publicUrl?: string;
  readonly settings?: Partial<Omit<ApiSettings, "publicUrl">>;
  readonly rateLimits?: { readonly perIp?: RateLimitConfig; readonly perCaller?: RateLimitConfig };
  readonly metrics?: Registry;
}

export interface RunningControlPlane {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly ctx: ApiContext;
  close(): Promise<void>;
}

function originOf(host: string, port: number): string {
  return `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

export async function startControlPlane(o: ControlPlaneOptions): Promise<RunningControlPlane> {
  let keys = o.keys;
  let server: ApiServer | undefined;
  const metrics = o.metrics ?? new Registry();
  // publicUrl is known only after listen when the port is 0; endpoints read it per request.
  const settings: { -readonly [K in keyof ApiSettings]: ApiSettings[K] } = {
    ...DEFAULT_SETTINGS,
    ...o.settings,
    publicUrl: o.publicUrl ?? "",
  };
  const ctx: ApiContext = {
    store: o.store,
    keys: () => keys,
    setKeys: (k) => {
      keys = k;
    },
    clock: o.clock,
    timers: o.timers ?? backgroundTimers,
    logger: o.logger,
    metrics,
    policyNotifier: new KeyedNotifier(),
    hub: new StreamHub(),
    publicKeys: new PublicKeyCache(),
    settings,
  };
  const groups = o.groups(ctx);
  const wsRoutes = groups.flatMap((g) => g.wsRoutes ?? []);
  server = createApiServer({
    routes: groups.flatMap((g) => g.routes),
    // The CA goes after the leaf: an enrolling agent knows only the CA's hash and finds the CA
    // in the chain (protocol/tls.ts verifyBootstrapPeer).
    tls: { key: keys.serverKeyPem, cert: certificateChain(keys) },
    findApiKey: apiKeyFinder(ctx),
    authenticateMachine: machineAuthenticator(ctx),
    clock: o.clock,
    timers: ctx.timers,
    logger: o.logger,
    metrics: createHttpMetrics(metrics),
    ...(o.rateLimits === undefined ? {} : { rateLimits: o.rateLimits }),
    ...(wsRoutes.length === 0
      ? {}
      : { onUpgrade: (shared) => createWsEndpoint(shared, { routes: wsRoutes, hub: ctx.hub }) }),
  });
  const bound = await server.listen(o.listen.port, o.listen.host);
  if (settings.publicUrl === "") settings.publicUrl = originOf(bound.host, bound.port);
  const started: ApiGroup[] = [];
  try {
    for (const g of groups) {
      await g.start?.();
      started.push(g);
    }
  } catch (err) {
    for (const g of started.reverse()) await g.stop?.();
    await server.close(0);
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    host: bound.host,
    port: bound.port,
    url: settings.publicUrl,
    ctx,
    close: () => {
      closing ??= (async () => {
        for (const g of [...started].reverse()) await g.stop?.();
        await server?.close();
        server = undefined;
      })();
      return closing;
    },
  };
}

function certificateChain(keys: ControlPlaneKeys): string {
  if (keys.serverCertPem.includes(keys.caCertPem.trim())) return keys.serverCertPem;
  return `${keys.serverCertPem.trimEnd()}\n${keys.caCertPem}`;
}
