import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import { allGroups } from "../../../control-plane/api/index.ts";
import { createProof } from "../../../control-plane/protocol/proof.ts";
import { ROUTES, type Route } from "../../../control-plane/protocol/roles.ts";
import { type TestCp, type TestMachine, useTestCp } from "./harness.ts";

/**
 * The role matrix of docs/protocol.md section 4 (protocol/roles.ts), walked cell by cell
 * against the live control plane with every endpoint group: each route, as each kind of
 * caller, with a request that is syntactically valid but empty (`{}` for a POST body, none
 * for GET and DELETE, the caller's own worker for `{id}`). An allowed caller must never get 401 or 403 (it gets its
 * answer, or a 400/404 about the empty request); any other caller must always get 401 (no
 * credentials) or 403 (credentials of another kind) — also when its body is not even JSON,
 * which shows that authentication comes before the body is read.
 */

const CALLER_KINDS = ["admin", "operator", "owner", "auditor", "machine", "none"] as const;
type CallerKind = (typeof CALLER_KINDS)[number];

interface Cell {
  readonly route: string;
  readonly caller: CallerKind;
  readonly body: "empty" | "malformed";
  readonly status: number;
  readonly message: string;
}

/** Public and token routes read no credentials: every caller reaches them. */
function allowed(route: Route, caller: CallerKind): boolean {
  if (route.access.public !== undefined || route.access.token !== undefined) return true;
  return caller !== "none" && route.access[caller] !== undefined;
}

interface Callers {
  readonly keys: Readonly<Record<"admin" | "operator" | "owner" | "auditor", string>>;
  readonly machine: TestMachine;
}

/** The path with `{id}` filled by something the caller may own and the syntax accepts. */
function pathOf(route: Route, m: TestMachine): string {
  const id =
    route.path.startsWith("/v1/workers/") || route.path.startsWith("/v1/admin/workers/")
      ? m.workerId
      : randomUUID();
  return route.path.replace("{id}", id);
}

async function httpCell(
  t: TestCp,
  route: Route,
  caller: CallerKind,
  c: Callers,
  body: Cell["body"],
): Promise<Cell> {
  const path = pathOf(route, c.machine);
  const method = route.method;
  const payload =
    body === "malformed"
      ? { raw: "{not json", headers: { "content-type": "application/json" } }
      : method === "POST"
        ? { body: {} }
        : {};
  let auth: Parameters<TestCp["call"]>[2] = {};
  if (caller === "machine") {
    auth =
      route.path === "/v1/auth/agent/attest"
        ? {
            // Attest: the proof alone, no access token exists yet (docs/protocol.md section 3).
            headers: {
              ...("headers" in payload ? payload.headers : {}),
              "agentd-proof": createProof({
                privateKey: c.machine.privateKey,
                method,
                url: `${t.url}${path}`,
                clock: t.clock,
              }),
            },
          }
        : { machine: c.machine };
  } else if (caller !== "none") {
    auth = { apiKey: c.keys[caller] };
  }
  const r = await t.call(method, path, { ...payload, ...auth });
  return {
    route: `${method} ${route.path}`,
    caller,
    body,
    status: r.status,
    message: r.json?.error?.message ?? "",
  };
}

