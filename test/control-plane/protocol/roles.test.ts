import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  type Access,
  CALLERS,
  type Caller,
  matchRoute,
  ROUTES,
} from "../../../control-plane/protocol/roles.ts";
import { isSchemaName } from "../../../control-plane/protocol/schemas/index.ts";

/**
 * The role matrix: roles.ts and the hand-written table of docs/protocol.md (between the
 * roles markers) are the same, cell for cell, in both directions.
 */

const doc = readFileSync(new URL("../../../docs/protocol.md", import.meta.url), "utf8");

function tableRows(): Map<string, Map<Caller, Access>> {
  const block = /<!-- roles:begin -->([\s\S]*?)<!-- roles:end -->/.exec(doc)?.[1];
  if (block === undefined) throw new Error("no roles table in docs/protocol.md");
  const lines = block.trim().split("\n");
  const header = (lines[0] ?? "").split("|").map((c) => c.trim());
  // | endpoint | admin | … | public |  → the caller columns, in the table's order
  const columns = header.slice(2, -1);
  expect(columns).toEqual([...CALLERS]);
  const rows = new Map<string, Map<Caller, Access>>();
  for (const line of lines.slice(2)) {
    const cells = line.split("|").map((c) => c.trim());
    const endpoint = /^`([A-Z]+ \/\S*)`$/.exec(cells[1] ?? "")?.[1];
    if (endpoint === undefined) throw new Error(`bad row: ${line}`);
    expect(rows.has(endpoint), `${endpoint} listed twice`).toBe(false);
    const access = new Map<Caller, Access>();
    columns.forEach((caller, i) => {
      const cell = cells[i + 2];
      if (cell === "yes" || cell === "own") access.set(caller as Caller, cell);
      else expect(cell, `${endpoint} × ${caller}`).toBe("—");
    });
    rows.set(endpoint, access);
  }
  return rows;
}

describe("role matrix", () => {
  it("docs/protocol.md's table equals roles.ts, both ways", () => {
    const table = tableRows();
    const code = new Map(
      ROUTES.map((r) => [
        `${r.method} ${r.path}`,
        new Map(Object.entries(r.access) as [Caller, Access][]),
      ]),
    );
    expect([...table.keys()].sort()).toEqual([...code.keys()].sort());
    for (const [endpoint, access] of code) {
      expect(Object.fromEntries(table.get(endpoint) ?? []), endpoint).toEqual(
        Object.fromEntries(access),
      );
    }
    // Both orders too: the table reads in the same order as the code.
    expect([...table.keys()]).toEqual([...code.keys()]);
  });

  it("every route is callable by someone; public and token stand alone", () => {
    for (const r of ROUTES) {
      const callers = Object.keys(r.access);
      expect(callers.length, r.path).toBeGreaterThan(0);
      if (callers.includes("public") || callers.includes("token")) expect(callers).toHaveLength(1);
      if (Object.values(r.access).includes("own")) expect(r.path).toMatch(/\{id\}|\/v1\/policies$/);
    }
  });

  it("names only schemas that exist, and a body schema only for bodies", () => {
    for (const r of ROUTES) {
      for (const s of [r.request, r.query, r.response]) {
        if (s !== undefined) expect(isSchemaName(s), `${r.path}: ${s}`).toBe(true);
      }
      if (r.method === "GET") expect(r.request).toBeUndefined();
      if (r.request !== undefined) expect(r.request).toMatch(/-request$/);
      if (r.query !== undefined) expect(r.query).toMatch(/-query$/);
      if (r.response !== undefined) expect(r.response).toMatch(/-response$/);
    }
  });

  it("keeps the separation of duties the docs explain", () => {
    const who = (method: string, path: string) => {
      const m = matchRoute(method, path);
      if (m === undefined) throw new Error(`${method} ${path}`);
      return m.route.access;
    };
    // Admins mint operator keys, so they must not be able to approve an emergency stop.
    expect(who("POST", "/v1/admin/emergency-stop/x/approve")).toEqual({ operator: "yes" });
    expect(who("POST", "/v1/commands").admin).toBeUndefined();
    expect(who("POST", "/v1/api-keys")).toEqual({ admin: "yes" });
    expect(who("GET", "/v1/audit/events")).toEqual({ admin: "yes", auditor: "yes" });
    // Owners act on their own workers only; machines on themselves only.
    expect(who("POST", "/v1/workers/w/revocations")).toEqual({ owner: "own" });
    expect(who("POST", "/v1/workers/w/heartbeat")).toEqual({ machine: "own" });
  });

  it("matches concrete paths to templates, with the id", () => {
    expect(matchRoute("POST", "/v1/workers/abc_-1/heartbeat")).toMatchObject({
      route: { path: "/v1/workers/{id}/heartbeat" },
      id: "abc_-1",
    });
    expect(matchRoute("GET", "/v1/keys")).toMatchObject({ id: null });
    expect(matchRoute("POST", "/v1/workers/a/b/heartbeat")).toBeUndefined();
    expect(matchRoute("POST", "/v1/workers/a%2Fb/heartbeat")).toBeUndefined();
    expect(matchRoute("DELETE", "/v1/keys")).toBeUndefined();
    expect(matchRoute("GET", "/v1/keysX")).toBeUndefined();
  });
});
