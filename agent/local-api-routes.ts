import { fail } from "../lib/errors.ts";
import type { HttpResult } from "../lib/http/respond.ts";
import type { Routable } from "../lib/http/router.ts";
import { SERVICE_KINDS, type ServiceKind } from "../supervisor/spec.ts";

/**
 * The endpoints of the agent's local API (the list is in local-api.ts) and what each does
 * with a request: the checks of its query and body, then the handler the daemon gave.
 * Handlers only see bodies that passed those checks.
 */

type Json = Record<string, unknown>;
export type ApplyResult = { readonly accepted: boolean; readonly reasons: readonly string[] };

export interface LocalApiHandlers {
  status(): Json;
  policy(): Json;
  miners(): Json;
  shares(): Json;
  services(): Json;
  eligibility(): Json;
  /** Replaces the maintenance windows to come (unix ms); past ones stay as they were. */
  maintenance(windows: readonly { start_ms: number; end_ms: number }[]): Json;
  audit(n: number): Json;
  logs(n: number): Json;
  /** Applies a revocation or decommission; what the policy guard answered. */
  revoke(jws: string): Promise<ApplyResult>;
  bundle(bundle: { readonly consent: string; readonly publication: string }): Promise<ApplyResult>;
  /** Applies an owner-key rotation (signed by the owner key in force); the guard's answer. */
  rotateOwner(jws: string): Promise<ApplyResult>;
  pause(): Promise<Json>;
  resume(): Promise<Json>;
  /** An operator's start, stop or restart of one supervised service. */
  serviceAction(kind: ServiceKind, action: "start" | "stop" | "restart"): Promise<Json>;
  serviceLogs(kind: ServiceKind, n: number): Promise<Json>;
  /** The adopted miners (fleet/): their readings, unconfirmed actions and facts. */
  fleet(): Json;
  fleetAdopt(request: AdoptBody): Promise<Json>;
  fleetForget(id: string): Promise<Json>;
}

/** POST /v1/fleet/adopt: where the miner answers, its firmware, a 0600 credentials file. */
export interface AdoptBody {
  readonly address: string;
  readonly firmware: string;
  readonly credentials: string | null;
  readonly api_port?: number;
  readonly web_port?: number;
  readonly grpc_port?: number;
}

const port = (v: unknown): v is number | undefined =>
  v === undefined || (Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65_535);

function adoptBody(body: Json): AdoptBody {
  const { address, firmware, credentials, api_port, web_port, grpc_port, ...rest } = body;
  if (
    typeof address !== "string" ||
    !/^[A-Za-z0-9.:_-]{1,253}$/.test(address) ||
    (firmware !== undefined && typeof firmware !== "string") ||
    (credentials !== undefined && credentials !== null && typeof credentials !== "string") ||
    !port(api_port) ||
    !port(web_port) ||
    !port(grpc_port) ||
    Object.keys(rest).length > 0
  ) {
    throw fail(
      "AGENTD_E_SCHEMA",
      'the body must be {"address": host, "firmware"?: family|"auto", "credentials"?: path, "api_port"?, "web_port"?, "grpc_port"?}',
    );
  }
  return {
    address,
    firmware: typeof firmware === "string" ? firmware : "auto",
    credentials: typeof credentials === "string" ? credentials : null,
    ...(api_port === undefined ? {} : { api_port }),
    ...(web_port === undefined ? {} : { web_port }),
    ...(grpc_port === undefined ? {} : { grpc_port }),
  };
}

/** What an endpoint gets: the JSON object of a POST (`{}` when empty), and the query. */
export interface LocalRequest {
  readonly body: Json;
  readonly query: URLSearchParams;
}

export interface LocalRoute extends Routable {
  readonly method: "GET" | "POST";
  run(request: LocalRequest): Promise<HttpResult>;
}

/** `?n=N`: how many records or lines, from 1 to 1000; `fallback` when absent. */
function count(query: URLSearchParams, fallback: number): number {
  const raw = query.get("n");
  if (raw === null) return fallback;
  if (!/^[0-9]{1,4}$/.test(raw) || Number(raw) < 1 || Number(raw) > 1000) {
    throw fail("AGENTD_E_USAGE", "n must be an integer from 1 to 1000", { n: raw });
  }
  return Number(raw);
}

const ok = (body: Json): HttpResult => ({ status: 200, body });