/** The stream: a WebSocket upgrade; 101 when accepted, else the refusal's status. */
function wsCell(t: TestCp, route: Route, caller: CallerKind, c: Callers): Promise<Cell> {
  const path = pathOf(route, c.machine);
  const headers: Record<string, string> = {};
  if (caller === "machine") {
    headers.authorization = `AgentD ${c.machine.accessToken}`;
    headers["agentd-proof"] = createProof({
      privateKey: c.machine.privateKey,
      method: "GET",
      url: `${t.url}${path}`,
      accessToken: c.machine.accessToken,
      clock: t.clock,
    });
  } else if (caller !== "none") {
    headers.authorization = `Bearer ${c.keys[caller]}`;
  }
  const cell = (status: number): Cell => ({
    route: `GET ${route.path}`,
    caller,
    body: "empty",
    status,
    message: "",
  });
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${t.url.replace(/^https:/, "wss:")}${path}`, {
      ca: t.caPem,
      headers,
      minVersion: "TLSv1.3",
    });
    ws.once("upgrade", () => {
      ws.terminate();
      resolve(cell(101));
    });
    ws.once("unexpected-response", (req, res) => {
      req.destroy();
      resolve(cell(res.statusCode ?? 0));
    });
    ws.once("error", (err) => {
      if (!/Unexpected server response|closed before/.test(err.message)) reject(err);
    });
  });
}

describe("the role matrix, cell by cell, against the live control plane", () => {
  const start = useTestCp();

  it("allowed callers never get 401/403; the others always do, before the body is read", async () => {
    const t = await start({ groups: allGroups });
    const owner = await t.owner();
    const machine = await t.machine(owner);
    const c: Callers = {
      keys: {
        admin: t.adminKey,
        operator: await t.apiKey("operator"),
        owner: owner.apiKey,
        auditor: await t.apiKey("auditor"),
      },
      machine,
    };
    const cells: Cell[] = [];
    for (const route of ROUTES) {
      for (const caller of CALLER_KINDS) {
        if (route.websocket === true) {
          cells.push(await wsCell(t, route, caller, c));
          continue;
        }
        cells.push(await httpCell(t, route, caller, c, "empty"));
        if (!allowed(route, caller) && route.method !== "GET") {
          cells.push(await httpCell(t, route, caller, c, "malformed"));
        }
      }
    }
    const refused = (s: number) => s === 401 || s === 403;
    const violations = cells.filter((cell) => {
      const route = ROUTES.find((r) => `${r.method} ${r.path}` === cell.route) as Route;
      if (allowed(route, cell.caller)) {
        // The endpoint exists and let the caller in.
        return refused(cell.status) || cell.message === "no such endpoint";
      }
      return !refused(cell.status) || (cell.caller === "none" && cell.status !== 401);
    });
    expect(violations).toEqual([]);
    // Every cell was walked: each route as each caller.
    expect(new Set(cells.map((x) => `${x.route} ${x.caller}`)).size).toBe(
      ROUTES.length * CALLER_KINDS.length,
    );
    // The undoing routes too: lifting a quarantine is an operator's, revoking a key an admin's.
    const status = (route: string, caller: CallerKind) =>
      cells.find((x) => x.route === route && x.caller === caller && x.body === "empty")?.status;
    const lift = "DELETE /v1/admin/workers/{id}/quarantine";
    expect([status(lift, "operator"), status(lift, "admin"), status(lift, "none")]).toEqual([
      409, 403, 401,
    ]);
    const revoke = "DELETE /v1/api-keys/{id}";
    expect([status(revoke, "admin"), status(revoke, "operator"), status(revoke, "none")]).toEqual([
      404, 403, 401,
    ]);
    // The matrix is not vacuous: callers were both let in and kept out.
    expect(cells.filter((x) => refused(x.status)).length).toBeGreaterThan(ROUTES.length);
    expect(cells.filter((x) => x.status === 200 || x.status === 101).length).toBeGreaterThan(5);
  });

  it("own means own: an owner or a machine is refused on another's worker", async () => {
    const t = await start({ groups: allGroups });
    const owner = await t.owner();
    const machine = await t.machine(owner);
    const stranger = await t.owner();
    const strangerMachine = await t.machine(stranger);
    const c: Callers = {
      keys: {
        admin: t.adminKey,
        operator: await t.apiKey("operator"),
        owner: stranger.apiKey,
        auditor: await t.apiKey("auditor"),
      },
      machine: strangerMachine,
    };
    const own = ROUTES.filter(
      (r) => r.path.startsWith("/v1/workers/{id}/") && r.websocket !== true,
    );
    expect(own.length).toBeGreaterThanOrEqual(5);
    const cells: Cell[] = [];
    for (const route of own) {
      for (const caller of ["owner", "machine"] as const) {
        if (route.access[caller] !== "own") continue;
        // The path names the first owner's worker; the credentials are the stranger's.
        const r = await t.call(route.method, route.path.replace("{id}", machine.workerId), {
          ...(route.method === "POST" ? { body: {} } : {}),
          ...(caller === "owner" ? { apiKey: c.keys.owner } : { machine: c.machine }),
        });
        cells.push({
          route: `${route.method} ${route.path}`,
          caller,
          body: "empty",
          status: r.status,
          message: r.json?.error?.message ?? "",
        });
      }
    }
    expect(cells.length).toBeGreaterThanOrEqual(6);
    expect(cells.filter((x) => x.status !== 403)).toEqual([]);
    const ws = await wsCell(t, ROUTES.find((r) => r.websocket === true) as Route, "machine", {
      ...c,
      machine: { ...strangerMachine, workerId: machine.workerId },
    });
    expect(ws.status).toBe(403);
  });
});