/** 200 when the policy guard took the document, else 422 with its reasons. */
const applied = (r: ApplyResult): HttpResult => ({
  status: r.accepted ? 200 : 422,
  body: { accepted: r.accepted, reasons: r.reasons },
});

type Window = { start_ms: number; end_ms: number };

function isWindows(windows: unknown): windows is Window[] {
  return (
    Array.isArray(windows) &&
    windows.length <= 256 &&
    windows.every((w: unknown) => {
      const r = w as { start_ms?: unknown; end_ms?: unknown } | null;
      return (
        typeof r === "object" &&
        r !== null &&
        Object.keys(r).length === 2 &&
        Number.isSafeInteger(r.start_ms) &&
        Number.isSafeInteger(r.end_ms) &&
        (r.start_ms as number) >= 0 &&
        (r.start_ms as number) < (r.end_ms as number)
      );
    })
  );
}

export function localApiRoutes(h: LocalApiHandlers): readonly LocalRoute[] {
  const view = (path: string, f: (query: URLSearchParams) => Json): LocalRoute => ({
    method: "GET",
    path,
    run: async ({ query }) => ok(f(query)),
  });
  const routes: LocalRoute[] = [
    view("/v1/status", () => h.status()),
    view("/v1/policy", () => h.policy()),
    view("/v1/miners", () => h.miners()),
    view("/v1/shares", () => h.shares()),
    view("/v1/services", () => h.services()),
    view("/v1/eligibility", () => h.eligibility()),
    view("/v1/audit", (q) => h.audit(count(q, 20))),
    view("/v1/logs", (q) => h.logs(count(q, 100))),
    {
      method: "POST",
      path: "/v1/revocations",
      run: async ({ body }) => {
        const document = body.document;
        if (typeof document !== "string" || document === "") {
          throw fail("AGENTD_E_SCHEMA", 'the body must be {"document": "<JWS>"}');
        }
        return applied(await h.revoke(document));
      },
    },
    {
      method: "POST",
      path: "/v1/owner-rotations",
      run: async ({ body }) => {
        const document = body.document;
        if (typeof document !== "string" || document === "" || Object.keys(body).length !== 1) {
          throw fail("AGENTD_E_SCHEMA", 'the body must be {"document": "<JWS>"}');
        }
        return applied(await h.rotateOwner(document));
      },
    },
    {
      method: "POST",
      path: "/v1/bundles",
      run: async ({ body }) => {
        const { consent, publication } = body;
        if (typeof consent !== "string" || typeof publication !== "string") {
          throw fail("AGENTD_E_SCHEMA", 'the body must be {"consent": JWS, "publication": JWS}');
        }
        return applied(await h.bundle({ consent, publication }));
      },
    },
    {
      method: "POST",
      path: "/v1/eligibility/maintenance",
      run: async ({ body }) => {
        const { windows } = body;
        if (!isWindows(windows)) {
          throw fail(
            "AGENTD_E_SCHEMA",
            'the body must be {"windows": [{"start_ms": int, "end_ms": int}, …]} with start < end, at most 256',
          );
        }
        return ok(h.maintenance(windows));
      },
    },
    view("/v1/fleet", () => h.fleet()),
    {
      method: "POST",
      path: "/v1/fleet/adopt",
      run: async ({ body }) => ok(await h.fleetAdopt(adoptBody(body))),
    },
    {
      method: "POST",
      path: "/v1/fleet/forget",
      run: async ({ body }) => {
        const { id } = body;
        if (typeof id !== "string" || id === "" || Object.keys(body).length !== 1) {
          throw fail("AGENTD_E_SCHEMA", 'the body must be {"id": "<miner id>"}');
        }
        return ok(await h.fleetForget(id));
      },
    },
    { method: "POST", path: "/v1/mining/pause", run: async () => ok(await h.pause()) },
    { method: "POST", path: "/v1/mining/resume", run: async () => ok(await h.resume()) },
  ];
  // One literal route per kind and action rather than a `{kind}` template: a kind that does
  // not exist is then 404 for every method, as any other unknown path.
  for (const kind of SERVICE_KINDS) {
    for (const action of ["start", "stop", "restart"] as const) {
      routes.push({
        method: "POST",
        path: `/v1/services/${kind}/${action}`,
        run: async () => ok(await h.serviceAction(kind, action)),
      });
    }
    routes.push({
      method: "GET",
      path: `/v1/services/${kind}/logs`,
      run: async ({ query }) => ok(await h.serviceLogs(kind, count(query, 100))),
    });
  }
  return routes;
}
